// The subcommands of the tool. Each add_*_command() declares a subcommand with its flags on
// the parent app and returns how to run it once the command line is parsed; main.cpp only
// builds the app, parses and dispatches. Each runner starts one Node, except log's, which
// reads a node's data directory offline.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "node_flags.hpp"
#include "run_control.hpp"
#include "support/cli11.hpp"

namespace meshbus_tool {

/// A subcommand and what runs it. `run` is called at most once, on the main thread, after
/// parsing, with the signal watcher in place; it returns the exit code.
struct command {
  CLI::App* app = nullptr;
  std::function<int(exit_latch&)> run;
};

/// `meshbus peers`: the live peers of the cluster (peers.cpp).
command add_peers_command(CLI::App& parent, node_flags& node);
/// `meshbus sub`: events as they arrive (sub.cpp).
command add_sub_command(CLI::App& parent, node_flags& node);
/// `meshbus pub`: an argument or the lines of stdin (pub.cpp).
command add_pub_command(CLI::App& parent, node_flags& node);
/// `meshbus dlq list` and `meshbus dlq replay` under `meshbus dlq` (dlq.cpp).
std::vector<command> add_dlq_commands(CLI::App& parent, node_flags& node);
command add_dlq_list_command(CLI::App& dlq, node_flags& node);    // dlq_list.cpp
command add_dlq_replay_command(CLI::App& dlq, node_flags& node);  // dlq_replay.cpp

/// `meshbus log`: the events kept in a node's durable log, read offline (log.cpp).
command add_log_command(CLI::App& parent);

/// `meshbus trace`: one flow's events, asked of every node, as a causation tree (trace.cpp).
command add_trace_command(CLI::App& parent, node_flags& node);

/// `meshbus stats` and `meshbus top`: the nodes' reports, once, watched, or live (stats.cpp).
command add_stats_command(CLI::App& parent, node_flags& node);
command add_top_command(CLI::App& parent, node_flags& node);

/// `meshbus request` and `meshbus serve`: request/reply from the shell (request.cpp).
command add_request_command(CLI::App& parent, node_flags& node);
command add_serve_command(CLI::App& parent, node_flags& node);

/// `meshbus bench`: meshbus-perf's comparison with raw ZeroMQ (bench.cpp).
command add_bench_command(CLI::App& parent);

/// `meshbus dashboard`: a live web page of the mesh (dashboard.cpp).
command add_dashboard_command(CLI::App& parent, node_flags& node);

/// A help footer: the examples, then the exit codes.
std::string footer(std::string_view examples);

/// Number checks with a plain message (CLI11's PositiveNumber names its 1.8e308 bound).
CLI::Validator positive_number();
CLI::Validator non_negative_number();

}  // namespace meshbus_tool
