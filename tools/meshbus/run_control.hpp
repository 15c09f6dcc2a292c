// How one run of the tool is controlled: exit codes, the latch that hands "the run is
// over" from handler and signal threads to the main thread, and waits that a signal can
// interrupt. Handlers only hand results to the main thread; only main() turns outcomes
// into exit codes.
#pragma once

#include <signal.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "meshbus/meshbus.hpp"

namespace meshbus_tool {

using std::chrono::milliseconds;
using steady = std::chrono::steady_clock;

namespace exit_code {
constexpr int ok = 0;
constexpr int failure = 1;  ///< runtime failure: meshbus::error, I/O
constexpr int usage = 2;    ///< bad flags, topic or pattern syntax
constexpr int timeout = 3;  ///< a count, peer or subscriber target not reached in time
constexpr int unacknowledged = 4;  ///< pub: a subscriber gone for good never acknowledged some events
}  // namespace exit_code

/// A command-line mistake found after parsing (topic or pattern syntax): exit 2.
class usage_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Set once by whoever decides the run is over (count reached, signal, output closed); the
/// main thread waits on it. The eventfd lets poll() loops (stdin) wake up too.
class exit_latch {
 public:
  exit_latch();
  ~exit_latch();
  exit_latch(const exit_latch&) = delete;
  exit_latch& operator=(const exit_latch&) = delete;

  /// Any thread. The first call sets the exit code; later calls change nothing.
  void finish(int code) noexcept;
  bool finished() const noexcept { return finished_.load(std::memory_order_acquire); }
  int code() const;
  /// True when finished before `deadline`.
  bool wait_until(steady::time_point deadline);
  void wait();
  /// Readable once finished.
  int wake_fd() const noexcept { return wake_fd_; }

 private:
  mutable std::mutex mu_;
  std::condition_variable done_;
  std::atomic<bool> finished_{false};
  int code_ = exit_code::ok;
  int wake_fd_;
};

/// SIGINT/SIGTERM finish the latch with exit 0 (repeats change nothing: every wait is
/// interruptible and stop() is bounded by Options::linger). Must be created before any Node:
/// it blocks the signals, and the Node's threads inherit that mask, so only this watcher's
/// sigwait() ever sees them.
class signal_watcher {
 public:
  explicit signal_watcher(exit_latch& latch);
  ~signal_watcher();
  signal_watcher(const signal_watcher&) = delete;
  signal_watcher& operator=(const signal_watcher&) = delete;

 private:
  void watch(exit_latch& latch);

  sigset_t signals_{};
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

/// Runs `step` (a bounded library wait returning true when satisfied) in slices until it is
/// satisfied, `deadline` passes or the latch finishes, so Ctrl-C is never ignored for long.
bool wait_interruptibly(const exit_latch& latch, steady::time_point deadline,
                        const std::function<bool(milliseconds)>& step);

using peer_filter = std::function<bool(const std::vector<meshbus::PeerInfo>&)>;

/// Listens for peers until `wait` passes, or earlier: once a peer joined, `wanted` (when given)
/// holds for the known peers and no further peer joined for 100 ms. Live nodes answer a new
/// node's first beacon at once, so the rest of them join within moments of the first.
void discover_peers(meshbus::Node& node, milliseconds wait, const exit_latch& latch,
                    const peer_filter& wanted = {});

enum class publish_outcome : std::uint8_t { published, timed_out, interrupted };

/// Calls `publish` (returning meshbus::PublishResult) until it is accepted, retrying while the
/// send queue stays full (each try blocks up to Options::send_timeout), until `deadline` or the
/// latch.
template <typename Publish>
publish_outcome publish_retrying(Publish&& publish, steady::time_point deadline, const exit_latch& latch) {
  for (;;) {
    const auto r = publish();
    if (r == meshbus::PublishResult::ok) return publish_outcome::published;
    if (latch.finished()) return publish_outcome::interrupted;
    if (steady::now() >= deadline) return publish_outcome::timed_out;
    // The durable log refuses writes (a full disk): it is retried, not spun on.
    if (r == meshbus::PublishResult::store_failed) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace meshbus_tool
