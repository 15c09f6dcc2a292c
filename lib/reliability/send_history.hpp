// The publisher's bounded history of sent batches, for repair (no I/O, no clock).
//
// Batches are kept per topic in sequence order and evicted oldest-first across all
// topics when the node-wide bound on events or bytes is passed. A lookup answers a
// repair request: the stored batches that overlap the range, and the part of the
// range that is no longer held (evicted) or was never sent. Payload is whatever the
// caller stores per batch (the node keeps the ZeroMQ message; tests keep strings).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace meshbus::reliability {

struct history_limits {
  std::size_t max_events = 1u << 20;
  std::size_t max_bytes = std::size_t{128} << 20;
};

template <class Payload>
class send_history {
 public:
  struct batch {
    std::uint64_t first_seq = 0;
    std::uint32_t count = 0;
    std::size_t bytes = 0;
    Payload payload;
    std::uint64_t last_seq() const noexcept { return first_seq + count - 1; }
  };

  /// What a repair request for [from, to] finds.
  struct lookup {
    std::vector<const batch*> batches;  ///< overlapping batches, in order
    std::uint64_t evicted_from = 0;     ///< [evicted_from, evicted_to]: no longer held
    std::uint64_t evicted_to = 0;
    bool beyond_sent = false;           ///< part of the range was never sent (refused)
  };

  explicit send_history(history_limits limits) : limits_(limits) {}

  /// Stores a sent batch; evicts the oldest batches beyond the bounds.
  void append(std::string_view topic, std::uint64_t first_seq, std::uint32_t count, std::size_t bytes,
              Payload payload) {
    auto it = topics_.find(std::string(topic));
    if (it == topics_.end()) it = topics_.emplace(std::string(topic), topic_log{}).first;
    auto& log = it->second;
    log.last_sent = first_seq + count - 1;
    log.batches.push_back(batch{first_seq, count, bytes, std::move(payload)});
    order_.push_back(&log);
    events_ += count;
    bytes_ += bytes;
    // Keep at least the newest batch, however large.
    while ((events_ > limits_.max_events || bytes_ > limits_.max_bytes) && order_.size() > 1) evict_oldest();
  }

  /// A topic whose sequences up to `last_sent` went out before (an earlier run of the
  /// same epoch) but are not held here.
  void resume(std::string_view topic, std::uint64_t last_sent) {
    auto it = topics_.find(std::string(topic));
    if (it == topics_.end()) it = topics_.emplace(std::string(topic), topic_log{}).first;
    if (it->second.batches.empty()) it->second.last_sent = std::max(it->second.last_sent, last_sent);
  }

  lookup find(std::string_view topic, std::uint64_t from, std::uint64_t to) const {
    lookup out;
    const auto it = topics_.find(std::string(topic));
    const std::uint64_t last = it == topics_.end() ? 0 : it->second.last_sent;
    if (to > last) {
      out.beyond_sent = true;
      to = last;
    }
    if (from == 0 || from > to) return out;
    const auto& batches = it->second.batches;
    const std::uint64_t oldest = batches.empty() ? last + 1 : batches.front().first_seq;
    if (from < oldest) {
      out.evicted_from = from;
      out.evicted_to = std::min(to, oldest - 1);
    }
    // Batches are contiguous and sorted: binary search the first that ends at or after `from`.
    auto b = std::lower_bound(batches.begin(), batches.end(), from,
                              [](const batch& x, std::uint64_t seq) { return x.last_seq() < seq; });
    for (; b != batches.end() && b->first_seq <= to; ++b) out.batches.push_back(&*b);
    return out;
  }

  /// Last sequence sent on `topic` (0: none).
  std::uint64_t last_sent(std::string_view topic) const {
    const auto it = topics_.find(std::string(topic));
    return it == topics_.end() ? 0 : it->second.last_sent;
  }
  /// Oldest sequence still held for `topic` (last_sent + 1 when none is).
  std::uint64_t oldest(std::string_view topic) const {
    const auto it = topics_.find(std::string(topic));
    if (it == topics_.end()) return 1;
    return it->second.batches.empty() ? it->second.last_sent + 1 : it->second.batches.front().first_seq;
  }

  /// Visits every batch held, topic by topic (in no particular order of topics), each
  /// topic's batches in sequence order.
  template <class Visit>
  void for_each(Visit&& visit) const {
    for (const auto& [topic, log] : topics_) {
      for (const auto& b : log.batches) visit(std::string_view(topic), b);
    }
  }

  std::size_t events() const noexcept { return events_; }
  std::size_t bytes() const noexcept { return bytes_; }
  std::uint64_t evicted_events() const noexcept { return evicted_; }

 private:
  struct topic_log {
    std::deque<batch> batches;
    std::uint64_t last_sent = 0;
  };

  void evict_oldest() {
    auto* log = order_.front();
    order_.pop_front();
    const auto& b = log->batches.front();
    events_ -= b.count;
    bytes_ -= b.bytes;
    evicted_ += b.count;
    log->batches.pop_front();
  }

  history_limits limits_;
  std::unordered_map<std::string, topic_log> topics_;
  std::deque<topic_log*> order_;  ///< append order across topics; the front is the oldest
  std::size_t events_ = 0;
  std::size_t bytes_ = 0;
  std::uint64_t evicted_ = 0;
};

}  // namespace meshbus::reliability
