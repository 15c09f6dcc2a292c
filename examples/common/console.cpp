// Tagged, optionally colored output lines; see console.hpp. A tag's color follows from
// the process name, so a process keeps its color whoever prints its lines.
#include "common/console.hpp"

#include <unistd.h>

#include <algorithm>

#include <fmt/format.h>

namespace meshbus_examples {
namespace {

constexpr std::size_t tag_width = 13;  // "[payments-1] " and room for "[s10]"

const char* color_of(std::string_view name) {
  if (name == "launcher") return "\x1b[1m";  // bold
  static constexpr const char* colors[] = {"\x1b[32m", "\x1b[33m", "\x1b[34m", "\x1b[35m",
                                           "\x1b[36m", "\x1b[92m", "\x1b[93m", "\x1b[94m"};
  std::size_t h = 0;
  for (const char c : name) h = h * 31 + static_cast<unsigned char>(c);
  return colors[h % std::size(colors)];
}

}  // namespace

console::console(std::string name, bool color, bool quiet) : color_(color), quiet_(quiet) {
  const auto label = fmt::format("[{}]", name);
  const auto padding = std::string(tag_width - std::min(tag_width - 1, label.size()), ' ');
  tag_ = color ? fmt::format("{}{}\x1b[0m{}", color_of(name), label, padding) : label + padding;
}

std::string console::tagged(std::string_view text) const {
  return fmt::format("{}{}\n", tag_, text);
}

void console::print(std::string_view text) const {
  if (!quiet_) write_all(STDOUT_FILENO, tagged(text));
}

void console::error(std::string_view text) const {
  write_all(STDERR_FILENO, tagged(text));
}

std::string highlight(std::string_view text, bool color) {
  return color ? fmt::format("\x1b[1;31m{}\x1b[0m", text) : std::string(text);
}

}  // namespace meshbus_examples
