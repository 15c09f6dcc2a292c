// Subscriber side of reliability; see inbound.hpp. Invariants: a (stream,
// subscription) window exists only while its subscription matches the stream's topic,
// and every delivery it produces goes to that subscription alone. A group stream
// lives as long as its publisher's epoch (the publisher numbers a member's
// assignments without gaps or reuse for that long); every assignment it delivered
// stays open until each subscription it was handed to finished it, or the publisher
// withdrew it.
#include "lib/node/inbound.hpp"

#include <algorithm>
#include <mutex>
#include <set>


namespace meshbus::detail {

// Group work in progress (one per group stream), shared by the I/O thread and the
// handler threads that finish deliveries.
struct group_progress {
  struct open_assignment {
    held_frame batch;  ///< kept to hand it to a subscription again
    std::string topic;
    std::vector<std::string> waiting;  ///< patterns still to handle it (set when claimed)
    unsigned in_flight = 0;            ///< deliveries posted and not done
    bool claimed = false;              ///< `waiting` was taken from the matching subscriptions
  };

  std::mutex mu;
  std::map<std::uint64_t, open_assignment> open;  ///< by assignment number (guarded by mu)
  std::set<std::uint64_t> unsettled;              ///< open, nothing in flight, not finished (guarded by mu)
  /// Every assignment before the first open one is finished (UINT64_MAX: none open).
  std::atomic<std::uint64_t> finished_below{UINT64_MAX};
  /// Set when an assignment became unsettled: the I/O thread looks at it.
  std::atomic<bool> attention{false};

  // Under mu.
  void update_finished() {
    finished_below.store(open.empty() ? UINT64_MAX : open.begin()->first, std::memory_order_release);
  }
  void close(std::map<std::uint64_t, open_assignment>::iterator it) {
    unsettled.erase(it->first);
    open.erase(it);
    update_finished();
  }

  /// Handler thread: the delivery of assignment `seq` to the subscription of
  /// `pattern` ended.
  void done(std::uint64_t seq, const std::string& pattern, delivery_outcome outcome) {
    std::lock_guard lock(mu);
    auto it = open.find(seq);
    if (it == open.end()) return;  // withdrawn by the publisher meanwhile
    auto& a = it->second;
    if (a.in_flight > 0) --a.in_flight;
    if (outcome != delivery_outcome::abandoned) {
      a.waiting.erase(std::remove(a.waiting.begin(), a.waiting.end(), pattern), a.waiting.end());
    }
    if (a.in_flight != 0) return;
    if (a.waiting.empty()) {
      close(it);
    } else {
      unsettled.insert(seq);
      attention.store(true, std::memory_order_release);
    }
  }
};

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
  bump(counters_.unknown_starts, after.unknown_starts - before.unknown_starts);
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
  // topic it had not published yet starts at 1. Without that READY yet: not known
  // (0); the window holds what arrives until on_ready() starts it.
  if (!p.ready || p.ready_generation < sub.generation.load(std::memory_order_acquire)) return 0;
  const auto it = p.positions.find(topic);
  return it == p.positions.end() ? 1 : it->second + 1;
}

void inbound_streams::sync_subscriptions(publisher_state& p, stream& s) {
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
    out.first_seq = d.first_seq;
    out.count = d.count;
    out.skip = d.skip;
    sink_.deliver(hash, std::move(out));
  }
  notify_losses_before(actions_.deliver.size());
  send_nack(publisher, epoch, s.topic, actions_.nack);
  actions_.clear();
}

void inbound_streams::send_nack(const wire::node_id_bytes& publisher, std::uint64_t epoch, const std::string& topic,
                                const std::vector<reliability::seq_range>& ranges) {
  if (ranges.empty()) return;
  wire::nack_msg m;
  m.epoch = epoch;
  m.topic = topic;
  for (const auto& r : ranges) m.ranges.emplace_back(r.from, r.to);
  bump(counters_.nacks_sent);
  sink_.send_nack(publisher, m);
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
  if (s->ack.first_unacked == clock::time_point{}) s->ack.first_unacked = now;
}

inbound_streams::group_stream& inbound_streams::group_stream_for(publisher_state& p,
                                                                 const std::string& group) {
  auto it = p.groups.find(group);
  if (it != p.groups.end()) return it->second;
  // Assignments are numbered from 1 per member: the window starts there. The stream
  // outlives this node's subscriptions of the group: if it joins again, the numbers go on.
  group_stream g{wire::group_stream_name(group),
                 group,
                 window(reliability::delivery_mode::acknowledged, cfg_.window, 1),
                 std::make_shared<group_progress>(),
                 {},
                 UINT64_MAX,
                 {},
                 false,
                 {},
                 cfg_.window.nack_retry};
  return p.groups.emplace(group, std::move(g)).first->second;
}

