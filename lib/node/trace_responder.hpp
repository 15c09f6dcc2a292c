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
// per second (burst trace_request_burst), or beyond max_waiting_traces waiting, are
// answered "refused" without a look at the log (Stats::trace_requests_refused). A request that does not decode, or names a
// reply topic outside "$meshbus.trace.reply", is dropped and counted
// (Stats::malformed_trace_requests).
//
// Threads: answer() runs on the handler thread of the request subscription: it
// decodes, applies the rate bound and queues the request (at most
// max_waiting_traces; more are answered "refused"). One scanner thread of its own,
// started with the first request, reads the log, takes the history in memory (its
// frames shared on the I/O thread through `history_snapshot`, read back on the
// scanner) and publishes the answer, so a long log holds up no handler. request() is
// for any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "lib/node/node_context.hpp"
#include "lib/transport/frame.hpp"
#include "lib/wire/common.hpp"
#include "lib/wire/trace.hpp"

namespace meshbus::detail {

inline constexpr std::size_t max_trace_events = 10000;
inline constexpr std::size_t trace_chunk_records = 256;
inline constexpr std::size_t trace_chunk_bytes = std::size_t{48} << 10;
inline constexpr double trace_request_rate = 4.0;
inline constexpr double trace_request_burst = 8.0;
/// Requests accepted and not yet answered; more are answered "refused".
inline constexpr std::size_t max_waiting_traces = 8;
/// How long the scanner waits for the I/O thread's copy of the history in memory.
inline constexpr std::chrono::milliseconds trace_history_wait{2000};

class trace_responder {
 public:
  /// How it publishes on meshbus's own '$' topics (publisher_side::publish).
  using publish_reserved =
      std::function<PublishResult(std::string_view topic, wire::byte_view payload, const PublishOptions& po)>;
  /// Every batch frame in the publisher's bounded history (I/O thread).
  using history_snapshot = std::function<std::vector<transport::frame>()>;

  trace_responder(node_context& ctx, publish_reserved publish, history_snapshot snapshot);
  ~trace_responder();
  trace_responder(const trace_responder&) = delete;
  trace_responder& operator=(const trace_responder&) = delete;

  /// Asks every node for the events of flow `correlation_id`, answered on
  /// `reply_topic`. Throws error(invalid_argument) for an empty or too long
  /// correlation id or a reply topic outside "$meshbus.trace.reply".
  PublishResult request(std::string_view correlation_id, std::string_view reply_topic,
                        std::uint64_t request_id);
  /// A request (handler thread): checked, then queued for the scanner or refused.
  void answer(const Event& request);
  /// The node is stopping: the scanner gives up what it is doing (any thread, the
  /// I/O thread included).
  void set_stopping() noexcept;
  /// Stops the scanner and waits for it (not on the I/O thread: it may be waiting
  /// for the loop). Idempotent.
  void stop();

 private:
  struct trace_job {
    wire::trace_request request;
    std::string request_event_id;  ///< its answers' correlation and causation id
  };
  /// Takes a token of the request rate; false when there is none.
  bool admit(std::chrono::steady_clock::time_point now);
  bool stopping() const noexcept { return stopping_flag_.load(std::memory_order_acquire); }
  void run();
  void serve(const trace_job& job);
  std::vector<transport::frame> history_frames(bool& taken);
  wire::trace_reply head_of(const trace_job& job) const;
  bool send(const trace_job& job, const wire::trace_reply& reply);
  void refuse(const trace_job& job, std::string note);

  node_context& ctx_;
  publish_reserved publish_;
  history_snapshot snapshot_;
  std::mutex rate_mu_;
  double tokens_ = trace_request_burst;
  std::chrono::steady_clock::time_point refilled_{};
  // The requests waiting for the scanner (guarded by jobs_mu_).
  std::mutex jobs_mu_;
  std::condition_variable jobs_cv_;
  std::deque<trace_job> jobs_;
  bool stopping_ = false;
  std::atomic<bool> stopping_flag_{false};
  std::thread scanner_;
};

}  // namespace meshbus::detail
