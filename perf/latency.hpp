// latency: one event (or request) in flight at a time. What latency.cpp (pings to an echoer)
// and request.cpp (--mode request: requests to a replier) share: the ping payload, the
// statistics and the pinging half's interface.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "harness.hpp"

namespace meshbus_perf {

/// A ping's payload: its sequence number, then the pinger's CLOCK_MONOTONIC send
/// time, then zeros up to the size. Echoed unchanged.
struct ping_header {
  std::uint64_t index = 0;
  std::int64_t sent_ns = 0;
};
constexpr std::size_t min_latency_size = sizeof(std::uint64_t) + sizeof(std::int64_t);
/// Sent until the raw ZeroMQ pairs are connected both ways (slow joiner); not timed.
constexpr std::uint64_t probe_index = ~std::uint64_t{0};

/// Writes `index` and the current time into `payload` (at least min_latency_size
/// bytes); returns the time written. The clock is read last.
std::int64_t stamp_ping(void* payload, std::uint64_t index) noexcept;
std::optional<ping_header> read_ping(const void* payload, std::size_t size) noexcept;

/// Percentiles of one set of latency samples, in nanoseconds (nearest rank).
struct latency_summary {
  std::uint64_t samples = 0;
  std::int64_t p50 = 0;
  std::int64_t p99 = 0;
  std::int64_t p999 = 0;
  std::int64_t max = 0;
  std::int64_t mean = 0;

  /// "samples p50 p99 p999 max mean", as a child reports it.
  std::string to_fields() const;
  static latency_summary from_fields(const std::vector<std::string_view>& fields, std::size_t first);
};

latency_summary summarize(std::vector<std::int64_t> ns);

struct latency_outcome {
  std::optional<latency_summary> one_way;  ///< measured by the echoer (not in --mode request)
  latency_summary round_trip;              ///< measured here
  std::string details;
};

using latency_side = side_result<latency_outcome>;

/// One transport's pinging half: pings to an echoer, or (--mode request) requests to
/// a replier. run_latency() drives it around the shared process and pipe plumbing.
class pinger {
 public:
  virtual ~pinger() = default;
  virtual const char* transport() const noexcept = 0;
  /// How the echoer reaches us (appended to its arguments).
  virtual std::vector<std::string> echoer_args() const = 0;
  /// From the echoer's "ready <text>" to "both directions are connected".
  virtual void connect(perf_child& echoer, const std::string& ready_text) = 0;
  /// spec.warmup + spec.count round trips, one at a time; returns the round-trip
  /// times of the measured ones (spec.count, in order). Throws run_error.
  virtual std::vector<std::int64_t> ping_pong(const run_spec& spec) = 0;
  /// Counters worth showing with --verbose, as "key=value ...".
  virtual std::string details() const { return {}; }
};

/// Raw ZeroMQ round trips, one at a time: each ping goes out on `out` and its echo
/// comes back on `in` (late probes are skipped and counted in `stray`). `what` names
/// a ping in errors. Returns the measured round trips, as pinger::ping_pong().
std::vector<std::int64_t> raw_round_trips(zmq::socket_ref out, zmq::socket_ref in, std::size_t size,
                                          const run_spec& spec, const char* what, std::uint64_t& stray);

/// --mode request's pinging halves (request.cpp).
std::unique_ptr<pinger> make_raw_requester(const run_spec& spec);
std::unique_ptr<pinger> make_meshbus_requester(const run_spec& spec);

/// One measured run over `t` (pings, or requests in --mode request). A run that cannot
/// complete gives its error instead of an outcome.
latency_side measure_latency(transport t, const run_spec& spec);

/// The child halves: hidden subcommand _echoer (latency.cpp) and _replier (request.cpp).
std::string raw_echo(const child_config& c);
std::string meshbus_echo(const child_config& c);
std::string raw_reply(const child_config& c);
std::string meshbus_reply(const child_config& c);

}  // namespace meshbus_perf
