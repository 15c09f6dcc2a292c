// The subscriber's window on one stream (publisher, epoch, topic): no I/O, no clock.
//
// It delivers batches in sequence order exactly once, holds out-of-order batches in
// a bounded reorder buffer, asks for what is missing (NACK ranges, retried with
// backoff), accepts that the publisher can no longer repair a range (loss), and says
// when a cumulative ack is due. The caller passes `now` and carries out the actions.
//
// Modes: best_effort reports a gap as a loss at once and moves on; reliable and
// acknowledged hold and repair. Overflow policy of the reorder buffer: the batch
// furthest ahead is dropped (counted) and will be asked for again.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <vector>

namespace meshbus::reliability {

using clock = std::chrono::steady_clock;

enum class delivery_mode : std::uint8_t { best_effort = 0, reliable = 1, acknowledged = 2 };

struct receive_config {
  std::size_t max_held_batches = 4096;          ///< reorder buffer, batches
  std::size_t max_held_bytes = std::size_t{32} << 20;  ///< reorder buffer, bytes
  clock::duration nack_retry = std::chrono::milliseconds(20);  ///< first retry; doubles
  clock::duration nack_retry_max = std::chrono::milliseconds(1000);
  std::uint64_t max_nack_span = std::uint64_t{1} << 20;  ///< events asked for per NACK
  std::size_t max_nack_ranges = 32;
  /// A batch further ahead than this is not believed (rejected and counted).
  std::uint64_t max_ahead = std::uint64_t{1} << 24;
  std::uint64_t ack_every = 2048;                              ///< events
  clock::duration ack_interval = std::chrono::milliseconds(5);  ///< at most this late
  /// A window created without a start (the publisher's READY has not come) holds what
  /// arrives at most this long, then starts at the first batch it holds (counted).
  clock::duration start_wait = std::chrono::seconds(3);
};

/// `to` of a range that has no known end: everything from `from` on that the
/// publisher's epoch sent, however much that was (a publisher gone without saying
/// where its streams ended).
inline constexpr std::uint64_t open_end = UINT64_MAX;

struct seq_range {
  std::uint64_t from = 0;
  std::uint64_t to = 0;  ///< inclusive; open_end: no known end
  bool open() const noexcept { return to == open_end; }
  /// Events in the range; 0 for an open one (not known).
  std::uint64_t size() const noexcept { return open() || from > to ? 0 : to - from + 1; }
  friend bool operator==(const seq_range&, const seq_range&) = default;
};

struct receive_counters {
  std::uint64_t duplicates = 0;       ///< events received again
  std::uint64_t lost = 0;             ///< events given up on (loss notices)
  std::uint64_t gaps = 0;             ///< gaps detected
  std::uint64_t nacks = 0;            ///< NACK messages asked for
  std::uint64_t reorder_overflow = 0; ///< held batches dropped to stay in bounds
  std::uint64_t rejected = 0;         ///< batches too far ahead to believe
  std::uint64_t unknown_starts = 0;   ///< started at the first batch held: no start came
};

template <class Payload>
class receive_window {
 public:
  struct delivery {
    Payload payload;
    std::uint64_t first_seq;
    std::uint32_t count;
    std::uint32_t skip;  ///< leading events already delivered
  };
  struct actions {
    std::vector<delivery> deliver;       ///< in order
    std::vector<seq_range> nack;         ///< ask the publisher for these
    std::vector<seq_range> lost;         ///< tell the application these are gone...
    std::vector<std::size_t> lost_at;    ///< ...each after this many of `deliver`
    void clear() {
      deliver.clear();
      nack.clear();
      lost.clear();
      lost_at.clear();
    }
  };

  /// `start`: the first sequence wanted (1 for a stream that is new to us, p + 1 to
  /// start after position p, or any given sequence); 0: not known yet. Until start()
  /// says where, batches are held (in the bounded reorder buffer), not delivered.
  receive_window(delivery_mode mode, receive_config cfg, std::uint64_t start)
      : mode_(mode), cfg_(cfg), next_(start), started_(start != 0) {}

  /// Where a window created without a start begins: `seq` (at least 1). Held
  /// batches before it were published before the subscription began and are let go;
  /// the rest are delivered in order, holes asked for. No-op once started.
  void start(std::uint64_t seq, clock::time_point now, actions& out) {
    if (started_) return;
    started_ = true;
    next_ = std::max<std::uint64_t>(seq, 1);
    for (auto it = held_.begin(); it != held_.end();) {
      if (it->first + it->second.count <= next_) {
        held_bytes_ -= it->second.bytes;
        it = held_.erase(it);
      } else {
        note_seen(it->first + it->second.count - 1);
        ++it;
      }
    }
    drain(now, out);
    if (mode_ == delivery_mode::best_effort) {
      give_up_holes(now, out);
    } else {
      request_new(now, out);
    }
  }

