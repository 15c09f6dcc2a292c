// Tagged output: every line a demo process prints starts with a fixed-width name tag
// ("[dashboard] "), colored only when the launcher's stdout is a terminal (the color
// follows from the name). Safe from any
// thread: each line leaves in one write(2), so concurrent lines never interleave.
#pragma once

#include <string>
#include <string_view>

#include "support/child_process.hpp"

namespace meshbus_examples {

class console {
 public:
  /// `quiet` silences print(); error() always goes out.
  console(std::string name, bool color, bool quiet);

  /// One line on stdout, tagged. Skipped when quiet.
  void print(std::string_view text) const;
  /// One line on stderr, tagged, even when quiet.
  void error(std::string_view text) const;
  /// `text` with this console's tag in front and a newline at the end.
  std::string tagged(std::string_view text) const;
  /// True when `line` already starts with this console's tag.
  bool has_tag(std::string_view line) const noexcept { return line.starts_with(tag_); }

  bool color() const noexcept { return color_; }
  bool quiet() const noexcept { return quiet_; }

 private:
  std::string tag_;
  bool color_;
  bool quiet_;
};

/// Writes all of `text` to `fd`, retrying short writes and EINTR. False on error.
using meshbus::support::write_all;

/// ANSI bold red around `text` when `color`, else `text` unchanged.
std::string highlight(std::string_view text, bool color);

}  // namespace meshbus_examples
