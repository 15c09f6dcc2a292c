// Subscriber side of reliability; see subscriber_streams.hpp. Invariant: a (stream,
// subscription) window exists only while its subscription matches the stream's
// topic, and every delivery it produces goes to that subscription's lane alone.
#include "lib/reliability/subscriber_streams.hpp"

#include <algorithm>

namespace meshbus::reliability {

void subscriber_outputs::nack(const wire::node_id_bytes& publisher, std::uint64_t epoch,
                              const std::string& topic, const std::vector<seq_range>& ranges) {
  if (ranges.empty()) return;
  wire::nack_msg m;
  m.epoch = epoch;
  m.topic = topic;
  for (const auto& r : ranges) m.ranges.emplace_back(r.from, r.to);
  bump(counters_.nacks_sent);
  sink_.send_nack(publisher, m);
}

void subscriber_outputs::lost(std::size_t key, const loss_report& r) {
  bump(counters_.events_lost, r.range.size());  // an open range: not known
  bump(counters_.loss_notices);
  sink_.lost(key, r);
}

void subscriber_outputs::ack(const wire::node_id_bytes& publisher, const wire::ack_msg& m) {
  bump(counters_.acks_sent);
  sink_.send_ack(publisher, m);
}

void subscriber_outputs::count(const receive_counters& before, const receive_counters& after) {
  bump(counters_.duplicates_dropped, after.duplicates - before.duplicates);
  bump(counters_.gaps, after.gaps - before.gaps);
  bump(counters_.reorder_overflow, after.reorder_overflow - before.reorder_overflow);
  bump(counters_.rejected_sequences, after.rejected - before.rejected);
  bump(counters_.unknown_starts, after.unknown_starts - before.unknown_starts);
}

subscriber_streams::publisher_state* subscriber_streams::publisher_for(const wire::node_id_bytes& id,
                                                                       std::uint64_t epoch,
                                                                       clock::time_point now) {
  auto& p = publishers_[id];
  p.id = id;
  if (p.epoch == epoch) {
    p.absent = false;  // heard from again: its streams resume
    return &p;
  }
  if (p.epoch != 0 && epoch < p.epoch) {
    bump(cx_.out.counters().rejected_sequences);  // an older epoch of a publisher that restarted
    return nullptr;
  }
  if (p.epoch != 0) on_publisher_gone(id, now);  // restarted without durable state
  auto& fresh = publishers_[id];
  fresh.id = id;
  fresh.epoch = epoch;
  return &fresh;
}

std::uint64_t subscriber_streams::epoch_of(const wire::node_id_bytes& publisher) const {
  auto it = publishers_.find(publisher);
  return it == publishers_.end() ? 0 : it->second.epoch;
}

std::vector<subscriber_streams::received_stream> subscriber_streams::received() const {
  std::vector<received_stream> out;
  for (const auto& [id, p] : publishers_) {
    for (const auto& [topic, s] : p.streams) {
      std::uint64_t last = 0;
      for (const auto& ss : s.subs) last = std::max(last, ss.w.delivered_through());
      out.push_back({id, topic, last});
    }
  }
  return out;
}

std::uint64_t subscriber_streams::start_for(const publisher_state& p, const subscription& sub,
                                            std::string_view topic) const {
  // A durable subscription goes on after the position it stored for this stream.
  if (const auto at = sub.resume_at(p.id, p.epoch, topic)) return *at;
  const auto start = sub.start();
  switch (start.from) {
    case start_position::kind::earliest: return 1;
    case start_position::kind::sequence: return std::max<std::uint64_t>(1, start.sequence);
    case start_position::kind::now: break;
  }
  // "now": just after the publisher's position when our subscription reached it. A
  // topic it had not published yet starts at 1. Without that READY yet: not known
  // (0); the window holds what arrives until on_ready() starts it.
  if (!p.ready || p.ready_generation < sub.generation()) return 0;
  const auto it = p.positions.find(topic);
  return it == p.positions.end() ? 1 : it->second + 1;
}

void subscriber_streams::sync_subscriptions(publisher_state& p, stream& s) {
  const auto generation = cx_.subs.generation();
  if (s.match_generation == generation) return;
  s.match_generation = generation;
  std::vector<sub_stream> next;
  for (auto& sub : cx_.subs.match(s.topic)) {
    auto old =
        std::find_if(s.subs.begin(), s.subs.end(), [&](const sub_stream& ss) { return ss.l.sub == sub; });
    if (old != s.subs.end()) {
      next.push_back(std::move(*old));
      continue;
    }
    const auto mode = sub->mode();
    held_window w(mode, cfg_.window, start_for(p, *sub, s.topic));
    lane l{std::move(sub), cx_.next_lane_id++, nullptr};
    if (mode == delivery_mode::acknowledged) l.processed = std::make_shared<std::atomic<std::uint64_t>>(0);
    next.push_back(sub_stream{std::move(l), std::move(w)});
  }
  s.subs = std::move(next);
}

subscriber_streams::stream* subscriber_streams::stream_for(publisher_state& p, std::string_view topic,
                                                           bool create) {
  auto it = p.streams.find(topic);
  if (it == p.streams.end()) {
    if (!create || !cx_.subs.any_match(topic)) return nullptr;
    it = p.streams.emplace(std::string(topic), stream{}).first;
    it->second.topic = std::string(topic);
  }
  sync_subscriptions(p, it->second);
  return &it->second;
}

void subscriber_streams::apply(const wire::node_id_bytes& publisher, std::uint64_t epoch, stream& s,
                               sub_stream& ss, loss_reason reason) {
  auto& actions = cx_.actions;
  const auto key = stream_key(publisher, s.topic, ss.l.id);
  // Loss reports and deliveries go out interleaved, in sequence order.
  std::size_t next_loss = 0;
  auto report_losses_before = [&](std::size_t delivery_index) {
    for (; next_loss < actions.lost.size() && actions.lost_at[next_loss] <= delivery_index; ++next_loss) {
      const auto why = ss.w.mode() == delivery_mode::best_effort ? loss_reason::gap : reason;
      cx_.out.lost(key, loss_report{publisher, epoch, s.topic, actions.lost[next_loss], why,
                                    ss.l.sub->pattern().text()});
    }
  };
  for (std::size_t i = 0; i < actions.deliver.size(); ++i) {
    report_losses_before(i);
    auto& d = actions.deliver[i];
    lane_delivery out;
    out.frame = std::move(d.payload.frame);
    out.publisher = publisher;
    out.epoch = epoch;
    out.timestamp_ns = d.payload.timestamp_ns;
    out.topic_size = d.payload.topic_size;
    out.events_offset = d.payload.events_offset;
    out.first_seq = d.first_seq;
    out.count = d.count;
    out.skip = d.skip;
    cx_.out.deliver(key, ss.l, std::move(out));
  }
  report_losses_before(actions.deliver.size());
  cx_.out.nack(publisher, epoch, s.topic, actions.nack);
  actions.clear();
}

void subscriber_streams::on_batch(transport::frame&& frame, const wire::batch_header& h,
                                  std::string_view topic, bool repair, clock::time_point now) {
  auto* p = publisher_for(h.publisher, h.epoch, now);
  if (p == nullptr) return;
  auto* s = stream_for(*p, topic, true);
  if (s == nullptr || s->subs.empty()) {
    bump(cx_.out.counters().events_unmatched, h.count);
    return;
  }
  if (repair) bump(cx_.out.counters().repairs_received);
  const std::size_t bytes = frame.size();
  for (std::size_t i = 0; i < s->subs.size(); ++i) {
    held_frame held{
        transport::frame(), h.timestamp_ns, h.events_offset, static_cast<std::uint32_t>(topic.size()), 0, 0};
    held.frame = i + 1 == s->subs.size() ? std::move(frame) : frame.share();
    drive(h.publisher, h.epoch, *s, s->subs[i], loss_reason::not_in_history,
          [&](held_window& w, held_window::actions& out) {
            w.on_batch(h.first_seq, h.count, bytes, std::move(held), now, out);
          });
  }
  if (s->ack.first_unacked == clock::time_point{}) s->ack.first_unacked = now;
}

void subscriber_streams::on_assignment(const wire::node_id_bytes& publisher, std::uint64_t epoch,
                                       const std::string& group, std::uint64_t seq, transport::frame&& frame,
                                       const wire::batch_header& h, std::string_view topic,
                                       clock::time_point now) {
  if (refuse_group_work_) {  // leaving: it stays unacknowledged and goes to another member
    bump(cx_.out.counters().events_unmatched, h.count);
    return;
  }
  auto* p = publisher_for(publisher, epoch, now);
  if (p == nullptr) return;
  auto g = p->groups.find(group);
  if (g == p->groups.end()) g = p->groups.try_emplace(group, cx_, publisher, epoch, group).first;
  const std::size_t bytes = frame.size();
  held_frame held{std::move(frame), h.timestamp_ns, h.events_offset, static_cast<std::uint32_t>(topic.size()),
                  h.first_seq,      h.count};
  g->second.on_assignment(seq, std::move(held), bytes, now);
}

void subscriber_streams::on_heartbeat(const wire::heartbeat& hb, std::string_view topic,
                                      clock::time_point now) {
  auto* p = publisher_for(hb.publisher, hb.epoch, now);
  if (p == nullptr) return;
  auto* s = stream_for(*p, topic, true);
  if (s == nullptr) return;
  for (auto& ss : s->subs) {
    drive(hb.publisher, hb.epoch, *s, ss, loss_reason::not_in_history,
          [&](held_window& w, held_window::actions& out) { w.on_last_sequence(hb.last_seq, now, out); });
  }
}

void subscriber_streams::withdraw_group_work(publisher_state& p, const wire::loss_msg& m,
                                             clock::time_point now) {
  auto g = p.groups.find(wire::group_of_stream(m.topic));
  if (g != p.groups.end()) g->second.withdraw({m.from, m.to}, now);
}

void subscriber_streams::on_loss(const wire::node_id_bytes& publisher, const wire::loss_msg& m,
                                 clock::time_point now) {
  auto it = publishers_.find(publisher);
  if (it == publishers_.end() || it->second.epoch != m.epoch) {
    bump(cx_.out.counters().rejected_sequences);
    return;
  }
  if (wire::is_group_stream(m.topic)) {
    withdraw_group_work(it->second, m, now);
    return;
  }
  auto* s = stream_for(it->second, m.topic, false);
  if (s == nullptr) return;
  for (auto& ss : s->subs) {
    // "earliest" means the oldest still held: what went before it is not a loss.
    const bool earliest = ss.l.sub->start().from == start_position::kind::earliest;
    drive(publisher, m.epoch, *s, ss, loss_reason::not_in_history,
          [&](held_window& w, held_window::actions& out) {
            if (earliest && w.delivered_through() == 0 && m.from <= w.next_expected()) {
              w.begin_at(m.to + 1, now, out);
            } else {
              w.on_loss({m.from, m.to}, now, out);
            }
          });
  }
}

void subscriber_streams::on_ready(const wire::node_id_bytes& publisher, std::uint64_t epoch,
                                  const wire::ready_msg& m, clock::time_point now) {
  auto* p = publisher_for(publisher, epoch, now);
  if (p == nullptr || (p->ready && m.generation < p->ready_generation)) return;
  p->ready = true;
  p->ready_generation = m.generation;
  p->positions.clear();
  for (const auto& [topic, seq] : m.positions) p->positions[topic] = seq;
  // Windows that were waiting for this to know where "now" is begin there.
  for (auto& [topic, s] : p->streams) {
    for (auto& ss : s.subs) {
      if (ss.w.started()) continue;
      const auto start = start_for(*p, *ss.l.sub, topic);
      if (start == 0) continue;  // a READY of an older generation: still not known
      // Only best_effort skips holes here.
      drive(publisher, epoch, s, ss, loss_reason::gap,
            [&](held_window& w, held_window::actions& out) { w.start(start, now, out); });
    }
  }
  // Streams that already exist: let every window see the position (late joiners
  // that start from the beginning or a sequence ask for what they want now).
  for (const auto& [topic, seq] : m.positions) {
    if (seq == 0) continue;
    auto* s = stream_for(*p, topic, true);
    if (s == nullptr) continue;
    for (auto& ss : s->subs) {
      if (!ss.w.started()) continue;
      drive(publisher, epoch, *s, ss, loss_reason::not_in_history,
            [&](held_window& w, held_window::actions& out) { w.on_last_sequence(seq, now, out); });
    }
  }
}

void subscriber_streams::on_publisher_absent(const wire::node_id_bytes& publisher) {
  auto it = publishers_.find(publisher);
  if (it == publishers_.end()) return;
  // Group work waits too: the publisher keeps what this node holds for it, and its
  // numbering, until both are back.
  it->second.absent = true;
}

void subscriber_streams::on_publisher_end(const wire::node_id_bytes& publisher, const wire::goodbye_msg& m) {
  auto it = publishers_.find(publisher);
  if (it == publishers_.end() || it->second.epoch != m.epoch) return;
  auto& p = it->second;
  p.ended = true;
  p.end_positions.clear();
  for (const auto& [topic, seq] : m.positions) p.end_positions[topic] = seq;
  p.end_complete = m.positions.size() < wire::max_positions;
}

void subscriber_streams::on_publisher_gone(const wire::node_id_bytes& publisher, clock::time_point now) {
  auto it = publishers_.find(publisher);
  if (it == publishers_.end()) return;
  auto& p = it->second;
  for (auto& [topic, s] : p.streams) {
    // Where the stream ended is known from the publisher's goodbye; otherwise what
    // came after the highest sequence heard of is lost too, however much it was.
    std::optional<std::uint64_t> end;
    if (p.ended) {
      if (auto e = p.end_positions.find(topic); e != p.end_positions.end()) {
        end = e->second;
      } else if (p.end_complete) {
        end = 0;  // it published nothing on it beyond what this node heard of
      }
    }
    for (auto& ss : s.subs) {
      drive(publisher, p.epoch, s, ss, loss_reason::publisher_gone,
            [&](held_window& w, held_window::actions& out) {
              if (end && *end != 0) w.on_last_sequence(*end, now, out);
              out.nack.clear();  // nobody to ask
              w.abandon(now, out, !end.has_value());
            });
    }
  }
  for (auto& [name, g] : it->second.groups) g.abandon(now);
  publishers_.erase(it);
}

std::optional<std::uint64_t> subscriber_streams::ack_value(const stream& s) const {
  std::optional<std::uint64_t> value;
  for (const auto& ss : s.subs) {
    if (ss.w.mode() == delivery_mode::best_effort || !ss.w.started()) continue;
    const auto v = ss.l.processed
                       ? std::min(ss.l.processed->load(std::memory_order_acquire), ss.w.delivered_through())
                       : ss.w.delivered_through();
    value = value ? std::min(*value, v) : v;
  }
  return value;
}

void subscriber_streams::maybe_ack(ack_state& a, std::optional<std::uint64_t> value, const std::string& topic,
                                   clock::time_point now, bool force, wire::ack_msg& m) const {
  if (!value || *value == 0) return;
  const auto& cfg = cfg_.window;
  bool due = false;
  const bool moved = *value > a.acked;
  if (moved) {
    if (a.first_unacked == clock::time_point{}) a.first_unacked = now;
    due = force || *value - a.acked >= cfg.ack_every || now - a.first_unacked >= cfg.ack_interval;
  } else {
    // Unchanged: repeat it now and then, in case the last one was lost, for a while
    // after it last moved (an idle subscriber goes quiet).
    due = now - a.last_ack_sent >= cfg_.ack_refresh && now - a.moved_at < 20 * cfg_.ack_refresh;
  }
  if (!due) return;
  m.acks.emplace_back(topic, *value);
  if (moved) a.moved_at = now;
  a.acked = *value;
  a.first_unacked = clock::time_point{};
  a.last_ack_sent = now;
}

void subscriber_streams::send_acks(clock::time_point now, bool force) {
  for (auto& [publisher, p] : publishers_) {
    if (p.absent) continue;  // acked again when it is back
    wire::ack_msg m;
    m.epoch = p.epoch;
    for (auto& [topic, s] : p.streams) maybe_ack(s.ack, ack_value(s), topic, now, force, m);
    for (auto& [name, g] : p.groups) maybe_ack(g.ack(), g.ack_value(), g.name(), now, force, m);
    if (!m.acks.empty()) cx_.out.ack(publisher, m);
  }
}

void subscriber_streams::tick(clock::time_point now) {
  for (auto& [publisher, p] : publishers_) {
    if (p.absent) continue;  // nobody to ask until it is back
    for (auto& [topic, s] : p.streams) {
      sync_subscriptions(p, s);
      for (auto& ss : s.subs) {
        if (ss.w.nack_due() > now) continue;
        drive(publisher, p.epoch, s, ss, loss_reason::not_in_history,
              [&](held_window& w, held_window::actions& out) { w.tick(now, out); });
      }
    }
    for (auto& [name, g] : p.groups) g.tick(now);
  }
  send_acks(now);
}

clock::time_point subscriber_streams::next_due(clock::time_point now) const {
  auto next = clock::time_point::max();
  for (const auto& [publisher, p] : publishers_) {
    if (p.absent) continue;
    for (const auto& [topic, s] : p.streams) {
      for (const auto& ss : s.subs) next = std::min(next, ss.w.nack_due());
      if (const auto v = ack_value(s); v && *v != 0) next = std::min(next, refresh_due(s.ack, now));
    }
    for (const auto& [name, g] : p.groups) {
      next = std::min(next, g.next_due());
      if (g.ack_value() != 0) next = std::min(next, refresh_due(g.ack(), now));
    }
  }
  return next;
}

// An unchanged ack is repeated every ack_refresh for 20 of them after it last moved
// (maybe_ack).
clock::time_point subscriber_streams::refresh_due(const ack_state& a, clock::time_point now) const {
  if (a.last_ack_sent == clock::time_point{} || now - a.moved_at >= 20 * cfg_.ack_refresh) {
    return clock::time_point::max();
  }
  return a.last_ack_sent + cfg_.ack_refresh;
}

bool subscriber_streams::busy() const {
  const auto generation = cx_.subs.generation();
  for (const auto& [publisher, p] : publishers_) {
    if (p.absent) continue;
    for (const auto& [topic, s] : p.streams) {
      if (s.match_generation != generation) return true;
      const auto value = ack_value(s);
      if (value && *value > s.ack.acked) return true;
    }
    for (const auto& [name, g] : p.groups) {
      if (g.busy()) return true;
    }
  }
  return false;
}

}  // namespace meshbus::reliability
