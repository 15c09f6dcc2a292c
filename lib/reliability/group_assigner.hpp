// Competing consumers on the publisher side: which member of a service group gets
// each batch, and what happens to a member's work when it leaves. No I/O, no clock.
//
// A batch for a group goes to the live member with the least unacknowledged work
// (round robin among equals), with that member's next assignment sequence number
// (per member and group, from 1). Members acknowledge cumulatively what their
// handlers finished. A member that leaves hands its unacknowledged batches to the
// others, in their original order; with no member left they wait in a bounded
// backlog (overflow policy: drop the oldest, counted) until one joins. A member that
// makes no progress gets its unacknowledged batches again after a timeout that
// doubles per attempt.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "lib/reliability/receive_window.hpp"
#include "lib/wire/common.hpp"

namespace meshbus::reliability {

struct group_config {
  std::uint64_t window = 1u << 16;  ///< unacknowledged events per member
  std::size_t max_backlog = 1u << 16;  ///< batches waiting for a member
  clock::duration redelivery_timeout = std::chrono::milliseconds(1000);
  clock::duration redelivery_max = std::chrono::milliseconds(30000);
};

template <class Payload>
class group_assigner {
 public:
  /// One batch to send now. `payload` stays valid until the next call.
  struct send {
    wire::node_id_bytes member{};
    std::string group;
    std::uint64_t seq = 0;  ///< the member's assignment sequence
    const Payload* payload = nullptr;
  };

  explicit group_assigner(group_config cfg) : cfg_(cfg) {}

  /// `member` serves `group` from now on. Waiting work goes to it at once.
  void join(const std::string& group, const wire::node_id_bytes& member, clock::time_point now, std::vector<send>& out) {
    auto& g = groups_[group];
    auto [it, added] = g.members.try_emplace(member);
    if (added) it->second.last_progress = now;
    while (!g.backlog.empty()) {
      auto b = std::move(g.backlog.front());
      g.backlog.pop_front();
      place(group, g, std::move(b), now, out);
    }
  }

  /// `member` no longer serves `group` (or any group, with an empty name): its
  /// unacknowledged work is handed to the others. Returns how many batches moved.
  std::size_t leave(const std::string& group, const wire::node_id_bytes& member, clock::time_point now,
                    std::vector<send>& out) {
    std::size_t moved = 0;
    for (auto& [name, g] : groups_) {
      if (!group.empty() && name != group) continue;
      auto it = g.members.find(member);
      if (it == g.members.end()) continue;
      auto work = std::move(it->second.unacked);
      unacked_events_ -= std::min(unacked_events_, it->second.unacked_events);
      if (it->second.unacked_events >= cfg_.window) --over_window_;
      g.members.erase(it);
      for (auto& a : work) {
        place(name, g, std::move(a.b), now, out);
        ++moved;
      }
    }
    reassigned_ += moved;
    return moved;
  }

  bool has_members(const std::string& group) const {
    auto it = groups_.find(group);
    return it != groups_.end() && !it->second.members.empty();
  }
  std::vector<std::string> groups() const {
    std::vector<std::string> out;
    for (const auto& [name, g] : groups_) out.push_back(name);
    return out;
  }

  /// A batch of `count` events for `group`: to a member now, or into the backlog.
  void assign(const std::string& group, std::uint32_t count, Payload&& payload, clock::time_point now,
              std::vector<send>& out) {
    place(group, groups_[group], batch{count, std::move(payload)}, now, out);
  }

  /// Cumulative: `member` finished every assignment of `group` up to `seq`.
  /// False when the member or group is unknown, or `seq` was never assigned.
  bool ack(const wire::node_id_bytes& member, const std::string& group, std::uint64_t seq, clock::time_point now) {
    auto g = groups_.find(group);
    if (g == groups_.end()) return false;
    auto it = g->second.members.find(member);
    if (it == g->second.members.end() || seq >= it->second.next_seq) return false;
    auto& m = it->second;
    bool progress = false;
    while (!m.unacked.empty() && m.unacked.front().seq <= seq) {
      adjust(m, -static_cast<std::int64_t>(m.unacked.front().b.count));
      m.unacked.pop_front();
      progress = true;
    }
    if (progress) {
      m.last_progress = now;
      m.attempts = 0;
    }
    return true;
  }

  /// Assignments of `member` in [from, to] that are still unacknowledged, to send again.
  void resend(const wire::node_id_bytes& member, const std::string& group, std::uint64_t from, std::uint64_t to,
              std::vector<send>& out) const {
    auto g = groups_.find(group);
    if (g == groups_.end()) return;
    auto it = g->second.members.find(member);
    if (it == g->second.members.end()) return;
    for (const auto& a : it->second.unacked) {
      if (a.seq >= from && a.seq <= to) out.push_back({member, group, a.seq, &a.b.payload});
    }
  }