void inbound_streams::sync_lanes(group_stream& g) {
  const auto generation = subs_.generation();
  if (g.lanes_generation == generation) return;
  g.lanes_generation = generation;
  std::vector<group_lane> next;
  for (auto& entry : subs_.in_group(g.group)) {
    auto old =
        std::find_if(g.lanes.begin(), g.lanes.end(), [&](const group_lane& l) { return l.sub == entry; });
    if (old != g.lanes.end()) {
      next.push_back(std::move(*old));
      continue;
    }
    auto only_this = std::make_shared<const match_list>(match_list{entry});
    next.push_back(group_lane{std::move(entry), std::move(only_this), next_stream_id_++});
  }
  g.lanes = std::move(next);
}

namespace {

// A delivery of assignment `seq` (its batch) to one subscription of the group.
std::pair<std::size_t, delivery> group_delivery(const wire::node_id_bytes& publisher, std::uint64_t epoch,
                                                const std::string& stream_name,
                                                const std::shared_ptr<group_progress>& progress,
                                                std::uint64_t seq, const held_frame& batch,
                                                std::shared_ptr<const match_list> sub, std::uint64_t lane_id,
                                                const std::string& pattern) {
  delivery out;
  out.frame.copy(const_cast<zmq::message_t&>(batch.frame));  // shares the buffer
  out.subscriptions = std::move(sub);
  out.publisher = to_node_id(publisher);
  out.epoch = epoch;
  out.timestamp_ns = batch.timestamp_ns;
  out.topic_size = batch.topic_size;
  out.events_offset = batch.events_offset;
  out.stream_id = lane_id;
  out.first_seq = batch.event_first_seq;
  out.count = batch.event_count;
  out.abandon_if_inactive = true;
  out.on_done = [progress, seq, pattern](delivery_outcome o) { progress->done(seq, pattern, o); };
  return {hash_stream(publisher, stream_name, lane_id), std::move(out)};
}

// Hands `a` (assignment `seq`) to the subscriptions it is waiting for that exist now
// (all matching ones, the first time). Under the progress mutex; the deliveries are
// posted by the caller, after it.
template <class Lanes, class Make>
void hand_out(std::uint64_t seq, group_progress::open_assignment& a, const Lanes& lanes, Make&& make) {
  if (!a.claimed) {
    for (const auto& lane : lanes) {
      if (lane.sub->active.load(std::memory_order_acquire) && lane.sub->pattern.matches(a.topic)) {
        a.waiting.push_back(lane.sub->pattern.text());
      }
    }
    if (a.waiting.empty()) return;  // nothing here takes it (yet)
    a.claimed = true;
  }
  for (const auto& pattern : a.waiting) {
    auto lane = std::find_if(lanes.begin(), lanes.end(), [&](const auto& l) {
      return l.sub->pattern.text() == pattern && l.sub->active.load(std::memory_order_acquire);
    });
    if (lane == lanes.end()) continue;
    ++a.in_flight;
    make(seq, a, *lane, pattern);
  }
}

}  // namespace

void inbound_streams::apply_group(const wire::node_id_bytes& publisher, std::uint64_t epoch, group_stream& g,
                                  LossNotice::Reason reason) {
  // Loss notices only when the publisher is gone: a LOSS on a group stream means the
  // assignments went to another member, which is not a loss.
  if (reason == LossNotice::Reason::publisher_gone) {
    for (const auto& r : actions_.lost) {
      LossNotice n;
      n.publisher = to_node_id(publisher);
      n.epoch = epoch;
      n.topic = g.name;
      n.from = r.from;
      n.to = r.to;
      n.reason = reason;
      bump(counters_.events_lost, r.to - r.from + 1);
      bump(counters_.loss_notices);
      sink_.lost(hash_stream(publisher, g.name, 0), n);
    }
  }
  if (!actions_.deliver.empty()) {
    sync_lanes(g);
    std::vector<std::pair<std::size_t, delivery>> posts;
    auto make = [&](std::uint64_t seq, const group_progress::open_assignment& a, const group_lane& lane,
                    const std::string& pattern) {
      posts.push_back(group_delivery(publisher, epoch, g.name, g.progress, seq, a.batch, lane.only_this,
                                     lane.id, pattern));
    };
    bool unsettled = false;
    {
      std::lock_guard lock(g.progress->mu);
      for (auto& d : actions_.deliver) {
        const auto seq = d.first_seq;
        auto& a = g.progress->open[seq];
        a.batch = std::move(d.payload);
        a.topic.assign(static_cast<const char*>(a.batch.frame.data()), a.batch.topic_size);
        hand_out(seq, a, g.lanes, make);
        if (a.in_flight == 0) {
          g.progress->unsettled.insert(seq);
          unsettled = true;
        }
      }
      g.progress->update_finished();
    }
    if (unsettled) g.progress->attention.store(true, std::memory_order_release);
    for (auto& [hash, d] : posts) sink_.deliver(hash, std::move(d));
  }
  send_nack(publisher, epoch, g.name, actions_.nack);
  actions_.clear();
}

