// Tagged, optionally colored output lines; see console.hpp. A tag's color follows from
// the process name, so a process keeps its color whoever prints its lines.
#include "console.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include <fmt/format.h>

#include "config.hpp"

namespace sensors_demo {
namespace {

constexpr std::size_t tag_width = 12;  // "[dashboard] " and room for "[s10]"

const char* color_of(std::string_view name) {
  if (name == "launcher") return "\x1b[1m";    // bold
  if (name == "dashboard") return "\x1b[36m";  // cyan
  if (name == "alerting") return "\x1b[35m";   // magenta
  static constexpr const char* sensor_colors[] = {"\x1b[32m", "\x1b[33m", "\x1b[34m",
                                                  "\x1b[92m", "\x1b[93m", "\x1b[94m"};
  const auto index = static_cast<std::size_t>(sensor_index(name).value_or(1) - 1);
  return sensor_colors[index % std::size(sensor_colors)];
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

bool write_all(int fd, std::string_view text) noexcept {
  while (!text.empty()) {
    const auto n = ::write(fd, text.data(), text.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    text.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

std::string highlight(std::string_view text, bool color) {
  return color ? fmt::format("\x1b[1;31m{}\x1b[0m", text) : std::string(text);
}

}  // namespace sensors_demo
