// eventstore: the event store (<meshbus/event_store.hpp>) and aggregates
// (<meshbus/aggregate.hpp>) on a node's durable log, each measurement on a Node of its
// own with a fresh data directory (Durability::always). Everything runs in this process
// but the replica of the k=1 runs (replicas = 1), which is this program re-executed
// with the hidden subcommand _replica. main.cpp alternates them with the durable log's
// own append rate (measure_log_append(), throughput.cpp) and report.cpp prints them.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
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

/// Hidden subcommand: the replica of the k=1 runs (serve_replica()).
constexpr std::string_view replica_command = "_replica";
/// The replica waiting for the driver's "done": the k=1 runs of one round, warm-up included.
constexpr auto replica_timeout = std::chrono::hours(1);

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

/// The two k=1 runs of a round, which share one set-up (see measure_replicated()).
/// A set-up that fails fails both.
struct replicated_sides {
  append_side commands;  ///< Aggregate::execute(), as measure_aggregate_commands()
  append_side appends;   ///< append_async(), as measure_pipelined_appends()
};

/// What the replica child is given: `_replica --cluster C --service S --data-dir D`.
struct replica_config {
  std::string cluster;
  std::string service;
  std::string data_dir;  ///< the driver's scratch directory: the driver removes it
};

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

/// The same two workloads on a replicated store (k=1): this process's EventStore with
/// EventStoreOptions{.service = <private>, .replicas = 1} and one replica, a child
/// process (serve_replica()) with a data directory of its own, in the same private
/// cluster with loopback discovery. Once store.members() lists both instances, a
/// warm-up pass of commands (one per aggregate, as measure_aggregate_commands(), so the
/// first append to each stream claims it: one round trip and a commit at each end)
/// makes this process the owner of every stream; then, timed: one more command per
/// aggregate (loading version 1, appending version 2), and the pipelined appends to the
/// same streams. Each timed run is checked against the store's counters (every event
/// appended, nothing refused, no claim), and at the end the replica must hold every
/// event this process appended. The replica is always ended (by pid if it has not
/// exited) and both directories removed.
replicated_sides measure_replicated(const eventstore_spec& spec);

/// The replica (child side): a Node with `c.data_dir` and an EventStore of `c.service`
/// with replicas = 1, serving the driver's replication requests. Writes "ready" once
/// set up, waits for "done" on stdin, and returns the result fields
/// "<replicated_in> key=value..." (empty: the driver is gone).
std::string serve_replica(const replica_config& c);

/// Two aggregates of `load_events` events each: one without a snapshot, one with
/// snapshot_every (its snapshot saved by a command, as execute() does it). Then
/// `loads` loads of each, alternating, each timed.
load_side measure_loads(const eventstore_spec& spec);

/// Why no event of the measurements encodes to `size` bytes (empty: one does). The
/// smallest is the event with a one-byte `data`; a few sizes are skipped where the
/// MessagePack string header grows.
std::string eventstore_size_problem(std::size_t size);

}  // namespace meshbus_perf
