// Command lines of the demos: "--option value" or "--option=value", numbers checked
// against a range, and one exception type whose message says what is wrong.
#pragma once

#include <charconv>
#include <functional>
#include <optional>
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

/// A demo's whole command line: every option through `apply`, then `check()` for what
/// depends on several of them (both may throw usage_error). --help prints `usage`
/// and gives 0; a usage_error prints "<program>: <what> (see <program> --help)" and
/// gives 2; nullopt means: go on and run.
std::optional<int> parse_command_line(int argc, char** argv, std::string_view program, std::string_view usage,
                                      const option_handler& apply, const std::function<void()>& check);

}  // namespace meshbus_examples
