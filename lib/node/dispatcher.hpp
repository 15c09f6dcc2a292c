// The dispatcher runs handlers off the I/O thread.
//
// The I/O thread posts whole received batches (with the list of subscriptions that
// match their topic) and small tasks (peer notifications). Each stream is bound to
// one worker by hash, so a stream's events reach handlers in sequence order while
// different streams may run in parallel. Handlers decode their events from the
// batch in place; nothing is allocated per event. A handler that throws is counted
// and reported; the worker goes on.
//
// Bounded by bytes: when the queued bytes reach the limit the I/O thread stops
// reading (overflow policy: back-pressure, counted as receive_pauses), which in
// turn makes ZeroMQ push back on publishers. With zero threads the dispatcher is
// "inline": run_inline() drains it on the caller's thread (Node::poll_once).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <variant>
#include <vector>

#include <zmq.hpp>

#include "lib/node/counters.hpp"
#include "lib/node/subscriptions.hpp"
#include "meshbus/types.hpp"

namespace meshbus::detail {

/// A received (or locally published) batch, ready for handlers.
struct delivery {
  zmq::message_t frame;
  std::shared_ptr<const match_list> subscriptions;
  NodeId publisher;
  std::uint64_t epoch = 0;
  std::uint64_t first_seq = 0;
  std::uint64_t timestamp_ns = 0;
  std::uint32_t count = 0;
  std::uint32_t skip = 0;  ///< leading events already delivered (duplicates)
  std::uint32_t topic_size = 0;
  std::size_t events_offset = 0;
};

class dispatcher {
 public:
  using error_sink = std::function<void(std::string_view topic, std::string_view what)>;

  dispatcher(unsigned threads, std::size_t max_bytes, node_counters& counters, error_sink on_error,
             std::function<void()> on_space);
  ~dispatcher();
  dispatcher(const dispatcher&) = delete;
  dispatcher& operator=(const dispatcher&) = delete;

  /// I/O thread. `stream_hash` picks the worker.
  void post(std::size_t stream_hash, delivery&& d);
  void post(std::function<void()> task);
  /// True while the queued bytes are at or over the limit.
  bool full() const noexcept;
  std::size_t queued_bytes() const noexcept { return bytes_.load(std::memory_order_relaxed); }
  /// Runs everything queued on the caller's thread (inline mode). Returns items run.
  std::size_t run_inline();
  /// Lets workers finish what is queued, then joins them. Idempotent.
  void stop();

 private:
  using item = std::variant<delivery, std::function<void()>>;
  struct worker {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<item> queue;
    bool stopping = false;
    std::thread thread;
  };
  void run_worker(worker& w);
  void execute(item& it);
  void deliver(delivery& d);
  void enqueue(std::size_t index, item&& it, std::size_t bytes);
  void account_done(std::size_t bytes);

  node_counters& counters_;
  error_sink on_error_;
  std::function<void()> on_space_;
  std::size_t max_bytes_;
  std::atomic<std::size_t> bytes_{0};
  std::vector<std::unique_ptr<worker>> workers_;
  bool inline_ = false;
  bool stopped_ = false;
};

}  // namespace meshbus::detail