  /// Members without progress for their timeout get their unacknowledged work again.
  void due(clock::time_point now, std::vector<send>& out) {
    for (auto& [name, g] : groups_) {
      for (auto& [id, m] : g.members) {
        if (m.unacked.empty() || now - m.last_progress < timeout_after(m.attempts)) continue;
        ++m.attempts;
        m.last_progress = now;
        ++redelivered_;
        for (const auto& a : m.unacked) out.push_back({id, name, a.seq, &a.b.payload});
      }
    }
  }

  bool window_full() const noexcept { return over_window_ != 0; }
  bool all_acknowledged() const noexcept { return unacked_events_ == 0; }
  std::uint64_t unacknowledged() const noexcept { return unacked_events_; }
  std::size_t backlog() const {
    std::size_t n = 0;
    for (const auto& [name, g] : groups_) n += g.backlog.size();
    return n;
  }
  std::uint64_t reassigned() const noexcept { return reassigned_; }
  std::uint64_t redelivered() const noexcept { return redelivered_; }
  std::uint64_t backlog_dropped() const noexcept { return backlog_dropped_; }
  std::uint64_t unacknowledged(const wire::node_id_bytes& member) const {
    std::uint64_t n = 0;
    for (const auto& [name, g] : groups_) {
      if (auto it = g.members.find(member); it != g.members.end()) n += it->second.unacked_events;
    }
    return n;
  }

 private:
  struct batch {
    std::uint32_t count = 0;
    Payload payload;
  };
  struct assignment {
    std::uint64_t seq = 0;
    batch b;
  };
  struct member_state {
    std::deque<assignment> unacked;
    std::uint64_t next_seq = 1;
    std::uint64_t unacked_events = 0;
    clock::time_point last_progress{};
    unsigned attempts = 0;
  };
  struct group_state {
    std::map<wire::node_id_bytes, member_state> members;
    std::deque<batch> backlog;
    std::size_t turn = 0;
  };

  void adjust(member_state& m, std::int64_t delta) {
    const bool was_over = m.unacked_events >= cfg_.window;
    if (delta >= 0) {
      m.unacked_events += static_cast<std::uint64_t>(delta);
      unacked_events_ += static_cast<std::uint64_t>(delta);
    } else {
      const auto d = static_cast<std::uint64_t>(-delta);
      m.unacked_events -= std::min(m.unacked_events, d);
      unacked_events_ -= std::min(unacked_events_, d);
    }
    const bool is_over = m.unacked_events >= cfg_.window;
    if (is_over && !was_over) ++over_window_;
    if (!is_over && was_over) --over_window_;
  }

  void place(const std::string& name, group_state& g, batch&& b, clock::time_point now, std::vector<send>& out) {
    if (g.members.empty()) {
      if (g.backlog.size() >= cfg_.max_backlog) {
        g.backlog.pop_front();
        ++backlog_dropped_;
      }
      g.backlog.push_back(std::move(b));
      return;
    }
    // The least loaded member; the scan starts one further each time, so equals take turns.
    const std::size_t n = g.members.size();
    const std::size_t start = g.turn++ % n;
    auto pick = g.members.end();
    auto it = std::next(g.members.begin(), static_cast<std::ptrdiff_t>(start));
    for (std::size_t k = 0; k < n; ++k, ++it) {
      if (it == g.members.end()) it = g.members.begin();
      if (pick == g.members.end() || it->second.unacked_events < pick->second.unacked_events) pick = it;
    }
    auto& m = pick->second;
    if (m.unacked.empty()) m.last_progress = now;
    const auto seq = m.next_seq++;
    adjust(m, b.count);
    m.unacked.push_back({seq, std::move(b)});
    out.push_back({pick->first, name, seq, &m.unacked.back().b.payload});
  }

  clock::duration timeout_after(unsigned attempts) const {
    auto t = cfg_.redelivery_timeout;
    for (unsigned i = 0; i < attempts && t < cfg_.redelivery_max; ++i) t *= 2;
    return std::min(t, cfg_.redelivery_max);
  }

  group_config cfg_;
  std::map<std::string, group_state> groups_;
  std::uint64_t unacked_events_ = 0;
  std::size_t over_window_ = 0;
  std::uint64_t reassigned_ = 0;
  std::uint64_t redelivered_ = 0;
  std::uint64_t backlog_dropped_ = 0;
};

}  // namespace meshbus::reliability