void inbound_streams::settle_group(const wire::node_id_bytes& publisher, std::uint64_t epoch, group_stream& g,
                                   clock::time_point now) {
  const bool look = g.progress->attention.exchange(false, std::memory_order_acq_rel);
  if (!look && !(g.refusing && now >= g.refusal_due)) return;
  sync_lanes(g);
  std::vector<std::pair<std::size_t, delivery>> posts;
  std::vector<reliability::seq_range> refused;
  {
    std::lock_guard lock(g.progress->mu);
    for (auto it = g.progress->unsettled.begin(); it != g.progress->unsettled.end();) {
      const auto seq = *it;
      auto a = g.progress->open.find(seq);
      if (a == g.progress->open.end() || a->second.in_flight != 0) {
        it = g.progress->unsettled.erase(it);
        continue;
      }
      hand_out(seq, a->second, g.lanes,
               [&](std::uint64_t s, const group_progress::open_assignment& oa, const group_lane& lane,
                   const std::string& pattern) {
                 posts.push_back(group_delivery(publisher, epoch, g.name, g.progress, s, oa.batch,
                                                lane.only_this, lane.id, pattern));
               });
      if (a->second.in_flight != 0) {
        it = g.progress->unsettled.erase(it);
        continue;
      }
      if (!refused.empty() && refused.back().to + 1 == seq) {
        refused.back().to = seq;
      } else if (refused.size() < cfg_.window.max_nack_ranges) {
        refused.push_back({seq, seq});
      }
      ++it;
    }
  }
  for (auto& [hash, d] : posts) sink_.deliver(hash, std::move(d));
  if (refused.empty()) {
    g.refusing = false;
    g.refusal_backoff = cfg_.window.nack_retry;
    return;
  }
  if (g.refusing && now < g.refusal_due) return;
  // Nobody here takes these any more: the publisher hands them to another member
  // (and says so with LOSS), or sends them again while it still counts us in.
  g.refusing = true;
  g.refusal_due = now + g.refusal_backoff;
  g.refusal_backoff = std::min(g.refusal_backoff * 2, cfg_.window.nack_retry_max);
  send_nack(publisher, epoch, g.name, refused);
}

