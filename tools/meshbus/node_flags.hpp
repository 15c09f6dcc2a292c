// The node options every subcommand takes (--interface, --cluster, ...), and the Node
// started from them. Unset flags leave the MESHBUS_* variables, read by the library, in
// charge.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "meshbus/meshbus.hpp"
#include "support/cli11.hpp"

namespace meshbus_tool {

struct node_flags {
  std::string interface;
  std::string cluster;
  std::string peers;
  std::string name;
  std::string log_level;
  std::uint16_t beacon_port = 0;
  std::uint16_t router_port = 0;
  std::uint16_t pub_port = 0;
  std::int64_t beacon_interval_ms = 0;     ///< 0: the library's default
  std::uint64_t max_message_bytes = 0;     ///< 0: MESHBUS_MAX_MESSAGE_BYTES or the library's default
  std::string data_dir;                    ///< empty: MESHBUS_DATA_DIR or none
  std::string durability;                  ///< empty: MESHBUS_DURABILITY or always
  std::string metrics;                     ///< empty: MESHBUS_METRICS or off
};

/// The node options, on `app` and on every subcommand (so they may come before or after the
/// subcommand name). All of them are bound to the one `flags`.
void add_node_flags(CLI::App& app, node_flags& flags);

/// --wait when given (wait_ms >= 0), else 1.5 beacon intervals: long enough to hear every
/// live node once.
std::chrono::milliseconds discovery_wait(const node_flags& flags, std::int64_t wait_ms);

/// Starts a node from the flags on top of `options`. Throws meshbus::error.
std::unique_ptr<meshbus::Node> start_node(const node_flags& flags, meshbus::Options options);

}  // namespace meshbus_tool
