// What every part of a node shares: who the node is, its options, its counters and
// fault reporting, and the few services of the loop that owns the sockets.
//
// The parts (peer sessions, publisher side, subscriber side, requests, dead letters,
// the mesh view) each own their state; they reach the loop only through `loop_access`
// and the peers only through `control_sender` (lib/node/control_sender.hpp). Built by
// node_impl before the parts and outliving them.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>

#include "lib/node/counters.hpp"
#include "lib/node/fault_reporter.hpp"
#include "lib/node/log.hpp"
#include "lib/wire/common.hpp"
#include "meshbus/node.hpp"
#include "meshbus/options.hpp"

namespace meshbus::store {
class log_store;
}

namespace meshbus::detail {

using clock = std::chrono::steady_clock;

/// Wall-clock time for the wire (event timestamps), in nanoseconds since the epoch.
std::uint64_t unix_ns();

inline NodeId to_node_id(const wire::node_id_bytes& b) {
  NodeId id;
  id.bytes = b;
  return id;
}

inline std::string short_id(const wire::node_id_bytes& b) { return to_node_id(b).short_string(); }

/// Who this node is, fixed at construction.
struct node_identity {
  NodeId id;
  wire::node_id_bytes bytes{};
  std::uint64_t epoch = 0;
  std::uint64_t cluster_hash = 0;  ///< of Options::cluster, as beacons carry it
};

/// The loop as the parts see it. Implemented by node_impl.
class loop_access {
 public:
  virtual ~loop_access() = default;
  /// True on the thread that turns the loop (the I/O thread, or the poll_once()
  /// caller): a wait there has to turn the loop itself (turn()).
  virtual bool drives_loop_here() const noexcept = 0;
  /// One round of the loop, waiting at most `max_wait` (loop thread only).
  virtual std::size_t turn(std::chrono::milliseconds max_wait) = 0;
  /// Runs `cmd` on the loop: at once when called there, else at its next round.
  virtual void run_on_loop(std::function<void()> cmd) = 0;
  /// Runs `cmd` at the loop's next round, never at once. Any thread.
  virtual void post_command(std::function<void()> cmd) = 0;
  /// Wakes the loop from its wait. Any thread.
  virtual void wake() noexcept = 0;

 protected:
  loop_access() = default;
  loop_access(const loop_access&) = default;
  loop_access& operator=(const loop_access&) = default;
};

/// Shared by every part; see the file comment.
struct node_context {
  const Options& opts;
  const node_identity& self;
  node_counters& counters;
  fault_reporter& faults;
  loop_access& loop;
  /// The node's logger (Options::logger, or its own on stderr).
  spdlog::logger& log;
  /// The durable log (Options::data_dir); null without one.
  store::log_store* store = nullptr;
};

}  // namespace meshbus::detail