void inbound_streams::on_assignment(const wire::node_id_bytes& publisher, std::uint64_t epoch,
                                    const std::string& group, std::uint64_t seq, zmq::message_t&& frame,
                                    const wire::batch_header& h, std::string_view topic, clock::time_point now) {
  if (refuse_group_work_) {  // leaving: it stays unacknowledged and goes to another member
    bump(counters_.events_unmatched, h.count);
    return;
  }
  auto* p = publisher_for(publisher, epoch, now);
  if (p == nullptr) return;
  auto& g = group_stream_for(*p, group);
  const std::size_t bytes = frame.size();
  held_frame held{std::move(frame), h.timestamp_ns, h.events_offset, static_cast<std::uint32_t>(topic.size()),
                  h.first_seq, h.count};
  const auto before = g.w.counters();
  g.w.on_batch(seq, 1, bytes, std::move(held), now, actions_);
  count(before, g.w.counters());
  apply_group(publisher, epoch, g, LossNotice::Reason::not_in_history);
  if (g.progress->attention.load(std::memory_order_acquire)) settle_group(publisher, epoch, g, now);
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
  if (wire::is_group_stream(m.topic)) {
    // Those assignments are not ours any more (the publisher gave them to another
    // member, or never gave them to us): stop waiting for them, and for their handlers.
    auto g = it->second.groups.find(wire::group_of_stream(m.topic));
    if (g == it->second.groups.end()) return;
    auto& gs = g->second;
    {
      std::lock_guard lock(gs.progress->mu);
      auto& open = gs.progress->open;
      for (auto a = open.lower_bound(m.from); a != open.end() && a->first <= m.to;) {
        gs.progress->unsettled.erase(a->first);
        a = open.erase(a);
      }
      gs.progress->update_finished();
    }
    gs.w.on_loss({m.from, m.to}, now, actions_);  // not counted: nothing was lost
    apply_group(publisher, m.epoch, gs, LossNotice::Reason::not_in_history);
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
  // Windows that were waiting for this to know where "now" is begin there.
  for (auto& [topic, s] : p->streams) {
    for (auto& ss : s.subs) {
      if (ss.w.started()) continue;
      const auto start = start_for(*p, *ss.sub, topic);
      if (start == 0) continue;  // a READY of an older generation: still not known
      const auto before = ss.w.counters();
      ss.w.start(start, now, actions_);
      count(before, ss.w.counters());
      apply(publisher, epoch, s, ss, LossNotice::Reason::gap);  // only best_effort skips holes here
    }
  }
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
  for (auto& [name, g] : it->second.groups) {
    const auto before = g.w.counters();
    g.w.abandon(now, actions_);
    count(before, g.w.counters());
    apply_group(publisher, it->second.epoch, g, LossNotice::Reason::publisher_gone);
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

void inbound_streams::maybe_ack(ack_state& a, std::optional<std::uint64_t> value, const std::string& topic,
                                clock::time_point now, bool force, wire::ack_msg& m) {
  if (!value || *value == 0) return;
  const auto& cfg = cfg_.window;
  bool due = false;
  if (*value > a.acked) {
    if (a.first_unacked == clock::time_point{}) a.first_unacked = now;
    due = force || *value - a.acked >= cfg.ack_every || now - a.first_unacked >= cfg.ack_interval;
  } else {
    // Unchanged: repeat it now and then, in case the last one was lost.
    due = now - a.last_ack_sent >= cfg_.ack_refresh && now - a.last_ack_sent < 20 * cfg_.ack_refresh;
  }
  if (!due) return;
  m.acks.emplace_back(topic, *value);
  a.acked = *value;
  a.first_unacked = clock::time_point{};
  a.last_ack_sent = now;
}

void inbound_streams::send_acks(clock::time_point now, bool force) {
  for (auto& [publisher, p] : publishers_) {
    wire::ack_msg m;
    m.epoch = p.epoch;
    for (auto& [topic, s] : p.streams) maybe_ack(s.ack, ack_value(s), topic, now, force, m);
    for (auto& [name, g] : p.groups) {
      // Every assignment before the first unfinished one.
      const auto below = g.progress->finished_below.load(std::memory_order_acquire);
      const auto value = std::min(below == UINT64_MAX ? UINT64_MAX : below - 1, g.w.delivered_through());
      maybe_ack(g.ack, value, g.name, now, force, m);
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
    for (auto& [name, g] : p.groups) {
      if (g.w.nack_due() <= now) {
        const auto before = g.w.counters();
        g.w.tick(now, actions_);
        count(before, g.w.counters());
        apply_group(publisher, p.epoch, g, LossNotice::Reason::not_in_history);
      }
      // A subscription came or went while assignments wait for one: look again now.
      if (g.refusing && g.lanes_generation != subs_.generation()) {
        g.progress->attention.store(true, std::memory_order_release);
      }
      settle_group(publisher, p.epoch, g, now);
    }
  }
  send_acks(now);
}

clock::time_point inbound_streams::next_due() const {
  auto next = clock::time_point::max();
  // An unchanged ack is repeated now and then for a while, in case it was lost.
  auto refresh = [&](const ack_state& a) {
    if (a.last_ack_sent != clock::time_point{}) next = std::min(next, a.last_ack_sent + cfg_.ack_refresh);
  };
  const auto quiet_after = 20 * cfg_.ack_refresh;
  for (const auto& [publisher, p] : publishers_) {
    for (const auto& [topic, s] : p.streams) {
      for (const auto& ss : s.subs) next = std::min(next, ss.w.nack_due());
      if (clock::now() - s.ack.last_ack_sent < quiet_after) refresh(s.ack);
    }
    for (const auto& [name, g] : p.groups) {
      next = std::min(next, g.w.nack_due());
      if (g.refusing) next = std::min(next, g.refusal_due);
      if (clock::now() - g.ack.last_ack_sent < quiet_after) refresh(g.ack);
    }
  }
  return next;
}

bool inbound_streams::busy() const {
  for (const auto& [publisher, p] : publishers_) {
    for (const auto& [topic, s] : p.streams) {
      if (s.match_generation != subs_.generation()) return true;
      const auto value = ack_value(s);
      if (value && *value > s.ack.acked) return true;
    }
    for (const auto& [name, g] : p.groups) {
      if (g.lanes_generation != subs_.generation()) return true;
      if (g.progress->attention.load(std::memory_order_acquire)) return true;
      const auto below = g.progress->finished_below.load(std::memory_order_acquire);
      const auto value = std::min(below == UINT64_MAX ? UINT64_MAX : below - 1, g.w.delivered_through());
      if (value != 0 && value > g.ack.acked) return true;
    }
  }
  return false;
}

}  // namespace meshbus::detail
