// The node's data path: handing published batches to ZeroMQ (with local delivery),
// heartbeats, receiving data frames and repairs, and carrying out what the
// reliability layer asks for (deliveries, NACKs, acks, repairs, loss notices, dead
// letters). I/O thread only, except where a function says otherwise.
#include <algorithm>
#include <charconv>
#include <cstring>

#include <fmt/format.h>

#include "lib/node/node_loop.hpp"
#include "lib/transport/zmq_frame.hpp"
#include "lib/wire/envelope.hpp"

namespace meshbus::detail {
namespace {

std::size_t stream_hash(const wire::node_id_bytes& publisher, std::string_view topic) {
  std::size_t h = std::hash<std::string_view>{}(topic);
  for (const auto b : publisher) h = h * 131 + b;
  return h;
}

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

zmq::message_t to_message(wire::bytes&& frame, const std::shared_ptr<frame_pool>& pool) {
  if (frame.size() < zero_copy_threshold) {
    zmq::message_t msg(frame.data(), frame.size());
    pool->give_back(std::move(frame));
    return msg;
  }
  auto* f = new pooled_frame{std::move(frame), pool};
  return zmq::message_t(f->buffer.data(), f->buffer.size(), &release_pooled_frame, f);
}

}  // namespace

// ---------------------------------------------------------------------------
// publishing

void node_impl::pump_outbox(clock::time_point now) {
  send_pending(now);
  // Flow control: while a subscriber's window is full, published events wait in the
  // send queue (bounded by Options::send_queue_bytes), so what is sent and not yet
  // acknowledged stays within the window.
  if (!pending_.empty() || outbound_->window_full()) return;
  drained_.clear();
  outbox_->drain(drained_);
  if (drained_.empty()) return;
  const auto ts = unix_ns();
  for (auto& b : drained_) {
    wire::finish_batch(b.frame, b.marks, b.count, ts);
    const auto frame_size = b.frame.size();
    const auto events_offset = b.marks.count_at + 4;
    pending_send p{to_message(std::move(b.frame), outbox_->pool()), frame_size, std::move(b.topic), b.first_seq,
                   b.count};
    if (opts_.local_delivery) deliver_locally(p, events_offset, ts);
    pending_.push_back(std::move(p));
  }
  send_pending(now);
}

// This node's own events, to its own matching subscriptions (no windows: a local
// batch cannot be lost or reordered), one delivery per subscription.
void node_impl::deliver_locally(const pending_send& p, std::size_t events_offset, std::uint64_t timestamp_ns) {
  const auto subs = subs_.match(p.topic);
  if (!subs) return;
  for (const auto& sub : *subs) {
    delivery d;
    d.frame.copy(const_cast<zmq::message_t&>(p.msg));  // shares the buffer
    d.subscriptions = std::make_shared<const match_list>(match_list{sub});
    d.publisher = id_;
    d.epoch = epoch_;
    d.first_seq = p.first_seq;
    d.timestamp_ns = timestamp_ns;
    d.count = p.count;
    d.topic_size = static_cast<std::uint32_t>(p.topic.size());
    d.events_offset = events_offset;
    d.stream_id = (stream_hash(id_bytes_, p.topic) << 16) ^ sub->id;
    dispatcher_->post(stream_hash(id_bytes_, p.topic) ^ sub->id, std::move(d));
  }
}

void node_impl::send_pending(clock::time_point now) {
  while (!pending_.empty()) {
    // Flow control: nothing more goes out while a subscriber's window is full.
    if (outbound_->window_full()) return;
    auto& p = pending_.front();
    const auto size = p.msg.size();
    zmq::message_t kept;
    kept.copy(p.msg);  // for the history (shares the buffer)
    auto r = transport_->publish(p.msg);
    if (r == transport::send_status::ok) {
      stalled_ = false;
      lossy_episode_ = false;
      peer_left_during_stall_ = false;
    } else {
      if (!stalled_) {
        stalled_ = true;
        stall_since_ = now;
        bump(counters_.send_stalls);  // back-pressure is normal operation, not a fault
        logger().debug("node {}: a subscriber's queue is full; publishing waits for it", id_.short_string());
      }
      // A subscriber that has taken nothing for a whole peer expiry, or that left
      // meanwhile, is not allowed to hold everyone else up; reliable subscribers get
      // what they missed back by NACK.
      if (lossy_episode_ || peer_left_during_stall_ || now - stall_since_ >= opts_.peer_expiry) {
        lossy_episode_ = true;
        r = transport_->publish_lossy(p.msg);
        if (r == transport::send_status::ok) {
          bump(counters_.sent_past_gone);
          report(fault::sent_past_gone,
                 "a subscriber took nothing for a whole peer expiry: data it cannot take is "
                 "dropped for it alone (counted in Stats::sent_past_gone; reliable subscribers ask for it again)");
        }
      }
      if (r != transport::send_status::ok) return;
    }
    bump(counters_.batches_sent);
    bump(counters_.bytes_sent, size);
    auto& t = topics_[p.topic];
    t.last_seq = p.first_seq + p.count - 1;
    t.last_sent = now;
    t.heartbeat_gap = std::chrono::milliseconds(20);
    t.next_heartbeat = now + t.heartbeat_gap;
    outbound_->sent(p.topic, p.first_seq, p.count, transport::to_frame(std::move(kept)), now);
    // Lower "all acknowledged" before the bytes are released, or flush() could slip through.
    update_flow_state();
    outbox_->release(p.bytes);
    pending_.pop_front();
  }
}

// Heartbeats tell subscribers a topic's last sequence, so a lost tail is noticed:
// 20 ms after a topic goes quiet, then at doubling gaps up to the beacon interval,
// for 30 beacon intervals.
void node_impl::send_heartbeats(clock::time_point now) {
  if (!pending_.empty()) return;  // a heartbeat must not overtake queued data
  const auto recent = opts_.beacon_interval * 30;
  for (auto& [topic, st] : topics_) {
    if (now < st.next_heartbeat) continue;
    if (now - st.last_sent > recent) {
      st.next_heartbeat = clock::time_point::max();
      continue;
    }
    wire::heartbeat hb;
    hb.publisher = id_bytes_;
    hb.epoch = epoch_;
    hb.last_seq = st.last_seq;
    hb.timestamp_ns = unix_ns();
    const auto bytes = wire::encode_heartbeat(topic, hb);
    zmq::message_t msg(bytes.data(), bytes.size());
    if (transport_->publish(msg) != transport::send_status::ok) {
      bump(counters_.control_send_failures);
      break;
    }
    bump(counters_.heartbeats_sent);
    st.heartbeat_gap = std::min<clock::duration>(st.heartbeat_gap * 2, opts_.beacon_interval);
    st.next_heartbeat = now + st.heartbeat_gap;
  }
}

// Publishes the flow-control and flush state for API threads.
void node_impl::update_flow_state() {
  const bool full = outbound_->window_full();
  const bool acked = outbound_->all_acknowledged();
  unacknowledged_.store(outbound_->unacknowledged(), std::memory_order_relaxed);
  history_events_.store(outbound_->history_events(), std::memory_order_relaxed);
  history_bytes_.store(outbound_->history_bytes(), std::memory_order_relaxed);
  const bool changed = window_full_.exchange(full) != full || all_acknowledged_.exchange(acked) != acked;
  if (changed) {
    std::lock_guard lock(flow_mu_);  // pairs with the waiters' predicate check
    flow_cv_.notify_all();
  }
}

// ---------------------------------------------------------------------------
// receiving

std::size_t node_impl::process_sub() {
  std::size_t n = 0;
  for (; n < max_inputs_per_round && !dispatcher_->full(); ++n) {
    zmq::message_t msg;
    if (!transport_->receive_data(msg)) break;
    handle_data(std::move(msg), nullptr);
  }
  return n;
}

// A data frame from the SUB socket, or (`repaired_by` set) one resent by its
// publisher over the ROUTER.
void node_impl::handle_data(zmq::message_t&& msg, const wire::node_id_bytes* repaired_by) {
  const wire::byte_view frame(static_cast<const std::uint8_t*>(msg.data()), msg.size());
  std::string_view topic;
  wire::data_kind kind{};
  std::size_t body = 0;
  auto status = wire::decode_data_prefix(frame, topic, kind, body);
  if (status == wire::decode_status::ok && kind == wire::data_kind::heartbeat && repaired_by == nullptr) {
    wire::heartbeat hb;
    status = wire::decode_heartbeat(frame, body, hb);
    if (status == wire::decode_status::ok) {
      if (hb.publisher != id_bytes_) inbound_->on_heartbeat(hb, topic, clock::now());
      return;
    }
  } else if (status == wire::decode_status::ok && kind == wire::data_kind::batch) {
    wire::batch_header h;
    status = wire::decode_batch(frame, body, h);
    // A repair must be of the sender's own stream.
    if (status == wire::decode_status::ok && (repaired_by == nullptr || h.publisher == *repaired_by)) {
      bump(counters_.batches_received);
      bump(counters_.events_received, h.count);
      bump(counters_.bytes_received, msg.size());
      if (h.publisher == id_bytes_) return;
      const std::string topic_copy(topic);  // the view dies with the frame
      inbound_->on_batch(transport::to_frame(std::move(msg)), h, topic_copy, repaired_by != nullptr,
                         clock::now());
      return;
    }
    if (status == wire::decode_status::ok) status = wire::decode_status::malformed;
  } else if (status == wire::decode_status::ok) {
    status = wire::decode_status::malformed;  // a heartbeat is never a repair
  }
  if (status == wire::decode_status::unsupported_version) {
    bump(counters_.unsupported_messages);
    report(fault::unsupported_data, "dropped a data frame of another protocol version");
  } else {
    bump(counters_.malformed_messages);
    report(fault::malformed_data, "dropped a malformed data frame");
  }
}

void node_impl::reliability_tick(clock::time_point now) {
  expire_requests(now);
  const auto unknown_before = read(counters_.unknown_starts);
  inbound_->tick(now);
  if (read(counters_.unknown_starts) != unknown_before) {
    report(fault::unknown_start,
           "a stream was started at the first event received: the publisher's READY (where the "
           "subscription began) did not come within 3 s, so events before it may be missing unreported "
           "(Stats::unknown_starts)");
  }
  if (!own_nacks_.empty()) {
    std::vector<wire::nack_msg> nacks;
    nacks.swap(own_nacks_);
    for (const auto& m : nacks) outbound_->on_nack(id_bytes_, m, now);
  }
  outbound_->tick(now);
  send_heartbeats(now);
  update_flow_state();
}

// ---------------------------------------------------------------------------
// what the reliability layer asks for

void node_impl::deliver(std::size_t hash, const reliability::lane& l, reliability::lane_delivery&& d) {
  dispatcher_->post(hash, to_delivery(l, std::move(d)));
}

// Acks, NACKs and LOSSes to this node itself (its own group work) go straight back
// in; NACKs at the next tick, since their answers go back into the subscriber side.
void node_impl::send_nack(const wire::node_id_bytes& publisher, const wire::nack_msg& m) {
  if (publisher == id_bytes_) {
    own_nacks_.push_back(m);
  } else {
    send_control(publisher, m);
  }
}

void node_impl::send_ack(const wire::node_id_bytes& publisher, const wire::ack_msg& m) {
  if (publisher == id_bytes_) {
    outbound_->on_ack(id_bytes_, m, clock::now());
    update_flow_state();
  } else {
    send_control(publisher, m);
  }
}

void node_impl::send_assignment(const wire::node_id_bytes& to, const std::string& group, std::uint64_t seq,
                                transport::frame&& data) {
  auto frame = transport::to_message(std::move(data));
  if (to == id_bytes_) {  // this node's own share of the group's work
    handle_assignment(id_bytes_, wire::assign_msg{epoch_, group, seq}, std::move(frame));
    return;
  }
  const auto head_bytes = wire::encode_control(wire::assign_msg{epoch_, group, seq});
  zmq::message_t head(head_bytes.data(), head_bytes.size());
  if (transport_->send_to(to, head, frame) != transport::send_status::ok) {
    bump(counters_.control_send_failures);  // sent again when the member asks, or by redelivery
  }
}

void node_impl::group_conflict(const wire::node_id_bytes& member, const std::string& group,
                               const std::string& patterns, const std::string& group_patterns) {
  bump(counters_.malformed_messages);
  logger().info(
      "node {}: node {} subscribes group '{}' with {}, the group (most of its nodes) with {}: it gets no "
      "work from this node",
      id_.short_string(), short_id(member), group, patterns, group_patterns);
  report(fault::group_conflict,
         fmt::format(
             "node {} subscribes group '{}' with patterns {}, but the group's are {}: it gets no work from "
             "this node until it subscribes the same set",
             short_id(member), group, patterns, group_patterns));
}

void node_impl::group_changed(const std::string& group, const std::string& before, const std::string& now) {
  logger().info("node {}: service group '{}' now subscribes {} (before: {})", id_.short_string(), group, now,
                before == "[]" ? "nothing" : before);
}

// An assignment (the data frame a publisher gave us as group work), from a peer or
// from this node itself.
void node_impl::handle_assignment(const wire::node_id_bytes& from, const wire::assign_msg& m, zmq::message_t&& frame) {
  const wire::byte_view bytes(static_cast<const std::uint8_t*>(frame.data()), frame.size());
  std::string_view topic;
  wire::data_kind kind{};
  std::size_t body = 0;
  wire::batch_header h;
  auto status = wire::decode_data_prefix(bytes, topic, kind, body);
  if (status == wire::decode_status::ok && kind == wire::data_kind::batch) status = wire::decode_batch(bytes, body, h);
  if (status != wire::decode_status::ok || kind != wire::data_kind::batch || h.publisher != from) {
    bump(counters_.malformed_messages);
    report(fault::malformed_data, "dropped a malformed group assignment");
    return;
  }
  bump(counters_.batches_received);
  bump(counters_.events_received, h.count);
  const std::string topic_copy(topic);
  inbound_->on_assignment(from, m.epoch, m.group, m.seq, transport::to_frame(std::move(frame)), h, topic_copy,
                          clock::now());
}

void node_impl::send_repair(const wire::node_id_bytes& to, transport::frame&& data) {
  auto frame = transport::to_message(std::move(data));
  const auto head_bytes = wire::encode_control(wire::repair_msg{epoch_});
  zmq::message_t head(head_bytes.data(), head_bytes.size());
  if (transport_->send_to(to, head, frame) != transport::send_status::ok) {
    bump(counters_.control_send_failures);  // asked for again when the NACK is retried
  }
}

void node_impl::send_loss(const wire::node_id_bytes& to, const wire::loss_msg& m) {
  if (to == id_bytes_) {
    inbound_->on_loss(id_bytes_, m, clock::now());
  } else {
    send_control(to, m);
  }
}

void node_impl::lost(std::size_t stream_hash, const reliability::loss_report& loss) {
  const auto notice = to_notice(loss);
  report(fault::sequence_gap,
         fmt::format("{} events of '{}' from {} will not arrive ({})", notice.to - notice.from + 1, notice.topic,
                     notice.publisher.short_string(), to_string(notice.reason)));
  dispatcher_->post(stream_hash, [this, notice] {
    LossHandler h;
    {
      std::lock_guard lock(handler_mu_);
      h = loss_handler_;
    }
    if (h) h(notice);
  });
}

// ---------------------------------------------------------------------------
// dead letters (called on handler threads)

void node_impl::dead_letter(const Event& e, const subscription_entry& sub, std::string_view reason,
                            unsigned attempts) {
  DeadLetter d;
  d.topic = std::string(e.topic());
  d.payload = std::string(e.text());
  d.publisher = e.publisher();
  d.epoch = e.epoch();
  d.sequence = e.sequence();
  d.event_id = e.has_explicit_id() ? std::string(e.id()) : std::string();
  d.type_name = std::string(e.type_name());
  d.type_version = e.type_version();
  d.correlation_id = std::string(e.correlation_id());
  d.causation_id = std::string(e.causation_id());
  d.content_type = std::string(e.content_type());
  for (const auto& h : e.headers()) d.headers.emplace_back(std::string(h.name), std::string(h.value));
  d.pattern = sub.pattern.text();
  d.reason = std::string(reason);
  d.attempts = attempts;
  d.failed_at = std::chrono::system_clock::now();
  const auto [id, dropped] = dead_letters_.add(d, sub.id);
  if (dropped) bump(counters_.dead_letters_dropped);
  report(fault::dead_letter, fmt::format("dead-lettered event {} of '{}' after {} attempt(s): {}", e.id(), d.topic,
                                         attempts, d.reason));
  // Announce it on "$dlq.<topic>", so tools and other nodes can see it.
  const auto announce_topic = d.topic.size() + 5 <= wire::max_topic_length ? "$dlq." + d.topic : std::string("$dlq");
  const auto id_text = std::to_string(id);
  const auto attempts_text = std::to_string(attempts);
  const auto seq_text = std::to_string(d.sequence);
  const auto publisher_text = d.publisher.to_string();
  const auto node_text = id_.to_string();
  const Header headers[] = {{"dlq-id", id_text},           {"dlq-node", node_text},
                            {"dlq-reason", d.reason},      {"dlq-attempts", attempts_text},
                            {"dlq-pattern", d.pattern},    {"original-topic", d.topic},
                            {"original-publisher", publisher_text}, {"original-sequence", seq_text}};
  PublishOptions po;
  po.headers = headers;
  po.type_name = d.type_name;
  po.type_version = d.type_version;
  po.correlation_id = d.correlation_id;
  const std::string cause = d.event_id.empty() ? std::string(e.id()) : d.event_id;  // e.id() may be made on the fly
  po.causation_id = cause;
  try {
    (void)publish_reserved(announce_topic, wire::byte_view(reinterpret_cast<const std::uint8_t*>(d.payload.data()),
                                                           d.payload.size()),
                           &po);
  } catch (const error&) {
    // The node is stopping: the dead letter stays in the store.
  }
}

namespace {
constexpr std::string_view replay_request_topic = "$meshbus.dlq.replay";
constexpr std::string_view replay_answer_topic = "$meshbus.dlq.replayed";
}  // namespace

PublishResult node_impl::request_dead_letter_replay(const NodeId& node, std::uint64_t id) {
  const auto node_text = node.to_string();
  const auto id_text = std::to_string(id);
  const Header headers[] = {{"dlq-node", node_text}, {"dlq-id", id_text}};
  PublishOptions po;
  po.headers = headers;
  return publish_reserved(replay_request_topic, {}, &po);
}

// A replay request on "$meshbus.dlq.replay" (handler thread): act if it is for us.
void node_impl::answer_replay_request(const Event& request) {
  if (request.header("dlq-node").value_or("") != id_.to_string()) return;
  const auto id_text = std::string(request.header("dlq-id").value_or(""));
  std::uint64_t id = 0;
  const auto [end, ec] = std::from_chars(id_text.data(), id_text.data() + id_text.size(), id);
  const bool ok = ec == std::errc{} && end == id_text.data() + id_text.size() && replay_dead_letter(id);
  const auto node_text = id_.to_string();
  const Header headers[] = {{"dlq-node", node_text}, {"dlq-id", id_text}, {"dlq-result", ok ? "replayed" : "unknown"}};
  const std::string cause = request.id();  // made on the fly: keep it alive for publish
  PublishOptions po;
  po.headers = headers;
  po.causation_id = cause;
  (void)publish_reserved(replay_answer_topic, {}, &po);
}

bool node_impl::replay_dead_letter(std::uint64_t id) {
  const auto found = dead_letters_.find(id);
  if (!found) return false;
  const auto& [letter, subscription_id] = *found;
  auto sub = subs_.find(subscription_id);
  if (!sub) return false;
  // Rebuild the event as a one-event batch and deliver it to that subscription alone.
  std::vector<wire::header_view> headers;
  for (const auto& [k, v] : letter.headers) headers.push_back({k, v});
  wire::event_fields f;
  f.flags = wire::event_flag::headers;
  f.headers = headers;
  auto set = [&](std::uint32_t flag, std::string_view& field, const std::string& value) {
    if (value.empty()) return;
    f.flags |= flag;
    field = value;
  };
  set(wire::event_flag::event_id, f.event_id, letter.event_id);
  set(wire::event_flag::correlation_id, f.correlation_id, letter.correlation_id);
  set(wire::event_flag::causation_id, f.causation_id, letter.causation_id);
  set(wire::event_flag::content_type, f.content_type, letter.content_type);
  if (!letter.type_name.empty()) {
    f.flags |= wire::event_flag::type;
    f.type_name = letter.type_name;
    f.type_version = letter.type_version;
  }
  wire::bytes frame;
  wire::batch_marks marks;
  wire::begin_batch(frame, letter.topic, letter.publisher.bytes, letter.epoch, letter.sequence, marks);
  wire::append_event(frame, wire::byte_view(reinterpret_cast<const std::uint8_t*>(letter.payload.data()),
                                            letter.payload.size()),
                     &f);
  wire::finish_batch(frame, marks, 1, unix_ns());
  delivery d;
  d.frame = zmq::message_t(frame.data(), frame.size());
  d.subscriptions = std::make_shared<const match_list>(match_list{sub});
  d.publisher = letter.publisher;
  d.epoch = letter.epoch;
  d.first_seq = letter.sequence;
  d.count = 1;
  d.topic_size = static_cast<std::uint32_t>(letter.topic.size());
  d.events_offset = marks.count_at + 4;
  d.stream_id = (std::uint64_t{1} << 63) | id;  // its own ordering: nothing waits behind it
  // Done either way: handled, or dead-lettered again as a new entry that replaces it.
  d.on_done = [this, id](delivery_outcome) { dead_letters_.remove(id); };
  {
    // The replayed event must not be taken for a duplicate of itself.
    std::lock_guard lock(sub->dedupe_mu);
    if (!letter.event_id.empty()) sub->dedupe.forget(letter.event_id);
  }
  dispatcher_->post(static_cast<std::size_t>(id), std::move(d));
  return true;
}

}  // namespace meshbus::detail
