// The publisher side of a node; see publisher_side.hpp. Invariants: batches reach
// ZeroMQ in the order they left the outbox; a heartbeat never overtakes queued data;
// "all acknowledged" is lowered before a batch's bytes are released, so flush()
// cannot slip through between the two.
#include "lib/node/publisher_side.hpp"

#include <algorithm>

#include "lib/node/publish_fields.hpp"
#include "lib/reliability/subscriber_sink.hpp"
#include "lib/transport/zmq_frame.hpp"
#include "lib/wire/topic.hpp"

namespace meshbus::detail {
namespace {

// Small frames are copied (one allocation, buffer reused at once); large ones are
// handed to ZeroMQ as they are and their buffer returns to the pool once sent.
constexpr std::size_t zero_copy_threshold = 8192;

struct pooled_frame {
  wire::bytes buffer;
  std::shared_ptr<frame_pool> pool;
};

void release_pooled_frame(void*, void* hint) noexcept {
  auto* f = static_cast<pooled_frame*>(hint);
  f->pool->give_back(std::move(f->buffer));
  delete f;
}

transport::frame to_frame(wire::bytes&& frame, const std::shared_ptr<frame_pool>& pool) {
  if (frame.size() < zero_copy_threshold) {
    transport::frame msg(frame.data(), frame.size());
    pool->give_back(std::move(frame));
    return msg;
  }
  auto* f = new pooled_frame{std::move(frame), pool};
  return transport::to_frame(zmq::message_t(f->buffer.data(), f->buffer.size(), &release_pooled_frame, f));
}

reliability::tracker_config tracker_config_of(const Options& o) {
  reliability::tracker_config c;
  c.window = o.window_events;
  c.redelivery_timeout = o.redelivery_timeout;
  return c;
}

reliability::group_config group_config_of(const Options& o) {
  reliability::group_config c;
  c.window = o.window_events;
  c.redelivery_timeout = o.redelivery_timeout;
  return c;
}

outbox::limits outbox_limits_of(const Options& o) {
  outbox::limits lim;
  lim.max_bytes = o.send_queue_bytes;
  lim.max_batch_bytes = o.max_batch_bytes;
  return lim;
}

}  // namespace

publisher_side::publisher_side(node_context& ctx, transport::transport& transport, control_sender& control,
                               dispatcher& handlers, subscription_registry& subs, own_subscriber& self_route)
    : ctx_(ctx),
      transport_(transport),
      control_(control),
      handlers_(handlers),
      subs_(subs),
      self_route_(self_route),
      outbox_(std::make_unique<outbox>(ctx.self.bytes, ctx.self.epoch, outbox_limits_of(ctx.opts),
                                       [&loop = ctx.loop] { loop.wake(); }, &ctx.counters.events_published)),
      log_(ctx.store != nullptr ? std::make_unique<history_log>(ctx, *ctx.store) : nullptr),
      outbound_(reliability::history_limits{ctx.opts.history_events, ctx.opts.history_bytes},
                tracker_config_of(ctx.opts), group_config_of(ctx.opts), ctx.self.epoch,
                static_cast<outbound_sink&>(*this), ctx.counters) {
  if (!log_) return;
  outbound_.set_backing(log_.get());
  // The log holds this epoch's streams: they go on where they stopped.
  for (const auto& [topic, last] : log_->streams()) {
    outbox_->continue_stream(topic, last + 1);
    outbound_.resume(topic, last);
  }
}

// ---------------------------------------------------------------------------
// API threads

PublishResult publisher_side::publish(std::string_view topic, wire::byte_view payload, const PublishOptions* po,
                                      bool reserved) {
  if (stopping()) {
    throw error(errc::stopped, fmt::format("publish('{}') after stop(): create a new Node to publish again",
                                           topic.substr(0, 64)));
  }
  // Publishers mostly repeat a few topics: remember the last valid one per thread.
  thread_local std::string last_valid_topic;
  if (topic != last_valid_topic) {
    if (auto err = wire::topic_error(topic, reserved); !err.empty()) throw error(errc::invalid_topic, err);
    if (!reserved) last_valid_topic.assign(topic);
  }
  if (payload.size() + topic.size() + 512 > ctx_.opts.max_message_bytes) {
    throw error(errc::message_too_large,
                fmt::format("event of {} bytes on '{}' exceeds Options::max_message_bytes ({}); raise "
                            "it on every node or split the payload",
                            payload.size(), topic, ctx_.opts.max_message_bytes));
  }
  if (store_failed_.load(std::memory_order_acquire)) {
    bump(ctx_.counters.publish_store_failed);
    return PublishResult::store_failed;
  }
  const publish_fields fields(po);
  // Blocking is safe on a handler thread too: the I/O thread never waits for handlers.
  const auto wait =
      ctx_.opts.send_policy == SendPolicy::block ? ctx_.opts.send_timeout : std::chrono::milliseconds(0);
  if (!reserved && !wait_for_window(wait)) {
    bump(ctx_.counters.publish_would_block);
    return PublishResult::would_block;
  }
  // On the thread that drives the loop, nobody else drains the outbox: make room here.
  const bool here = ctx_.loop.drives_loop_here();
  auto result = outbox_->push(topic, payload, fields.get(), here ? std::chrono::milliseconds(0) : wait);
  if (result == outbox::push_result::full && here && wait.count() > 0) {
    const auto deadline = clock::now() + wait;
    while (result == outbox::push_result::full && clock::now() < deadline) {
      ctx_.loop.turn(std::chrono::milliseconds(1));
      result = outbox_->push(topic, payload, fields.get(), std::chrono::milliseconds(0));
    }
  }
  switch (result) {
    case outbox::push_result::ok:
      return PublishResult::ok;
    case outbox::push_result::full:
      bump(ctx_.counters.publish_would_block);
      return PublishResult::would_block;
    case outbox::push_result::closed:
      break;
  }
  throw error(errc::stopped, "publish() after stop(): create a new Node to publish again");
}

// Flow control: while a subscriber's window of unacknowledged events is full,
// publish() waits up to `wait`; false if it stayed full.
bool publisher_side::wait_for_window(std::chrono::milliseconds wait) {
  if (!window_full_.load(std::memory_order_acquire)) return true;
  bump(ctx_.counters.window_waits);
  const auto deadline = clock::now() + wait;
  auto open = [&] { return !window_full_.load(std::memory_order_acquire) || stopping(); };
  if (!ctx_.loop.drives_loop_here()) {
    std::unique_lock lock(flow_mu_);
    flow_cv_.wait_until(lock, deadline, open);
  } else {
    while (!open() && clock::now() < deadline) ctx_.loop.turn(std::chrono::milliseconds(1));
  }
  return open();
}

FlushResult publisher_side::flush(std::chrono::milliseconds timeout) {
  const auto deadline = clock::now() + timeout;
  // Everything handed to ZeroMQ, then acknowledged by every tracked subscriber.
  auto done = [&] { return outbox_->bytes() == 0 && all_acknowledged_.load(std::memory_order_acquire); };
  FlushResult r;
  if (ctx_.loop.drives_loop_here()) {
    while (!done() && clock::now() < deadline) ctx_.loop.turn(std::chrono::milliseconds(1));
    r.flushed = done();
  } else if (outbox_->wait_released(timeout)) {
    std::unique_lock lock(flow_mu_);
    r.flushed = flow_cv_.wait_until(lock, deadline, done);
  }
  std::lock_guard lock(report_mu_);
  if (!r.flushed) r.unacknowledged = lagging_;
  if (!gone_.empty()) {
    r.flushed = false;
    r.unacknowledged.insert(r.unacknowledged.end(), gone_.begin(), gone_.end());
    gone_.clear();
  }
  return r;
}

void publisher_side::abandon_pending() {
  pending_.clear();
  if (!log_) return;
  const auto events = log_->events_in_flight();
  log_->stop();
  if (events == 0) return;
  ctx_.log.warn("node {}: stopped while the durable log refused writes: {} accepted events were never written nor "
                "sent",
                ctx_.self.id.short_string(), events);
}

void publisher_side::wake_waiters() {
  std::lock_guard lock(flow_mu_);
  flow_cv_.notify_all();
}

std::vector<SubscriberLag> publisher_side::lagging(std::size_t max) const {
  constexpr std::size_t max_topics_looked_at = 10000;
  const auto oldest = outbound_.oldest_unacknowledged(max_topics_looked_at);
  const auto now_ns = unix_ns();
  std::vector<SubscriberLag> out;
  for (const auto& l : outbound_.lagging()) {
    SubscriberLag s;
    s.node = to_node_id(l.id);
    if (const auto name = names_.find(l.id); name != names_.end()) s.name = name->second;
    s.events = l.events;
    s.absent = l.absent;
    if (const auto at = oldest.find(l.id); at != oldest.end() && now_ns > at->second) {
      s.lag_ms = (now_ns - at->second) / 1'000'000;
    }
    out.push_back(std::move(s));
  }
  std::sort(out.begin(), out.end(), [](const SubscriberLag& a, const SubscriberLag& b) {
    return a.lag_ms != b.lag_ms ? a.lag_ms > b.lag_ms : a.events > b.events;
  });
  if (out.size() > max) out.resize(max);
  return out;
}

void publisher_side::fill(Stats& s) const {
  s.send_queue_bytes = outbox_->bytes();
  s.unacknowledged_events = unacknowledged_.load(std::memory_order_relaxed);
  s.history_events = history_events_.load(std::memory_order_relaxed);
  s.history_bytes = history_bytes_.load(std::memory_order_relaxed);
}

// ---------------------------------------------------------------------------
// I/O thread: sending

void publisher_side::pump(clock::time_point now) {
  send_pending(now);
  // Flow control: while a subscriber's window is full, published events wait in the
  // send queue (bounded by Options::send_queue_bytes), so what is sent and not yet
  // acknowledged stays within the window.
  if (!pending_.empty() || outbound_.window_full()) return;
  if (log_) {
    write_ahead();
    send_pending(now);
    return;
  }
  drained_.clear();
  outbox_->drain(drained_);
  if (drained_.empty()) {
    send_pending(now);
    return;
  }
  const auto ts = unix_ns();
  for (auto& b : drained_) wire::finish_batch(b.frame, b.marks, b.count, ts);
  to_pending(drained_, ts);
  send_pending(now);
}

void publisher_side::write_ahead() {
  std::uint64_t ts = 0;
  if (log_->take_written(written_, ts)) {
    to_pending(written_, ts);
    written_.clear();
  }
  store_failed_.store(log_->failing(), std::memory_order_release);
  if (!log_->idle()) return;  // one write in flight: new events gather for the next
  if (unsubmitted_.empty()) {
    drained_.clear();
    outbox_->drain(drained_);
    if (drained_.empty()) return;
    ts = unix_ns();
    for (auto& b : drained_) wire::finish_batch(b.frame, b.marks, b.count, ts);
    for (auto& b : drained_) unsubmitted_.push_back(std::move(b));
    unsubmitted_ts_ = ts;
  }
  // At most write_group_bytes per write, so that one group is sent while the next
  // is written, and no event waits behind a huge write.
  constexpr std::size_t write_group_bytes = std::size_t{4} << 20;
  std::vector<outbox_batch> group;
  std::size_t bytes = 0;
  while (!unsubmitted_.empty() && (group.empty() || bytes + unsubmitted_.front().frame.size() <= write_group_bytes)) {
    bytes += unsubmitted_.front().frame.size();
    group.push_back(std::move(unsubmitted_.front()));
    unsubmitted_.pop_front();
  }
  log_->submit(std::move(group), unsubmitted_ts_);
}

void publisher_side::to_pending(std::vector<outbox_batch>& batches, std::uint64_t ts) {
  for (auto& b : batches) {
    const auto frame_size = b.frame.size();
    const auto events_offset = b.marks.events_at;
    pending_send p{to_frame(std::move(b.frame), outbox_->pool()), frame_size, std::move(b.topic), b.first_seq,
                   b.count};
    if (ctx_.opts.local_delivery) deliver_locally(p, events_offset, ts);
    pending_.push_back(std::move(p));
  }
}

// This node's own events, to its own matching subscriptions (no windows: a local
// batch cannot be lost or reordered), one delivery per subscription.
void publisher_side::deliver_locally(const pending_send& p, std::size_t events_offset, std::uint64_t timestamp_ns) {
  const auto subs = subs_.match(p.topic);
  if (!subs) return;
  const auto& self = ctx_.self;
  for (const auto& sub : *subs) {
    delivery d;
    d.frame = p.msg.share();
    d.subscriptions = std::make_shared<const match_list>(match_list{sub});
    d.publisher = self.id;
    d.epoch = self.epoch;
    d.first_seq = p.first_seq;
    d.timestamp_ns = timestamp_ns;
    d.count = p.count;
    d.topic_size = static_cast<std::uint32_t>(p.topic.size());
    d.events_offset = events_offset;
    const auto hash = reliability::stream_hash(self.bytes, p.topic);
    d.stream_id = (hash << 16) ^ sub->id;
    handlers_.post(hash ^ sub->id, std::move(d));
  }
}

void publisher_side::send_pending(clock::time_point now) {
  while (!pending_.empty()) {
    // Flow control: nothing more goes out while a subscriber's window is full.
    if (outbound_.window_full()) return;
    auto& p = pending_.front();
    const auto size = p.msg.size();
    auto kept = p.msg.share();  // for the history
    if (send_stalled(p.msg, now) != transport::send_status::ok) return;
    bump(ctx_.counters.batches_sent);
    bump(ctx_.counters.bytes_sent, size);
    auto& t = topics_[p.topic];
    t.last_seq = p.first_seq + p.count - 1;
    t.last_sent = now;
    t.heartbeat_gap = std::chrono::milliseconds(20);
    t.next_heartbeat = now + t.heartbeat_gap;
    outbound_.sent(p.topic, p.first_seq, p.count, std::move(kept), now);
    // Lower "all acknowledged" before the bytes are released, or flush() could slip through.
    update_flow_state();
    outbox_->release(p.bytes);
    pending_.pop_front();
  }
}

transport::send_status publisher_side::send_stalled(transport::frame& msg, clock::time_point now) {
  auto r = transport_.publish(msg);
  if (r == transport::send_status::ok) {
    stalled_ = false;
    lossy_episode_ = false;
    peer_left_during_stall_ = false;
    return r;
  }
  if (!stalled_) {
    stalled_ = true;
    stall_since_ = now;
    bump(ctx_.counters.send_stalls);  // back-pressure is normal operation, not a fault
    ctx_.log.debug("node {}: a subscriber's queue is full; publishing waits for it", ctx_.self.id.short_string());
  }
  // A subscriber that has taken nothing for a whole peer expiry, or that left
  // meanwhile, is not allowed to hold everyone else up; reliable subscribers get
  // what they missed back by NACK.
  if (lossy_episode_ || peer_left_during_stall_ || now - stall_since_ >= ctx_.opts.peer_expiry) {
    lossy_episode_ = true;
    r = transport_.publish_lossy(msg);
    if (r == transport::send_status::ok) {
      bump(ctx_.counters.sent_past_gone);
      ctx_.faults.report(fault::sent_past_gone,
                         "a subscriber took nothing for a whole peer expiry: data it cannot take is dropped for it "
                         "alone (counted in Stats::sent_past_gone; reliable subscribers ask for it again)");
    }
  }
  return r;
}

// Heartbeats tell subscribers a topic's last sequence, so a lost tail is noticed:
// 20 ms after a topic goes quiet, then at doubling gaps up to the beacon interval,
// for 30 beacon intervals.
void publisher_side::send_heartbeats(clock::time_point now) {
  if (!pending_.empty()) return;  // a heartbeat must not overtake queued data
  const auto recent = ctx_.opts.beacon_interval * 30;
  for (auto& [topic, st] : topics_) {
    if (now < st.next_heartbeat) continue;
    if (now - st.last_sent > recent) {
      st.next_heartbeat = clock::time_point::max();
      continue;
    }
    wire::heartbeat hb;
    hb.publisher = ctx_.self.bytes;
    hb.epoch = ctx_.self.epoch;
    hb.last_seq = st.last_seq;
    hb.timestamp_ns = unix_ns();
    const auto bytes = wire::encode_heartbeat(topic, hb);
    transport::frame msg(bytes.data(), bytes.size());
    if (transport_.publish(msg) != transport::send_status::ok) {
      bump(ctx_.counters.control_send_failures);
      break;
    }
    bump(ctx_.counters.heartbeats_sent);
    st.heartbeat_gap = std::min<clock::duration>(st.heartbeat_gap * 2, ctx_.opts.beacon_interval);
    st.next_heartbeat = now + st.heartbeat_gap;
  }
}

void publisher_side::tick(clock::time_point now) {
  if (log_) log_->tick(now);
  outbound_.tick(now);
  send_heartbeats(now);
  update_flow_state();
}

clock::time_point publisher_side::next_due() const {
  auto next = outbound_.next_due();
  if (log_) next = std::min(next, log_->next_due());
  for (const auto& [topic, st] : topics_) next = std::min(next, st.next_heartbeat);
  return next;
}

bool publisher_side::busy() const {
  return !pending_.empty() || (log_ && !log_->idle()) || !unsubmitted_.empty() || !outbox_->empty() ||
         !outbound_.all_acknowledged();
}

// Who lacks what, for a flush() that times out: taken at most every 50 ms.
void publisher_side::take_lagging(clock::time_point now) {
  if (now - lagging_taken_ < std::chrono::milliseconds(50)) return;
  lagging_taken_ = now;
  std::vector<UnacknowledgedSubscriber> out;
  for (const auto& l : outbound_.lagging()) {
    const auto name = names_.find(l.id);
    out.push_back({to_node_id(l.id), name == names_.end() ? std::string() : name->second, l.events,
                   l.absent ? UnacknowledgedSubscriber::State::absent : UnacknowledgedSubscriber::State::connected});
  }
  std::lock_guard lock(report_mu_);
  lagging_ = std::move(out);
}

// Publishes the flow-control and flush state for API threads.
void publisher_side::update_flow_state() {
  const bool full = outbound_.window_full();
  const bool acked = outbound_.all_acknowledged();
  unacknowledged_.store(outbound_.unacknowledged(), std::memory_order_relaxed);
  history_events_.store(outbound_.history_events(), std::memory_order_relaxed);
  history_bytes_.store(outbound_.history_bytes(), std::memory_order_relaxed);
  if (!acked) take_lagging(clock::now());
  // Both exchanges always run: a short-circuit here once left all_acknowledged_
  // stale when the window filled first, and flush() returned before the acks.
  const bool window_changed = window_full_.exchange(full) != full;
  const bool acked_changed = all_acknowledged_.exchange(acked) != acked;
  if (window_changed || acked_changed) {
    std::lock_guard lock(flow_mu_);  // pairs with the waiters' predicate check
    flow_cv_.notify_all();
  }
}

// ---------------------------------------------------------------------------
// I/O thread: what subscribers say, and what the outbound streams ask for

void publisher_side::on_nack(const wire::node_id_bytes& from, const wire::nack_msg& m, clock::time_point now) {
  outbound_.on_nack(from, m, now);
}

void publisher_side::on_ack(const wire::node_id_bytes& from, const wire::ack_msg& m, clock::time_point now) {
  outbound_.on_ack(from, m, now);
  update_flow_state();
}

void publisher_side::on_late_group_acks(const wire::node_id_bytes& from, const wire::ack_msg& m,
                                        clock::time_point now) {
  wire::ack_msg group_acks{m.epoch, {}};
  for (const auto& a : m.acks) {
    if (wire::is_group_stream(a.first)) group_acks.acks.push_back(a);
  }
  on_ack(from, group_acks, now);
}

void publisher_side::set_subscriber(const wire::node_id_bytes& id, const std::string& name,
                                    const std::vector<wire::pattern_spec>& patterns, bool ready,
                                    clock::time_point now) {
  if (!name.empty()) names_[id] = name;
  outbound_.set_subscriber(id, patterns, ready, now);
  update_flow_state();
}

void publisher_side::forget_subscriber(const wire::node_id_bytes& id, bool keep_group_work, bool report,
                                       clock::time_point now) {
  peer_left();
  const auto unacked = outbound_.forget_subscriber(id, now, keep_group_work);
  std::string name;
  if (auto it = names_.find(id); it != names_.end()) {
    name = std::move(it->second);
    names_.erase(it);
  }
  if (report && unacked != 0) {
    bump(ctx_.counters.subscribers_gone_unacknowledged);
    bump(ctx_.counters.events_never_acknowledged, unacked);
    ctx_.faults.report(fault::subscriber_gone_unacknowledged,
                       fmt::format("subscriber {}{} is gone for good (it restarted, its process ended, or it was not "
                                   "back within peer_resume) and never acknowledged {} events published here",
                                   short_id(id), name.empty() ? "" : " '" + name + "'", unacked));
    std::lock_guard lock(report_mu_);
    if (gone_.size() >= 1000) gone_.erase(gone_.begin());  // never asked for: the counters keep the total
    gone_.push_back({to_node_id(id), std::move(name), unacked, UnacknowledgedSubscriber::State::gone});
  }
  lagging_taken_ = {};
  update_flow_state();
}

void publisher_side::subscriber_absent(const wire::node_id_bytes& id, clock::time_point now) {
  peer_left();
  outbound_.subscriber_absent(id, now);
  lagging_taken_ = {};
  update_flow_state();
}

void publisher_side::release_group_work(const wire::node_id_bytes& id, clock::time_point now) {
  outbound_.release_group_work(id, now);
  update_flow_state();
}

void publisher_side::send_repair(const wire::node_id_bytes& to, transport::frame&& frame) {
  control_.send_with_frame(to, wire::repair_msg{ctx_.self.epoch}, frame);
}

void publisher_side::send_loss(const wire::node_id_bytes& to, const wire::loss_msg& m) {
  if (to == ctx_.self.bytes) {
    self_route_.own_loss(m);
  } else {
    control_.send(to, m);
  }
}

void publisher_side::send_assignment(const wire::node_id_bytes& to, const std::string& group, std::uint64_t seq,
                                     transport::frame&& frame) {
  const wire::assign_msg head{ctx_.self.epoch, group, seq};
  if (to == ctx_.self.bytes) {  // this node's own share of the group's work
    self_route_.own_assignment(head, std::move(frame));
  } else {
    control_.send_with_frame(to, head, frame);
  }
}

void publisher_side::group_conflict(const wire::node_id_bytes& member, const std::string& group,
                                    const std::string& patterns, const std::string& group_patterns) {
  bump(ctx_.counters.group_conflicts);
  ctx_.log.info(
      "node {}: node {} subscribes group '{}' with {}, the group (most of its nodes) with {}: it gets no "
      "work from this node",
      ctx_.self.id.short_string(), short_id(member), group, patterns, group_patterns);
  ctx_.faults.report(fault::group_conflict,
                     fmt::format("node {} subscribes group '{}' with patterns {}, but the group's are {}: it gets no "
                                 "work from this node until it subscribes the same set",
                                 short_id(member), group, patterns, group_patterns));
}

void publisher_side::group_changed(const std::string& group, const std::string& before, const std::string& now) {
  ctx_.log.info("node {}: service group '{}' now subscribes {} (before: {})", ctx_.self.id.short_string(), group,
                now, before == "[]" ? "nothing" : before);
}

}  // namespace meshbus::detail
