// Command lines of the demos, on CLI11: each demo declares its options on a CLI::App
// (the hidden ones the launcher passes to its children in group ""), and this runs the
// parse the same way for all of them.
#pragma once

#include <functional>
#include <optional>
#include <stdexcept>

#include "support/cli11.hpp"

namespace meshbus_examples {

/// A command line that parses but makes no sense (checked after parsing); what() says why.
struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Parses argv with `app`, then calls `check()` for what depends on several options (it
/// may throw usage_error). --help prints the help and gives 0; a mistake prints
/// "<program>: <what> (see <program> --help)" and gives 2; nullopt means: go on and run.
std::optional<int> parse_command_line(CLI::App& app, int argc, char** argv, const std::function<void()>& check);

}  // namespace meshbus_examples
