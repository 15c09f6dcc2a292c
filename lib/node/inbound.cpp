// Subscriber side of reliability; see inbound.hpp. Invariant: a (stream,
// subscription) window exists only while its subscription matches the stream's topic;
// every delivery it produces goes to that subscription alone.
#include "lib/node/inbound.hpp"

#include <algorithm>

#include "lib/node/outbound.hpp"  // group_stream_prefix

namespace meshbus::detail {
namespace {

std::size_t hash_stream(const wire::node_id_bytes& publisher, std::string_view topic, std::uint64_t sub) {
  std::size_t h = std::hash<std::string_view>{}(topic);
  for (const auto b : publisher) h = h * 131 + b;
  return h ^ (sub * 0x9e3779b97f4a7c15ULL);
}

NodeId to_node_id(const wire::node_id_bytes& b) {
  NodeId id;
  id.bytes = b;
  return id;
}

}  // namespace

void inbound_streams::count(const reliability::receive_counters& before,
                            const reliability::receive_counters& after) {
  bump(counters_.duplicates_dropped, after.duplicates - before.duplicates);
  bump(counters_.gaps, after.gaps - before.gaps);
  bump(counters_.reorder_overflow, after.reorder_overflow - before.reorder_overflow);
  bump(counters_.rejected_sequences, after.rejected - before.rejected);
}

inbound_streams::publisher_state* inbound_streams::publisher_for(const wire::node_id_bytes& id,
                                                                 std::uint64_t epoch, clock::time_point now) {
  auto& p = publishers_[id];
  if (p.epoch == epoch) return &p;
  if (p.epoch != 0 && epoch < p.epoch) {
    bump(counters_.rejected_sequences);  // an older epoch of a publisher that restarted
    return nullptr;
  }
  if (p.epoch != 0) on_publisher_gone(id, now);  // restarted without durable state
  auto& fresh = publishers_[id];
  fresh.epoch = epoch;
  return &fresh;
}

std::uint64_t inbound_streams::epoch_of(const wire::node_id_bytes& publisher) const {
  auto it = publishers_.find(publisher);
  return it == publishers_.end() ? 0 : it->second.epoch;
}

std::uint64_t inbound_streams::start_for(const publisher_state& p, const subscription_entry& sub,
                                         std::string_view topic) const {
  switch (sub.options.start.kind) {
    case StartFrom::Kind::earliest: return 1;
    case StartFrom::Kind::sequence: return std::max<std::uint64_t>(1, sub.options.start.sequence);
    case StartFrom::Kind::now: break;
  }
  // "now": just after the publisher's position when our subscription reached it. A
  // topic it had not published yet starts at 1. Without that READY yet: wherever the
  // first batch is.
  if (!p.ready || p.ready_generation < sub.generation.load(std::memory_order_acquire)) return 0;
  const auto it = p.positions.find(topic);
  return it == p.positions.end() ? 1 : it->second + 1;
}

void inbound_streams::sync_subscriptions(publisher_state& p, stream& s) {
  if (s.topic.rfind(group_stream_prefix, 0) == 0) return;  // group streams: one fixed subscription
  const auto generation = subs_.generation();
  if (s.match_generation == generation) return;
  s.match_generation = generation;
  const auto matches = subs_.match(s.topic);
  std::vector<sub_stream> next;
  for (const auto& entry : matches ? *matches : match_list{}) {
    auto old = std::find_if(s.subs.begin(), s.subs.end(), [&](const sub_stream& ss) { return ss.sub == entry; });
    if (old != s.subs.end()) {
      next.push_back(std::move(*old));
      continue;
    }
    sub_stream ss{entry, window(entry->mode(), cfg_.window, start_for(p, *entry, s.topic)), nullptr,
                  std::make_shared<const match_list>(match_list{entry}), next_stream_id_++};
    if (entry->options.delivery == Delivery::acknowledged) {
      ss.processed = std::make_shared<std::atomic<std::uint64_t>>(0);
    }
    next.push_back(std::move(ss));
  }
  s.subs = std::move(next);
}

inbound_streams::stream* inbound_streams::stream_for(publisher_state& p, const wire::node_id_bytes&,
                                                     std::string_view topic, bool create) {
  auto it = p.streams.find(topic);
  if (it == p.streams.end()) {
    if (!create || !subs_.match(topic)) return nullptr;
    it = p.streams.emplace(std::string(topic), stream{}).first;
    it->second.topic = std::string(topic);
  }
  sync_subscriptions(p, it->second);
  return &it->second;
}

void inbound_streams::apply(const wire::node_id_bytes& publisher, std::uint64_t epoch, stream& s,
                            sub_stream& ss, LossNotice::Reason reason) {
  const auto hash = hash_stream(publisher, s.topic, ss.id);
  // Loss notices and deliveries go out interleaved, in sequence order.
  std::size_t next_loss = 0;
  auto notify_losses_before = [&](std::size_t delivery_index) {
    for (; next_loss < actions_.lost.size() && actions_.lost_at[next_loss] <= delivery_index; ++next_loss) {
      const auto& r = actions_.lost[next_loss];
      LossNotice n;
      n.publisher = to_node_id(publisher);
      n.epoch = epoch;
      n.topic = s.topic;
      n.from = r.from;
      n.to = r.to;
      n.reason = ss.w.mode() == reliability::delivery_mode::best_effort ? LossNotice::Reason::gap : reason;
      n.pattern = ss.sub->pattern.text();
      bump(counters_.events_lost, r.to - r.from + 1);
      bump(counters_.loss_notices);
      sink_.lost(hash, n);
    }
  };
  for (std::size_t i = 0; i < actions_.deliver.size(); ++i) {
    notify_losses_before(i);
    auto& d = actions_.deliver[i];
    delivery out;
    out.frame = std::move(d.payload.frame);
    out.subscriptions = ss.only_this;
    out.publisher = to_node_id(publisher);
    out.epoch = epoch;
    out.timestamp_ns = d.payload.timestamp_ns;
    out.topic_size = d.payload.topic_size;
    out.events_offset = d.payload.events_offset;
    out.stream_id = ss.id;
    out.processed = ss.processed;
    if (d.payload.event_count != 0) {
      // Group work: the whole batch, acknowledged as one assignment once handled.
      out.first_seq = d.payload.event_first_seq;
      out.count = d.payload.event_count;
      out.ack_unit = d.first_seq;
    } else {
      out.first_seq = d.first_seq;
      out.count = d.count;
      out.skip = d.skip;
    }
    sink_.deliver(hash, std::move(out));
  }
  notify_losses_before(actions_.deliver.size());
  if (!actions_.nack.empty()) {
    wire::nack_msg m;
    m.epoch = epoch;
    m.topic = s.topic;
    for (const auto& r : actions_.nack) m.ranges.emplace_back(r.from, r.to);
    bump(counters_.nacks_sent);
    sink_.send_nack(publisher, m);
  }
  actions_.clear();
}

void inbound_streams::on_batch(zmq::message_t&& frame, const wire::batch_header& h, std::string_view topic,
                               bool repair, clock::time_point now) {
  auto* p = publisher_for(h.publisher, h.epoch, now);
  if (p == nullptr) return;
  auto* s = stream_for(*p, h.publisher, topic, true);
  if (s == nullptr || s->subs.empty()) {
    bump(counters_.events_unmatched, h.count);
    return;
  }
  if (repair) bump(counters_.repairs_received);
  const std::size_t bytes = frame.size();
  for (std::size_t i = 0; i < s->subs.size(); ++i) {
    auto& ss = s->subs[i];
    held_frame held{zmq::message_t(), h.timestamp_ns, h.events_offset, static_cast<std::uint32_t>(topic.size()), 0, 0};
    if (i + 1 == s->subs.size()) {
      held.frame = std::move(frame);
    } else {
      held.frame.copy(frame);  // shares the buffer
    }
    const auto before = ss.w.counters();
    ss.w.on_batch(h.first_seq, h.count, bytes, std::move(held), now, actions_);
    count(before, ss.w.counters());
    apply(h.publisher, h.epoch, *s, ss, LossNotice::Reason::not_in_history);
  }
  if (s->first_unacked == clock::time_point{}) s->first_unacked = now;
}

inbound_streams::stream* inbound_streams::group_stream_for(publisher_state& p, const std::string& group) {
  const auto key = std::string(group_stream_prefix) + group;
  auto it = p.streams.find(key);
  if (it != p.streams.end()) {
    auto& s = it->second;
    if (!s.subs.empty() && s.subs.front().sub->active.load(std::memory_order_acquire)) return &s;
    p.streams.erase(it);  // the group subscription went away (and may have come back)
  }
  auto sub = subs_.group(group);
  if (!sub) return nullptr;
  stream s;
  s.topic = key;
  // Assignments are numbered from 1 per member: the window starts there.
  s.subs.push_back(sub_stream{sub, window(reliability::delivery_mode::acknowledged, cfg_.window, 1),
                              std::make_shared<std::atomic<std::uint64_t>>(0),
                              std::make_shared<const match_list>(match_list{sub}), next_stream_id_++});
  return &p.streams.emplace(key, std::move(s)).first->second;
}

void inbound_streams::on_assignment(const wire::node_id_bytes& publisher, std::uint64_t epoch,
                                    const std::string& group, std::uint64_t seq, zmq::message_t&& frame,
                                    const wire::batch_header& h, std::string_view topic, clock::time_point now) {
  if (refuse_group_work_) {
    bump(counters_.events_unmatched, h.count);
    return;
  }
  auto* p = publisher_for(publisher, epoch, now);
  if (p == nullptr) return;
  auto* s = group_stream_for(*p, group);
  if (s == nullptr) {  // not (or no longer) a member: the publisher hands it to another
    bump(counters_.events_unmatched, h.count);
    return;
  }
  auto& ss = s->subs.front();
  const std::size_t bytes = frame.size();
  held_frame held{std::move(frame), h.timestamp_ns, h.events_offset, static_cast<std::uint32_t>(topic.size()),
                  h.first_seq, h.count};
  const auto before = ss.w.counters();
  ss.w.on_batch(seq, 1, bytes, std::move(held), now, actions_);
  count(before, ss.w.counters());
  apply(publisher, epoch, *s, ss, LossNotice::Reason::not_in_history);
}

void inbound_streams::on_heartbeat(const wire::heartbeat& hb, std::string_view topic, clock::time_point now) {
  auto* p = publisher_for(hb.publisher, hb.epoch, now);
  if (p == nullptr) return;
  auto* s = stream_for(*p, hb.publisher, topic, true);
  if (s == nullptr) return;
  for (auto& ss : s->subs) {
    const auto before = ss.w.counters();
    ss.w.on_last_sequence(hb.last_seq, now, actions_);
    count(before, ss.w.counters());
    apply(hb.publisher, hb.epoch, *s, ss, LossNotice::Reason::not_in_history);
  }
}

void inbound_streams::on_loss(const wire::node_id_bytes& publisher, const wire::loss_msg& m,
                              clock::time_point now) {
  auto it = publishers_.find(publisher);
  if (it == publishers_.end() || it->second.epoch != m.epoch) {
    bump(counters_.rejected_sequences);
    return;
  }
  auto* s = stream_for(it->second, publisher, m.topic, false);
  if (s == nullptr) return;
  for (auto& ss : s->subs) {
    const auto before = ss.w.counters();
    // "earliest" means the oldest still held: what went before it is not a loss.
    const bool earliest = ss.sub->options.start.kind == StartFrom::Kind::earliest;
    if (earliest && ss.w.delivered_through() == 0 && m.from <= ss.w.next_expected()) {
      ss.w.begin_at(m.to + 1, now, actions_);
    } else {
      ss.w.on_loss({m.from, m.to}, now, actions_);
    }
    count(before, ss.w.counters());
    apply(publisher, m.epoch, *s, ss, LossNotice::Reason::not_in_history);
  }
}

void inbound_streams::on_ready(const wire::node_id_bytes& publisher, std::uint64_t epoch,
                               const wire::ready_msg& m, clock::time_point now) {
  auto* p = publisher_for(publisher, epoch, now);
  if (p == nullptr || (p->ready && m.generation < p->ready_generation)) return;
  p->ready = true;
  p->ready_generation = m.generation;
  p->positions.clear();
  for (const auto& [topic, seq] : m.positions) p->positions[topic] = seq;
  // Streams that already exist: let every window see the position (late joiners
  // that start from the beginning or a sequence ask for what they want now).
  for (const auto& [topic, seq] : m.positions) {
    if (seq == 0) continue;
    auto* s = stream_for(*p, publisher, topic, true);
    if (s == nullptr) continue;
    for (auto& ss : s->subs) {
      if (!ss.w.started()) continue;
      const auto before = ss.w.counters();
      ss.w.on_last_sequence(seq, now, actions_);
      count(before, ss.w.counters());
      apply(publisher, epoch, *s, ss, LossNotice::Reason::not_in_history);
    }
  }
}

void inbound_streams::on_publisher_gone(const wire::node_id_bytes& publisher, clock::time_point now) {
  auto it = publishers_.find(publisher);
  if (it == publishers_.end()) return;
  for (auto& [topic, s] : it->second.streams) {
    for (auto& ss : s.subs) {
      const auto before = ss.w.counters();
      ss.w.abandon(now, actions_);
      count(before, ss.w.counters());
      apply(publisher, it->second.epoch, s, ss, LossNotice::Reason::publisher_gone);
    }
  }
  publishers_.erase(it);
}

std::optional<std::uint64_t> inbound_streams::ack_value(const stream& s) const {
  std::optional<std::uint64_t> value;
  for (const auto& ss : s.subs) {
    if (ss.w.mode() == reliability::delivery_mode::best_effort || !ss.w.started()) continue;
    const auto v = ss.processed ? std::min(ss.processed->load(std::memory_order_acquire), ss.w.delivered_through())
                                : ss.w.delivered_through();
    value = value ? std::min(*value, v) : v;
  }
  return value;
}

void inbound_streams::send_acks(clock::time_point now, bool force) {
  const auto& cfg = cfg_.window;
  for (auto& [publisher, p] : publishers_) {
    wire::ack_msg m;
    m.epoch = p.epoch;
    for (auto& [topic, s] : p.streams) {
      const auto value = ack_value(s);
      if (!value || *value == 0) continue;
      bool due = false;
      if (*value > s.acked) {
        if (s.first_unacked == clock::time_point{}) s.first_unacked = now;
        due = force || *value - s.acked >= cfg.ack_every || now - s.first_unacked >= cfg.ack_interval;
      } else {
        // Unchanged: repeat it now and then, in case the last one was lost.
        due = now - s.last_ack_sent >= cfg_.ack_refresh && now - s.last_ack_sent < 20 * cfg_.ack_refresh;
      }
      if (!due) continue;
      m.acks.emplace_back(topic, *value);
      s.acked = *value;
      s.first_unacked = clock::time_point{};
      s.last_ack_sent = now;
    }
    if (m.acks.empty()) continue;
    bump(counters_.acks_sent);
    sink_.send_ack(publisher, m);
  }
}

void inbound_streams::tick(clock::time_point now) {
  for (auto& [publisher, p] : publishers_) {
    for (auto& [topic, s] : p.streams) {
      sync_subscriptions(p, s);
      for (auto& ss : s.subs) {
        if (ss.w.nack_due() > now) continue;
        const auto before = ss.w.counters();
        ss.w.tick(now, actions_);
        count(before, ss.w.counters());
        apply(publisher, p.epoch, s, ss, LossNotice::Reason::not_in_history);
      }
    }
  }
  send_acks(now);
}

clock::time_point inbound_streams::next_due() const {
  auto next = clock::time_point::max();
  for (const auto& [publisher, p] : publishers_) {
    for (const auto& [topic, s] : p.streams) {
      for (const auto& ss : s.subs) next = std::min(next, ss.w.nack_due());
    }
  }
  return next;
}

}  // namespace meshbus::detail
