// Competing consumers on the publisher side: which member of a service group gets
// each batch, and what happens to a member's work when it leaves or stops fitting the
// group. No I/O, no clock.
//
// A batch for a group goes to the active member with the least unacknowledged work
// (round robin among equals), with that member's next assignment sequence number
// (per member and group, from 1, never reused while the member is known: a member
// that stops and starts serving a group again goes on from where it was). Members
// acknowledge cumulatively what their handlers finished.
//
// A member is *active* (it takes new work) or *draining* (`retire`: it takes none, and
// keeps what it holds until it acknowledges it or asks for it again, which hands it to
// the others). A member that is gone (`leave`) hands all its unacknowledged batches to
// the others at once, in their original order. With no active member, handed-on
// batches wait in a bounded backlog (overflow policy: drop the oldest, counted) until
// one joins. A group's *scope* (which topics are its work) is set by the caller; a
// batch outside it is dropped (counted) rather than given to a member that cannot
// handle it. A member that makes no progress gets its batches again after a timeout
// that doubles per attempt; a draining one, after two attempts, loses them to the
// others.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "lib/reliability/receive_window.hpp"
#include "lib/wire/common.hpp"

namespace meshbus::reliability {

struct group_config {
  std::uint64_t window = 1u << 16;  ///< unacknowledged events per member
  std::size_t max_backlog = 1u << 16;  ///< batches waiting for a member
  clock::duration redelivery_timeout = std::chrono::milliseconds(1000);
  clock::duration redelivery_max = std::chrono::milliseconds(30000);
  /// Redeliveries a draining member gets before its work goes to the others.
  unsigned draining_attempts = 2;
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
  /// Which topics are a group's work.
  using scope_fn = std::function<bool(std::string_view topic)>;

  explicit group_assigner(group_config cfg) : cfg_(cfg) {}

  /// `member` takes new work of `group` from now on (a draining member becomes active
  /// again). Waiting work goes to the group's members at once.
  void join(const std::string& group, const wire::node_id_bytes& member, clock::time_point now, std::vector<send>& out) {
    auto& g = groups_[group];
    auto [it, added] = g.members.try_emplace(member);
    if (added) {
      it->second.last_progress = now;
      if (auto r = g.retired.find(member); r != g.retired.end()) {
        it->second.next_seq = r->second;  // its numbering goes on: the member's window expects that
        g.retired.erase(r);
      }
    }
    it->second.draining = false;
    if (it->second.absent) {  // back: what it held is its own again, asked for or redelivered
      set_absent(it->second, false);
      it->second.last_progress = now;
      it->second.attempts = 0;
    }
    while (!g.backlog.empty()) {
      auto b = std::move(g.backlog.front());
      g.backlog.pop_front();
      place(group, g, std::move(b), now, out);
    }
  }

  /// `member` was declared gone but may come back with its window (an absent peer):
  /// it takes no new work, and what it holds stays its own, neither redelivered nor
  /// handed on (and holding no window up), until it joins again (then it goes on, so
  /// no other member handles that work too) or leaves (then it goes to the others).
  void suspend(const wire::node_id_bytes& member) {
    for (auto& [name, g] : groups_) {
      auto it = g.members.find(member);
      if (it == g.members.end()) continue;
      if (it->second.unacked.empty()) {
        forget_member(g, it);
        continue;
      }
      it->second.draining = true;
      set_absent(it->second, true);
    }
  }

  /// `member` takes no new work of `group`. What it holds stays with it until it
  /// acknowledges it, or asks for it again (`nack`), which hands it to the others.
  void retire(const std::string& group, const wire::node_id_bytes& member) {
    auto g = groups_.find(group);
    if (g == groups_.end()) return;
    auto it = g->second.members.find(member);
    if (it == g->second.members.end()) return;
    if (it->second.unacked.empty()) {
      forget_member(g->second, it);
    } else {
      it->second.draining = true;
    }
  }

  /// `member` is gone from `group` (or from every group, with an empty name): its
  /// unacknowledged work goes to the others now, and its numbering is forgotten, or,
  /// with `keep_numbering` (it may come back with the window it has: an absent
  /// peer), goes on where it was when it joins again; what it held then is no longer
  /// its own (a NACK for it is answered with LOSS). Returns how many batches moved.
  std::size_t leave(const std::string& group, const wire::node_id_bytes& member, clock::time_point now,
                    std::vector<send>& out, bool keep_numbering = false) {
    std::size_t moved = 0;
    for (auto& [name, g] : groups_) {
      if (!group.empty() && name != group) continue;
      if (!keep_numbering) g.retired.erase(member);
      auto it = g.members.find(member);
      if (it == g.members.end()) continue;
      auto work = take_all(it->second);
      if (keep_numbering) g.retired[member] = it->second.next_seq;
      g.members.erase(it);
      for (auto& a : work) {
        place(name, g, std::move(a.b), now, out);
        ++moved;
      }
    }
    reassigned_ += moved;
    return moved;
  }

