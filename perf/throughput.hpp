// throughput: the time to move N events one way, end to end, publisher here and subscriber
// in the child process (see the file comment of main.cpp for what is measured).
#pragma once

#include <cstdint>
#include <string>

#include "harness.hpp"

namespace meshbus_perf {

struct throughput_outcome {
  std::uint64_t received = 0;
  double seconds = 0;        ///< t_end - t0: to the later of the last receipt and flush()'s return
  double send_seconds = 0;   ///< t0 to the end of the send loop
  double flush_seconds = 0;  ///< meshbus: the end of the send loop to flush()'s return
  double first_seconds = 0;  ///< t0 to the first event at the subscriber
  std::string details;       ///< transport counters, for --verbose

  double events_per_s() const noexcept { return seconds > 0 ? static_cast<double>(received) / seconds : 0; }
};

using throughput_side = side_result<throughput_outcome>;

/// One measured run over `t`: starts the subscriber process, publishes, collects its
/// result. A run that cannot complete gives its error instead of an outcome.
throughput_side measure_throughput(transport t, const run_spec& spec);

/// The durable log's append rate, for `meshbus-perf eventstore`: --mode durable's
/// publisher (a Node with a fresh data directory, Durability::always) publishes
/// spec.count events of spec.size bytes and calls flush(), in this process and with no
/// subscriber, so flush() returns once the log has written and synced them all.
/// `received` is the events the log wrote (checked to be all of them); seconds runs
/// from the first publish() to flush()'s return. `spec.mode` must be durable.
throughput_side measure_log_append(const run_spec& spec);

/// --mode typed: the size of the typed event nearest to `size` bytes that can be encoded
/// (at least min_typed_size()).
std::size_t typed_size_near(std::size_t size);
/// The smallest typed payload: the fixed fields and a padding of just the marker.
std::size_t min_typed_size();

/// The child halves (hidden subcommand _subscriber): the result line's fields.
std::string raw_subscribe(const child_config& c);
std::string meshbus_subscribe(const child_config& c);

}  // namespace meshbus_perf