  /// A batch [first_seq, first_seq + count) arrived (by PUB or as a repair).
  void on_batch(std::uint64_t first_seq, std::uint32_t count, std::size_t bytes, Payload&& payload,
                clock::time_point now, actions& out) {
    if (count == 0) return;
    const std::uint64_t end = first_seq + count;
    if (!started_) {
      if (first_seq != 1) {  // where to begin is not known yet: keep it for start()
        if (held_.empty()) waiting_since_ = now;
        hold(first_seq, count, bytes, std::move(payload));
        return;
      }
      start(1, now, out);  // the stream began after the subscription: nothing before it
    }
    if (end <= next_) {
      counters_.duplicates += count;
      return;
    }
    if (first_seq > next_ && first_seq - next_ > cfg_.max_ahead) {
      ++counters_.rejected;
      return;
    }
    note_seen(end - 1);
    if (first_seq <= next_) {
      const auto skip = static_cast<std::uint32_t>(next_ - first_seq);
      counters_.duplicates += skip;
      out.deliver.push_back({std::move(payload), first_seq, count, skip});
      next_ = end;
      drain(now, out);
      return;
    }
    // Ahead of what we expect: a gap.
    if (mode_ == delivery_mode::best_effort) {
      give_up({next_, first_seq - 1}, out);
      out.deliver.push_back({std::move(payload), first_seq, count, 0});
      next_ = end;
      drain(now, out);
      return;
    }
    hold(first_seq, count, bytes, std::move(payload));
    request_new(now, out);
  }

  /// The publisher's last sequence on this stream (heartbeat or position).
  void on_last_sequence(std::uint64_t last_seq, clock::time_point now, actions& out) {
    if (!started_ || last_seq < next_) return;
    if (last_seq - next_ >= cfg_.max_ahead) {
      ++counters_.rejected;
      return;
    }
    if (mode_ == delivery_mode::best_effort) {
      if (held_.empty()) {
        give_up({next_, last_seq}, out);
        next_ = last_seq + 1;
      }
      return;
    }
    note_seen(last_seq);
    request_new(now, out);
  }

  /// The publisher cannot repair [from, to] any more.
  void on_loss(seq_range r, clock::time_point now, actions& out) {
    if (!started_ || r.to < next_ || r.from > r.to) return;
    if (r.to - std::max(r.from, next_) > cfg_.max_ahead) {
      ++counters_.rejected;
      return;
    }
    note_seen(r.to);
    if (r.from <= next_) {
      give_up({next_, r.to}, out);
      next_ = r.to + 1;
      drain(now, out);
    } else {
      lost_ahead_[r.from] = std::max(lost_ahead_[r.from], r.to);
    }
  }

  /// Asks again for everything still missing when the retry is due. A window that
  /// waited start_wait for its start begins at the first batch it holds.
  void tick(clock::time_point now, actions& out) {
    if (!started_) {
      if (held_.empty() || now < waiting_since_ + cfg_.start_wait) return;
      ++counters_.unknown_starts;
      start(held_.begin()->first, now, out);
      return;
    }
    if (mode_ == delivery_mode::best_effort || !has_gap() || now < nack_due_) return;
    request_range(next_, now, out);
    nack_due_ = now + backoff_;
    backoff_ = std::min(backoff_ * 2, cfg_.nack_retry_max);
  }

  /// Cumulative: every event before this has been delivered (0: none yet).
  std::uint64_t delivered_through() const noexcept { return next_ == 0 ? 0 : next_ - 1; }
  std::uint64_t next_expected() const noexcept { return next_; }
  bool started() const noexcept { return started_; }
  bool has_gap() const noexcept { return started_ && highest_ >= next_; }
  delivery_mode mode() const noexcept { return mode_; }
  void set_mode(delivery_mode m) noexcept { mode_ = m; }
  std::size_t held_batches() const noexcept { return held_.size(); }
  std::size_t held_bytes() const noexcept { return held_bytes_; }
  const receive_counters& counters() const noexcept { return counters_; }
  /// Nothing before `seq` exists any more and nothing has been delivered yet: start
  /// there without calling it a loss (a late joiner asking for the earliest available).
  void begin_at(std::uint64_t seq, clock::time_point now, actions& out) {
    if (!started_ || next_ >= seq) return;
    next_ = seq;
    drain(now, out);
  }

  /// The publisher is gone: gives up on every hole and delivers what is held (a
  /// window that never learned its start begins at the first batch it holds).
  /// `tail_unknown`: where the stream ended is not known, so whatever came after the
  /// highest sequence known is lost too: one open-ended range, from there on.
  void abandon(clock::time_point now, actions& out, bool tail_unknown = false) {
    if (!started_) {
      if (held_.empty()) return;  // it never began: nothing of it was due here
      start(held_.begin()->first, now, out);
    }
    give_up_holes(now, out);
    if (tail_unknown) give_up({next_, open_end}, out);  // the window is done with
  }
  /// When the next NACK retry is due (time_point::max() when nothing is missing).
  clock::time_point nack_due() const noexcept {
    if (!started_) return held_.empty() ? clock::time_point::max() : waiting_since_ + cfg_.start_wait;
    return has_gap() && mode_ != delivery_mode::best_effort ? nack_due_ : clock::time_point::max();
  }

