// eventstore: the event store (<meshbus/event_store.hpp>) and aggregates
// (<meshbus/aggregate.hpp>) on a node's durable log, all in this process, each
// measurement on a Node of its own with a fresh data directory (Durability::always).
// main.cpp alternates them with the durable log's own append rate
// (measure_log_append(), throughput.cpp) and report.cpp prints them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "harness.hpp"

namespace meshbus_perf {

/// What `meshbus-perf eventstore` is asked to do (see its options in main.cpp).
struct eventstore_spec {
  std::size_t size = 64;        ///< payload bytes: the encoded event of every append
  std::uint64_t log_count = 0;  ///< events the durable log's own run publishes
  std::uint64_t aggregates = 10'000;
  unsigned threads = 8;             ///< threads issuing the commands
  std::uint64_t appends = 100'000;  ///< append_async() calls pipelined from one thread
  std::uint64_t load_events = 1'000;
  std::uint64_t snapshot_every = 100;
  std::uint64_t loads = 200;  ///< timed loads of each kind per round
};

constexpr std::size_t default_eventstore_size = 64;

/// Events appended in `seconds` (commands or appends, one event each).
struct append_outcome {
  std::uint64_t events = 0;
  double seconds = 0;
  double events_per_commit = 0;  ///< the event store's group commits
  std::string details;           ///< counters, for --verbose

  double events_per_s() const noexcept { return seconds > 0 ? static_cast<double>(events) / seconds : 0; }
};

/// The time of each load, without and with a snapshot, in microseconds.
struct load_outcome {
  std::vector<double> full_us;              ///< all load_events events applied
  std::vector<double> snapshot_us;          ///< the snapshot and the events after it
  std::uint64_t snapshot_version = 0;       ///< where the snapshot is
  std::uint64_t events_after_snapshot = 0;  ///< what a load with it applies
  std::string details;                      ///< counters, for --verbose
};

using append_side = side_result<append_outcome>;
using load_side = side_result<load_outcome>;

/// Aggregate<State>::execute() on `aggregates` new aggregates ("bench-<i>"), one
/// command each, from `threads` threads (aggregate i on thread i mod threads); each
/// command loads its aggregate, decides one event of `size` bytes and appends it with
/// ExpectedVersion::exactly(the version loaded). Timed from the start of the threads
/// to the return of the last command.
append_side measure_aggregate_commands(const eventstore_spec& spec);

/// EventStore::append_async() with ExpectedVersion::any(), one event of `size` bytes
/// each, `appends` of them from one thread to the streams "bench-<i mod aggregates>",
/// without waiting in between; timed to the completion of the last one.
append_side measure_pipelined_appends(const eventstore_spec& spec);

/// Two aggregates of `load_events` events each: one without a snapshot, one with
/// snapshot_every (its snapshot saved by a command, as execute() does it). Then
/// `loads` loads of each, alternating, each timed.
load_side measure_loads(const eventstore_spec& spec);

/// Why no event of the measurements encodes to `size` bytes (empty: one does). The
/// smallest is the event with a one-byte `data`; a few sizes are skipped where the
/// MessagePack string header grows.
std::string eventstore_size_problem(std::size_t size);

}  // namespace meshbus_perf
