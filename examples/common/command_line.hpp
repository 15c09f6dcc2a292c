// Command lines of the demos: "--option value" or "--option=value", numbers checked
// against a range, and one exception type whose message says what is wrong.
#pragma once

#include <charconv>
#include <functional>
#include <stdexcept>
#include <string_view>

#include <fmt/format.h>

namespace meshbus_examples {

/// A bad command line; what() says what is wrong.
struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// `text` as a number from `low` to `high`. Throws usage_error naming `option`.
template <typename T>
T parse_number(std::string_view option, std::string_view text, T low, T high) {
  T value{};
  const auto* end = text.data() + text.size();
  const auto [p, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc{} || p != end || value < low || value > high) {
    throw usage_error(fmt::format("{} needs a number from {} to {}, not '{}'", option, low, high, text));
  }
  return value;
}

/// Calls `apply(option, value)` for every option of argv; `value()` takes the option's
/// value (after '=' or the next argument) and throws usage_error when there is none.
/// Returns false at once, without going on, when it meets --help or -h.
using option_handler = std::function<void(std::string_view option, const std::function<std::string_view()>& value)>;
bool for_each_option(int argc, char** argv, const option_handler& apply);

}  // namespace meshbus_examples
