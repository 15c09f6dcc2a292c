// The outbox: where publish() leaves events for the I/O thread.
//
// publish() encodes each event straight into the wire batch of its topic under one
// short lock, assigning the stream's next sequence number; consecutive events of a
// topic share a batch. The I/O thread takes everything at once (drain), so events
// are batched exactly while the I/O thread is busy and never by waiting. Bounded by
// bytes (published but not yet accepted by ZeroMQ); when full, publish() waits up
// to its timeout (policy block) or fails at once (policy fail) — counted by the
// caller. No I/O here.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "lib/node/counters.hpp"
#include "lib/wire/envelope.hpp"

namespace meshbus::detail {

/// Recycled frame buffers, shared with ZeroMQ's I/O thread: a frame handed over
/// without a copy comes back here when ZeroMQ has sent it. Thread-safe; keeps at
/// most `max_kept` buffers, none larger than `max_capacity`.
class frame_pool {
 public:
  frame_pool(std::size_t max_kept, std::size_t max_capacity, std::size_t initial_capacity)
      : max_kept_(max_kept), max_capacity_(max_capacity), initial_capacity_(initial_capacity) {}
  wire::bytes take();
  void give_back(wire::bytes&& b);

 private:
  std::mutex mu_;
  std::vector<wire::bytes> spare_;
  const std::size_t max_kept_;
  const std::size_t max_capacity_;
  const std::size_t initial_capacity_;
};

struct outbox_batch {
  std::string topic;
  std::uint64_t first_seq = 0;
  std::uint32_t count = 0;
  wire::bytes frame;
  wire::batch_marks marks;
};

struct string_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

class outbox {
 public:
  struct limits {
    std::size_t max_bytes = 64u << 20;
    std::size_t max_batch_bytes = 64u << 10;
    std::uint32_t max_batch_events = 4096;
  };
  enum class push_result : std::uint8_t { ok, full, closed };

  /// `wake` is called (outside the lock) when the outbox goes from empty to not empty.
  /// Accepted events are counted in `accepted` (Stats::events_published) when given.
  outbox(const wire::node_id_bytes& publisher, std::uint64_t epoch, limits lim,
         std::function<void()> wake, counter* accepted = nullptr);

  /// Where frame buffers come from and go back to.
  const std::shared_ptr<frame_pool>& pool() const noexcept { return pool_; }

  /// The stream on `topic` goes on at `next_seq` (a restart continuing its epoch).
  /// Before the first push of that topic.
  void continue_stream(std::string_view topic, std::uint64_t next_seq);

  /// Appends one event; waits up to `wait` for space. Any thread.
  push_result push(std::string_view topic, wire::byte_view payload, const wire::event_fields* fields,
                   std::chrono::milliseconds wait);

  /// Takes every pending batch, in publish order. I/O thread.
  void drain(std::vector<outbox_batch>& out);
  /// `bytes` taken by drain() were accepted by ZeroMQ: frees that much space.
  void release(std::size_t bytes);
  /// Wakes and refuses every publisher from now on.
  void close();

  bool empty() const;
  std::size_t bytes() const;          ///< pending + drained but not released
  std::uint64_t events_accepted() const;
  /// Waits until everything pushed so far has been released, or the timeout.
  bool wait_released(std::chrono::milliseconds timeout);

 private:
  void close_open_batch_locked();

  const wire::node_id_bytes publisher_;
  const std::uint64_t epoch_;
  const limits limits_;
  const std::function<void()> wake_;

  mutable std::mutex mu_;
  std::condition_variable space_;
  std::condition_variable released_;
  std::vector<outbox_batch> closed_;
  outbox_batch open_;
  bool has_open_ = false;
  std::unordered_map<std::string, std::uint64_t, string_hash, std::equal_to<>> next_seq_;
  std::size_t bytes_ = 0;
  counter own_accepted_{0};
  counter* accepted_;  ///< written under mu_ only, read by anyone
  bool closed_for_good_ = false;
  std::shared_ptr<frame_pool> pool_;
};

}  // namespace meshbus::detail
