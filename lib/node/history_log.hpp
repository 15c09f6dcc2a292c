// history_log: the publisher's history on disk (Options::data_dir). The publisher
// side hands every drained I/O batch to its writer thread, which writes it in one
// transaction (synced as the policy says); only then do its batches go out
// (write-ahead: what a subscriber saw, the log holds). One write is in flight at a
// time: while it syncs, the I/O thread sends what was written before and new events
// gather in the outbox, to be the next, larger group. A write the log refuses (a full
// disk or map) is retried by the writer every 200 ms, in order, while failing() says
// so. The outbound streams ask it for batches their bounded memory history let go of
// (repairs, late joiners, StartFrom); a damaged record is reported and answered as a
// loss. Retention and the interval policy's syncs run from the loop's tick.
// I/O thread, except the writer thread's own loop.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "lib/node/node_context.hpp"
#include "lib/node/outbox.hpp"
#include "lib/reliability/publisher_streams.hpp"
#include "lib/store/log_store.hpp"

namespace meshbus::detail {

class history_log final : public reliability::history_backing {
 public:
  history_log(node_context& ctx, store::log_store& store);
  ~history_log() override;
  history_log(const history_log&) = delete;
  history_log& operator=(const history_log&) = delete;

  /// Last sequence per topic of this epoch, for continuing the streams.
  std::vector<std::pair<std::string, std::uint64_t>> streams() const { return store_.last_sequences(); }
  /// Hands finished batches (their timestamp is `timestamp_ns`) to the writer. Only
  /// when idle().
  void submit(std::vector<outbox_batch>&& batches, std::uint64_t timestamp_ns);
  /// No write in flight and nothing written waiting to be taken.
  bool idle() const;
  /// The batches of the last write once it committed; false while none.
  bool take_written(std::vector<outbox_batch>& out, std::uint64_t& timestamp_ns);
  /// The last attempt of the write in flight failed (it is being retried).
  bool failing() const noexcept { return failing_.load(std::memory_order_acquire); }
  /// Events in the write in flight (a stop that cannot wait for it reports them).
  std::uint64_t events_in_flight() const;
  /// Stops the writer (a write still failing is given up).
  void stop();
  /// Retention and the interval policy's syncs.
  void tick(clock::time_point now);
  clock::time_point next_due() const { return next_due_; }

  // reliability::history_backing
  std::vector<reliability::seq_range> fetch(std::string_view topic, std::uint64_t from, std::uint64_t to,
                                            std::size_t& budget,
                                            const std::function<void(transport::frame&&)>& send) override;

 private:
  bool write(const std::vector<outbox_batch>& batches, std::uint64_t timestamp_ns);
  void run();

  node_context& ctx_;
  store::log_store& store_;
  std::vector<store::retention_rule> retention_;
  std::vector<store::history_batch> scratch_;  ///< writer thread
  // The one write in flight, and its outcome (guarded by mu_).
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<outbox_batch> job_;
  std::uint64_t job_ts_ = 0;
  bool has_job_ = false;
  bool written_ = false;
  bool stopping_ = false;
  std::atomic<bool> failing_{false};
  std::thread writer_;
  clock::time_point next_retention_{};
  clock::time_point next_due_{};
};

}  // namespace meshbus::detail