  /// Sets which topics are `group`'s work: waiting batches, and those of active
  /// members, that are outside it are dropped (counted). Draining members keep theirs:
  /// they subscribed what the group had when they got them.
  void set_scope(const std::string& group, scope_fn accepts) {
    auto& g = groups_[group];
    g.accepts = std::move(accepts);
    if (!g.accepts) return;
    const auto before = g.backlog.size();
    g.backlog.erase(std::remove_if(g.backlog.begin(), g.backlog.end(),
                                   [&](const batch& b) { return !g.accepts(b.topic); }),
                    g.backlog.end());
    out_of_scope_ += before - g.backlog.size();
    for (auto& [id, m] : g.members) {
      if (m.draining) continue;
      for (auto a = m.unacked.begin(); a != m.unacked.end();) {
        if (g.accepts(a->b.topic)) {
          ++a;
          continue;
        }
        adjust(m, -static_cast<std::int64_t>(a->b.count));
        a = m.unacked.erase(a);
        ++out_of_scope_;
      }
    }
  }

  /// True when `group` has an active member.
  bool has_members(const std::string& group) const {
    auto it = groups_.find(group);
    if (it == groups_.end()) return false;
    return std::any_of(it->second.members.begin(), it->second.members.end(),
                       [](const auto& m) { return !m.second.draining; });
  }
  bool is_active(const std::string& group, const wire::node_id_bytes& member) const {
    auto it = groups_.find(group);
    if (it == groups_.end()) return false;
    auto m = it->second.members.find(member);
    return m != it->second.members.end() && !m->second.draining;
  }
  bool is_draining(const std::string& group, const wire::node_id_bytes& member) const {
    auto it = groups_.find(group);
    if (it == groups_.end()) return false;
    auto m = it->second.members.find(member);
    return m != it->second.members.end() && m->second.draining;
  }

  /// A batch of `count` events on `topic` for `group`: to a member now, or into the backlog.
  void assign(const std::string& group, std::string_view topic, std::uint32_t count, Payload&& payload,
              clock::time_point now, std::vector<send>& out) {
    place(group, groups_[group], batch{count, std::string(topic), std::move(payload)}, now, out);
  }

  /// Cumulative: `member` finished every assignment of `group` up to `seq`. False
  /// when the member never served the group or `seq` was never assigned to it (an
  /// ack from a member that no longer holds anything is accepted and changes nothing).
  bool ack(const wire::node_id_bytes& member, const std::string& group, std::uint64_t seq, clock::time_point now) {
    auto g = groups_.find(group);
    if (g == groups_.end()) return false;
    auto it = g->second.members.find(member);
    if (it == g->second.members.end()) {
      auto r = g->second.retired.find(member);
      return r != g->second.retired.end() && seq < r->second;
    }
    if (seq >= it->second.next_seq) return false;
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
    if (m.draining && m.unacked.empty()) forget_member(g->second, it);
    return true;
  }

  /// `member` asks for its assignments [from, to] of `group` again. An active member
  /// gets those it still holds again; a draining member's go to the others. The
  /// numbers in the range that the member does not hold (any more) are added to
  /// `gone`, so that it stops waiting for them. False when the member never served the
  /// group or the range goes beyond what was assigned to it.
  bool nack(const wire::node_id_bytes& member, const std::string& group, std::uint64_t from, std::uint64_t to,
            clock::time_point now, std::vector<send>& out, std::vector<seq_range>& gone) {
    auto g = groups_.find(group);
    if (g == groups_.end() || from == 0 || from > to) return false;
    auto it = g->second.members.find(member);
    std::uint64_t next = 0;
    if (it != g->second.members.end()) {
      next = it->second.next_seq;
    } else if (auto r = g->second.retired.find(member); r != g->second.retired.end()) {
      next = r->second;
    } else {
      return false;
    }
    const bool beyond = to >= next;
    to = std::min(to, next - 1);
    if (from > to) return !beyond;
    if (it == g->second.members.end()) {
      gone.push_back({from, to});
      return !beyond;
    }
    auto& m = it->second;
    if (m.absent) return !beyond;  // not back yet: it asks again once it is
    if (!m.draining) {
      std::uint64_t cursor = from;
      for (const auto& a : m.unacked) {
        if (a.seq < from) continue;
        if (a.seq > to) break;
        if (a.seq > cursor) gone.push_back({cursor, a.seq - 1});
        cursor = a.seq + 1;
        out.push_back({member, group, a.seq, &a.b.payload});
      }
      if (cursor <= to) gone.push_back({cursor, to});
      return !beyond;
    }
    // Draining: hand what it holds in the range to the others.
    std::vector<batch> moved;
    for (auto a = m.unacked.begin(); a != m.unacked.end();) {
      if (a->seq < from || a->seq > to) {
        ++a;
        continue;
      }
      adjust(m, -static_cast<std::int64_t>(a->b.count));
      moved.push_back(std::move(a->b));
      a = m.unacked.erase(a);
    }
    gone.push_back({from, to});
    if (m.unacked.empty()) forget_member(g->second, it);
    for (auto& b : moved) place(group, g->second, std::move(b), now, out);
    reassigned_ += moved.size();
    return !beyond;
  }