 private:
  struct held_batch {
    std::uint32_t count;
    std::size_t bytes;
    Payload payload;
  };

  // Reports every hole up to the highest sequence known as lost, delivering what is
  // held in between (a publisher gone; a best-effort window starting).
  void give_up_holes(clock::time_point now, actions& out) {
    while (has_gap()) {
      const std::uint64_t first_held = held_.empty() ? highest_ + 1 : held_.begin()->first;
      if (first_held > next_) {
        give_up({next_, first_held - 1}, out);
        next_ = first_held;
      }
      drain(now, out);
    }
  }

  void note_seen(std::uint64_t seq) noexcept {
    if (seq > highest_) highest_ = seq;
  }

  void give_up(seq_range r, actions& out) {
    if (r.from > r.to) return;
    out.lost.push_back(r);
    out.lost_at.push_back(out.deliver.size());
    counters_.lost += r.size();
    ++counters_.gaps;
  }

  void hold(std::uint64_t first_seq, std::uint32_t count, std::size_t bytes, Payload&& payload) {
    if (held_.count(first_seq) != 0) {
      counters_.duplicates += count;
      return;
    }
    held_.emplace(first_seq, held_batch{count, bytes, std::move(payload)});
    held_bytes_ += bytes;
    while (held_.size() > cfg_.max_held_batches || (held_bytes_ > cfg_.max_held_bytes && held_.size() > 1)) {
      auto last = std::prev(held_.end());
      held_bytes_ -= last->second.bytes;
      held_.erase(last);
      ++counters_.reorder_overflow;
    }
  }

  // Delivers held batches that are now in order, skipping ranges known to be lost.
  void drain(clock::time_point now, actions& out) {
    const std::uint64_t before = next_;
    for (;;) {
      auto lost = lost_ahead_.begin();
      if (lost != lost_ahead_.end() && lost->first <= next_) {
        if (lost->second >= next_) {
          give_up({next_, lost->second}, out);
          next_ = lost->second + 1;
        }
        lost_ahead_.erase(lost);
        continue;
      }
      auto it = held_.begin();
      if (it == held_.end() || it->first > next_) break;
      const std::uint64_t end = it->first + it->second.count;
      held_bytes_ -= it->second.bytes;
      if (end > next_) {
        const auto skip = static_cast<std::uint32_t>(next_ - it->first);
        counters_.duplicates += skip;
        out.deliver.push_back({std::move(it->second.payload), it->first, it->second.count, skip});
        next_ = end;
      } else {
        counters_.duplicates += it->second.count;
      }
      held_.erase(it);
    }
    if (next_ != before) {  // progress: what is still missing gets a fresh retry interval
      nack_due_ = now + cfg_.nack_retry;
      backoff_ = std::min(cfg_.nack_retry * 2, cfg_.nack_retry_max);
    }
    if (next_ > requested_through_) requested_through_ = next_ - 1;
  }

  // NACKs the holes not asked for yet (a new gap), at once.
  void request_new(clock::time_point now, actions& out) {
    if (!has_gap() || highest_ <= requested_through_) return;
    ++counters_.gaps;
    const bool retry_pending = requested_through_ >= next_;
    request_range(std::max(next_, requested_through_ + 1), now, out);
    if (!retry_pending) {
      nack_due_ = now + cfg_.nack_retry;
      backoff_ = std::min(cfg_.nack_retry * 2, cfg_.nack_retry_max);
    }
  }

  // NACKs every hole from `cursor` up to the highest sequence known to exist.
  void request_range(std::uint64_t cursor, clock::time_point, actions& out) {
    std::uint64_t budget = cfg_.max_nack_span;
    const std::size_t before = out.nack.size();
    auto emit = [&](std::uint64_t from, std::uint64_t to) {
      if (from > to || budget == 0 || out.nack.size() - before >= cfg_.max_nack_ranges) return;
      to = std::min(to, from + budget - 1);
      out.nack.push_back({from, to});
      budget -= to - from + 1;
    };
    for (const auto& [first, b] : held_) {
      if (first + b.count <= cursor) continue;
      if (first > cursor) emit(cursor, first - 1);
      cursor = std::max(cursor, first + b.count);
    }
    if (highest_ >= cursor) emit(cursor, highest_);
    if (out.nack.size() > before) {
      ++counters_.nacks;
      requested_through_ = std::max(requested_through_, out.nack.back().to);
    }
  }

  delivery_mode mode_;
  receive_config cfg_;
  std::uint64_t next_;
  bool started_;
  clock::time_point waiting_since_{};  ///< not started: when the first batch was held
  std::uint64_t highest_ = 0;  ///< highest sequence known to exist
  std::map<std::uint64_t, held_batch> held_;
  std::size_t held_bytes_ = 0;
  std::map<std::uint64_t, std::uint64_t> lost_ahead_;  ///< from -> to, beyond next_
  std::uint64_t requested_through_ = 0;  ///< highest sequence a NACK has asked for
  clock::time_point nack_due_{};
  clock::duration backoff_ = cfg_.nack_retry;
  receive_counters counters_;
};

}  // namespace meshbus::reliability
