// trace_responder: how a node takes part in `meshbus trace` (docs/protocol.md §10).
// Every node subscribes "$meshbus.trace.request". For each request it looks through
// what it holds — its durable log, every epoch of it (with Options::data_dir), and
// the publisher's bounded history in memory — for the events of the flow: those whose
// correlation id is the one asked for, and the event whose id it is (the root). It
// answers on the reply topic the request names with the events' records in chunks,
// then one "done" that says how many it sent and whether that was all.
//
// Bounds, each stated in the answer, never silent: at most max_trace_events records
// per request (the rest: status truncated); chunks of at most trace_chunk_records
// records and trace_chunk_bytes bytes; requests beyond a rate of trace_request_rate
// per second (burst trace_request_burst) are answered "refused" without a look at the
// log (Stats::trace_requests_refused). A request that does not decode, or names a
// reply topic outside "$meshbus.trace.reply", is dropped and counted
// (Stats::malformed_trace_requests).
//
// Threads: answer() runs on the handler thread of the request subscription and
// reads the log there; the history in memory is taken (frames shared, not copied) on
// the I/O thread through `history_snapshot` and read back on the handler thread.
// request() is for any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string_view>
#include <vector>

#include "lib/node/node_context.hpp"
#include "lib/transport/frame.hpp"
#include "lib/wire/common.hpp"

namespace meshbus::detail {

inline constexpr std::size_t max_trace_events = 10000;
inline constexpr std::size_t trace_chunk_records = 256;
inline constexpr std::size_t trace_chunk_bytes = std::size_t{48} << 10;
inline constexpr double trace_request_rate = 4.0;
inline constexpr double trace_request_burst = 8.0;
/// How long answer() waits for the I/O thread's copy of the history in memory.
inline constexpr std::chrono::milliseconds trace_history_wait{2000};

class trace_responder {
 public:
  /// How it publishes on meshbus's own '$' topics (publisher_side::publish).
  using publish_reserved =
      std::function<PublishResult(std::string_view topic, wire::byte_view payload, const PublishOptions& po)>;
  /// Every batch frame in the publisher's bounded history (I/O thread).
  using history_snapshot = std::function<std::vector<transport::frame>()>;

  trace_responder(node_context& ctx, publish_reserved publish, history_snapshot snapshot);

  /// Asks every node for the events of flow `correlation_id`, answered on
  /// `reply_topic`. Throws error(invalid_argument) for an empty or too long
  /// correlation id or a reply topic outside "$meshbus.trace.reply".
  PublishResult request(std::string_view correlation_id, std::string_view reply_topic,
                        std::uint64_t request_id);
  /// A request (handler thread): looked up and answered.
  void answer(const Event& request);

 private:
  /// Takes a token of the request rate; false when there is none.
  bool admit(std::chrono::steady_clock::time_point now);
  std::vector<transport::frame> history_frames(bool& taken);

  node_context& ctx_;
  publish_reserved publish_;
  history_snapshot snapshot_;
  std::mutex rate_mu_;
  double tokens_ = trace_request_burst;
  std::chrono::steady_clock::time_point refilled_{};
};

}  // namespace meshbus::detail
