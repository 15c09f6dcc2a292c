// The dispatcher runs handlers off the I/O thread.
//
// The I/O thread posts whole received batches, each for the subscriptions that are
// to see them, and small tasks (peer and loss notifications). Each stream is bound
// to one worker by hash, so a stream's events reach handlers in sequence order while
// different streams may run in parallel. Handlers decode their events from the batch
// in place; nothing is allocated per event.
//
// Handler failures: for best_effort and reliable subscriptions a throw is counted and
// reported, and the next event goes on. For acknowledged subscriptions the event is
// tried again after a backoff (the stream waits meanwhile, other streams do not), up
// to max_deliver times, then handed to the dead-letter sink; an explicit event id
// already handled is skipped; and the last sequence fully handled is published for
// the I/O thread's acks (group work says instead, by on_done, when a batch is finished
// or given up because its subscription went away).
//
// Bounded by bytes: when the queued bytes reach the limit the I/O thread stops
// reading (overflow policy: back-pressure, counted as receive_pauses), which in turn
// makes ZeroMQ push back on publishers. With zero threads the dispatcher is "inline":
// run_inline() drains it on the caller's thread (Node::poll_once).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <variant>
#include <vector>


#include "lib/node/counters.hpp"
#include "lib/node/latency.hpp"
#include "lib/transport/frame.hpp"
#include "lib/node/subscriptions.hpp"
#include "meshbus/types.hpp"

namespace meshbus::detail {

/// The event (or request) the calling thread's handler is working on (null outside
/// handlers): what it publishes or requests belongs to the same flow.
extern thread_local const Event* current_event;

/// Marks the event a handler is working on, for as long as it lives.
class handling {
 public:
  explicit handling(const Event& e) noexcept : previous_(current_event) { current_event = &e; }
  ~handling() { current_event = previous_; }
  handling(const handling&) = delete;
  handling& operator=(const handling&) = delete;

 private:
  const Event* previous_;
};

/// How a delivery ended, for its `on_done`.
enum class delivery_outcome : std::uint8_t {
  handled,        ///< every event handled
  dead_lettered,  ///< every event handled or dead-lettered, at least one dead-lettered
  abandoned,      ///< `abandon_if_inactive` and the subscription went away first
};

/// A received (or locally published) batch, ready for handlers.
struct delivery {
  transport::frame frame;
  std::shared_ptr<const match_list> subscriptions;
  NodeId publisher;
  std::uint64_t epoch = 0;
  std::uint64_t first_seq = 0;
  std::uint64_t timestamp_ns = 0;
  std::uint32_t count = 0;
  std::uint32_t skip = 0;  ///< leading events already delivered (duplicates)
  std::uint32_t topic_size = 0;
  std::size_t events_offset = 0;
  /// Identifies the (stream, subscription) whose order a waiting retry must keep;
  /// 0 for deliveries that never wait.
  std::uint64_t stream_id = 0;
  /// acknowledged: where the last fully handled sequence goes (for acks).
  std::shared_ptr<std::atomic<std::uint64_t>> processed;
  /// Group work (one subscription per delivery): when the subscription is no longer
  /// active, the rest of the batch is not skipped but given up as `abandoned`, so that
  /// it can go to someone else.
  bool abandon_if_inactive = false;
  /// Called once the batch is done (on the handler thread); not called when the
  /// dispatcher stops with the batch unfinished.
  std::function<void(delivery_outcome)> on_done;
};

class dispatcher {
 public:
  using clock = std::chrono::steady_clock;
  using error_sink = std::function<void(std::string_view topic, std::string_view what)>;
  /// An acknowledged subscription gave up on an event after `attempts` calls.
  using dead_letter_sink = std::function<void(const Event& event, const subscription_entry& sub,
                                              std::string_view reason, unsigned attempts)>;

  dispatcher(unsigned threads, std::size_t max_bytes, node_counters& counters, error_sink on_error,
             dead_letter_sink on_dead_letter, std::function<void()> on_space);
  ~dispatcher();
  dispatcher(const dispatcher&) = delete;
  dispatcher& operator=(const dispatcher&) = delete;

  /// I/O thread. `stream_hash` picks the worker.
  void post(std::size_t stream_hash, delivery&& d);
  void post(std::function<void()> task);
  /// A task in a stream's order (on that stream's worker).
  void post(std::size_t stream_hash, std::function<void()> task);
  /// True while the queued bytes are at or over the limit.
  bool full() const noexcept;
  std::size_t queued_bytes() const noexcept { return bytes_.load(std::memory_order_acquire); }
  /// Runs everything queued and due on the caller's thread (inline mode). Returns items run.
  std::size_t run_inline();
  /// Lets workers finish what is queued (retries still waiting are abandoned), then
  /// joins them. Idempotent.
  void stop();
  /// From publish to the start of the handlers, and the handlers' time, per event.
  LatencyHistogram delivery_latency() const noexcept { return delivery_latency_.snapshot(); }
  LatencyHistogram handler_time() const noexcept { return handler_time_.snapshot(); }

 private:
  using item = std::variant<delivery, std::function<void()>>;
  // A delivery waiting to retry a failed event, and what queued up behind it.
  struct parked {
    delivery d;
    std::uint32_t resume = 0;
    unsigned attempts = 0;
    clock::time_point due{};
    std::deque<item> backlog;
  };
  struct worker {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<item> queue;
    bool stopping = false;
    std::thread thread;
    std::map<std::uint64_t, parked> parked_streams;  ///< worker thread only
  };
  void run_worker(worker& w);
  void process(worker& w, item&& it);
  void resume_due(worker& w, clock::time_point now);
  /// Drops the worker's waiting retries at stop, counting their events as abandoned.
  void abandon_parked(worker& w);
  /// Runs handlers from event `from` on; returns true when it had to park.
  bool deliver(worker& w, delivery& d, std::uint32_t from, unsigned attempts, std::deque<item>* backlog);
  void run_task(std::function<void()>& task);
  std::uint64_t queued_run_end(worker& w, const delivery& d);
  void enqueue(std::size_t index, item&& it, std::size_t bytes);
  void account_done(std::size_t bytes);
  clock::time_point next_due(const worker& w) const;

  node_counters& counters_;
  atomic_histogram delivery_latency_;
  atomic_histogram handler_time_;
  error_sink on_error_;
  dead_letter_sink on_dead_letter_;
  std::function<void()> on_space_;
  std::size_t max_bytes_;
  std::atomic<std::size_t> bytes_{0};
  std::vector<std::unique_ptr<worker>> workers_;
  bool inline_ = false;
  bool stopped_ = false;
};

}  // namespace meshbus::detail
