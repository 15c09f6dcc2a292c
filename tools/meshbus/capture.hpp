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
  std::optional<int> status;  ///< exit status; nullopt when it was killed (timeout, too much output)
  std::string out;
  std::string err;
  bool too_much = false;  ///< it printed more than the limit and was killed
};

/// Starts `options` (stdin and stderr piped by this function), writes `input`, and reads
/// until the child exits, `timeout` passes or it prints more than `max_output` bytes on
/// either stream (then kills it).
captured run_captured(meshbus::support::spawn_options options, const std::string& input,
                      std::chrono::milliseconds timeout, std::size_t max_output = std::size_t{16} << 20);

}  // namespace meshbus_tool
