// The publisher's view of its subscribers: what each one holds (reliable) or has
// processed (acknowledged), per topic, from their cumulative acks. No I/O, no clock.
//
// It answers three questions: is any subscriber's window of unacknowledged events
// full (flow control), has every subscriber acknowledged everything sent (flush),
// and which acknowledged subscribers are due a redelivery (no progress for a timeout
// that doubles on each attempt). Best-effort subscribers are not tracked.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "lib/reliability/receive_window.hpp"
#include "lib/wire/common.hpp"

namespace meshbus::reliability {

struct tracker_config {
  std::uint64_t window = std::uint64_t{1} << 18;  ///< unacknowledged events per subscriber
  clock::duration redelivery_timeout = std::chrono::milliseconds(1000);
  clock::duration redelivery_max = std::chrono::milliseconds(30000);
};

struct redelivery {
  wire::node_id_bytes subscriber{};
  std::string topic;
  seq_range range;
};

enum class ack_result : std::uint8_t { ok, unknown_subscriber, beyond_sent };

class delivery_tracker {
 public:
  explicit delivery_tracker(tracker_config cfg) : cfg_(cfg) {}

  /// Starts (or updates) tracking `subscriber` on `topic`; it is responsible for
  /// what comes after `start_after`. A stronger mode replaces a weaker one.
  void track(const wire::node_id_bytes& subscriber, std::string_view topic, delivery_mode mode,
             std::uint64_t start_after, clock::time_point now);
  /// True when the subscriber is tracked on the topic.
  bool tracks(const wire::node_id_bytes& subscriber, std::string_view topic) const;
  /// The subscriber left: forget it (its window no longer holds anyone up).
  /// Returns how many events it had not acknowledged.
  std::uint64_t forget(const wire::node_id_bytes& subscriber);
  /// The subscriber was declared gone but may come back (absent), or is back. An
  /// absent subscriber keeps its progress and still counts as unacknowledged (flush
  /// waits for it), but its window holds nobody up and it gets no redeliveries.
  void set_absent(const wire::node_id_bytes& subscriber, bool absent);
  bool absent(const wire::node_id_bytes& subscriber) const;
  /// The publisher sent everything on `topic` up to `last_seq`.
  void sent(std::string_view topic, std::uint64_t last_seq, clock::time_point now);
  /// A cumulative ack: `subscriber` holds (or processed) everything on `topic` up to `seq`.
  ack_result ack(const wire::node_id_bytes& subscriber, std::string_view topic, std::uint64_t seq,
                 clock::time_point now);

  /// Some subscriber has `window` or more events unacknowledged.
  bool window_full() const noexcept { return over_window_ != 0; }
  /// Every tracked subscriber acknowledged everything sent.
  bool all_acknowledged() const noexcept { return total_unacked_ == 0; }
  std::uint64_t unacknowledged(const wire::node_id_bytes& subscriber) const;
  std::uint64_t total_unacknowledged() const noexcept { return total_unacked_; }
  std::size_t subscribers() const noexcept { return subscribers_.size(); }

  /// Subscribers with events unacknowledged, and how many.
  std::vector<std::pair<wire::node_id_bytes, std::uint64_t>> lagging() const;
  /// Calls `f(subscriber, topic, acked)` for every topic a subscriber has not
  /// acknowledged everything of.
  template <class F>
  void for_each_behind(F&& f) const {
    for (const auto& [id, s] : subscribers_) {
      if (s.unacked == 0) continue;
      for (const auto& [topic, p] : s.topics) {
        const auto t = topics_.find(topic);
        if (t != topics_.end() && p.acked < t->second.last_sent) f(id, std::string_view(topic), p.acked);
      }
    }
  }

  /// Acknowledged subscribers with no progress for their timeout: what to send again.
  void due_redeliveries(clock::time_point now, std::vector<redelivery>& out);
  /// The earliest time a redelivery may be due (time_point::max() when none).
  clock::time_point next_redelivery() const;

 private:
  struct progress {
    delivery_mode mode = delivery_mode::reliable;
    std::uint64_t acked = 0;
    clock::time_point last_progress{};
    unsigned attempts = 0;
  };
  struct subscriber_state {
    std::unordered_map<std::string, progress> topics;
    std::uint64_t unacked = 0;
    bool absent = false;
  };
  struct topic_state {
    std::uint64_t last_sent = 0;
    std::vector<wire::node_id_bytes> subscribers;
  };

  void adjust(subscriber_state& s, std::int64_t delta);
  bool over(const subscriber_state& s) const noexcept;
  void count_over(bool was_over, bool is_over) noexcept;
  clock::duration timeout_after(unsigned attempts) const;

  tracker_config cfg_;
  std::map<wire::node_id_bytes, subscriber_state> subscribers_;
  std::unordered_map<std::string, topic_state> topics_;
  std::uint64_t total_unacked_ = 0;
  std::size_t over_window_ = 0;
};

}  // namespace meshbus::reliability
