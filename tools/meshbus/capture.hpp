// Runs a child program to completion, feeding its stdin and collecting its stdout and
// stderr, bounded in time: `meshbus serve --command` and the dashboard's use of the
// tool's own subcommands.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "support/child_process.hpp"

namespace meshbus_tool {

struct captured {
  std::optional<int> status;  ///< exit status; nullopt when it was killed at the timeout
  std::string out;
  std::string err;
};

/// Starts `options` (stdin and stderr piped by this function), writes `input`, and reads
/// until the child exits or `timeout` passes (then kills it).
captured run_captured(meshbus::support::spawn_options options, const std::string& input,
                      std::chrono::milliseconds timeout);

}  // namespace meshbus_tool