  /// Members without progress for their timeout get their unacknowledged work again;
  /// draining members that already had `draining_attempts` lose it to the others.
  void due(clock::time_point now, std::vector<send>& out) {
    for (auto& [name, g] : groups_) {
      std::vector<batch> moved;
      for (auto it = g.members.begin(); it != g.members.end();) {
        auto& m = it->second;
        if (m.absent || m.unacked.empty() || now - m.last_progress < timeout_after(m.attempts)) {
          ++it;
          continue;
        }
        if (m.draining && m.attempts >= cfg_.draining_attempts) {
          for (auto& a : take_all(m)) moved.push_back(std::move(a.b));
          it = forget_member(g, it);
          continue;
        }
        ++m.attempts;
        m.last_progress = now;
        ++redelivered_;
        for (const auto& a : m.unacked) out.push_back({it->first, name, a.seq, &a.b.payload});
        ++it;
      }
      reassigned_ += moved.size();
      for (auto& b : moved) place(name, g, std::move(b), now, out);
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
  /// Batches dropped because their topic was no longer the group's work.
  std::uint64_t out_of_scope() const noexcept { return out_of_scope_; }
  /// Members holding unacknowledged work: id, events, suspended.
  std::map<wire::node_id_bytes, std::pair<std::uint64_t, bool>> holding() const {
    std::map<wire::node_id_bytes, std::pair<std::uint64_t, bool>> out;
    for (const auto& [name, g] : groups_) {
      for (const auto& [id, m] : g.members) {
        if (m.unacked_events == 0) continue;
        auto& [events, absent] = out[id];
        events += m.unacked_events;
        absent = absent || m.absent;
      }
    }
    return out;
  }
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
    std::string topic;
    Payload payload;
  };
  struct assignment {
    std::uint64_t seq = 0;
    batch b;
  };
  struct member_state {
    std::deque<assignment> unacked;  ///< in sequence order
    std::uint64_t next_seq = 1;
    std::uint64_t unacked_events = 0;
    clock::time_point last_progress{};
    unsigned attempts = 0;
    bool draining = false;
    bool absent = false;  ///< suspended: may come back with its window (see suspend)
  };
  struct group_state {
    std::map<wire::node_id_bytes, member_state> members;
    /// Members that hold nothing and take nothing: where their numbering goes on.
    std::map<wire::node_id_bytes, std::uint64_t> retired;
    std::deque<batch> backlog;
    scope_fn accepts;
    std::size_t turn = 0;
  };
  using member_iterator = typename std::map<wire::node_id_bytes, member_state>::iterator;

  std::deque<assignment> take_all(member_state& m) {
    auto work = std::move(m.unacked);
    m.unacked.clear();
    adjust(m, -static_cast<std::int64_t>(m.unacked_events));
    return work;
  }

  member_iterator forget_member(group_state& g, member_iterator it) {
    g.retired[it->first] = it->second.next_seq;
    return g.members.erase(it);
  }

  // Whether `m` holds the group's window up: present, with `window` or more unacknowledged.
  bool over(const member_state& m) const noexcept { return !m.absent && m.unacked_events >= cfg_.window; }
  void count_over(bool was_over, bool is_over) noexcept {
    if (is_over && !was_over) ++over_window_;
    if (!is_over && was_over) --over_window_;
  }

  void adjust(member_state& m, std::int64_t delta) {
    const bool was_over = over(m);
    if (delta >= 0) {
      m.unacked_events += static_cast<std::uint64_t>(delta);
      unacked_events_ += static_cast<std::uint64_t>(delta);
    } else {
      const auto d = static_cast<std::uint64_t>(-delta);
      m.unacked_events -= std::min(m.unacked_events, d);
      unacked_events_ -= std::min(unacked_events_, d);
    }
    count_over(was_over, over(m));
  }

  void set_absent(member_state& m, bool absent) {
    const bool was_over = over(m);
    m.absent = absent;
    count_over(was_over, over(m));
  }

  void place(const std::string& name, group_state& g, batch&& b, clock::time_point now, std::vector<send>& out) {
    if (g.accepts && !g.accepts(b.topic)) {
      ++out_of_scope_;
      return;
    }
    // The least loaded active member; the scan starts one further each time, so
    // equals take turns.
    auto pick = g.members.end();
    const std::size_t n = g.members.size();
    if (n != 0) {
      const std::size_t start = g.turn++ % n;
      auto it = std::next(g.members.begin(), static_cast<std::ptrdiff_t>(start));
      for (std::size_t k = 0; k < n; ++k, ++it) {
        if (it == g.members.end()) it = g.members.begin();
        if (it->second.draining) continue;
        if (pick == g.members.end() || it->second.unacked_events < pick->second.unacked_events) pick = it;
      }
    }
    if (pick == g.members.end()) {
      if (g.backlog.size() >= cfg_.max_backlog) {
        g.backlog.pop_front();
        ++backlog_dropped_;
      }
      g.backlog.push_back(std::move(b));
      return;
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
  std::uint64_t out_of_scope_ = 0;
};

}  // namespace meshbus::reliability
