// The node's peer protocol: beacons, seeds and gossip, HELLO, sessions, the
// readiness sentinel and READY, liveness transitions and the views API threads read.
// I/O thread only (docs/protocol.md §5).
#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "discovery/interfaces.hpp"
#include "lib/node/node_loop.hpp"
#include "lib/wire/beacon.hpp"
#include "lib/wire/envelope.hpp"
#include "lib/wire/sentinel.hpp"
#include "lib/wire/topic.hpp"

namespace meshbus::detail {
namespace {

// meshbus's own subscriptions (every node has them) are not shown as a peer's.
bool is_internal_pattern(std::string_view pattern) { return pattern.rfind(wire::internal_topic_prefix, 0) == 0; }

}  // namespace

std::size_t node_impl::process_beacons(clock::time_point now) {
  std::size_t n = 0;
  std::uint32_t source = 0;
  for (; n < max_inputs_per_round; ++n) {
    const auto r = beacon_->receive(beacon_buf_, source);
    if (r == discovery::beacon_socket::receive_result::none) break;
    if (r == discovery::beacon_socket::receive_result::foreign) {
      bump(counters_.foreign_network_beacons);
      continue;
    }
    wire::beacon b;
    const auto status = wire::decode_beacon(beacon_buf_, b);
    if (status == wire::decode_status::malformed) {
      bump(counters_.malformed_beacons);
      report(fault::malformed_beacon,
             fmt::format("dropped a malformed beacon from {}", discovery::ipv4_to_string(source)));
      continue;
    }
    if (status == wire::decode_status::unsupported_version) {
      bump(counters_.unsupported_beacons);
      report(fault::unsupported_beacon,
             fmt::format("dropped a beacon of another protocol version from {}",
                         discovery::ipv4_to_string(source)));
      continue;
    }
    if (b.node_id == id_bytes_) continue;  // our own, looped back
    if (b.cluster_hash != cluster_hash_) {
      bump(counters_.foreign_cluster_beacons);
      continue;
    }
    if (b.goodbye()) {
      if (auto t = table_.goodbye(b.node_id, now)) apply_transition(*t, now);
      continue;
    }
    const discovery::peer_endpoint ep{discovery::ipv4_to_string(source), b.router_port, b.pub_port};
    if (auto t = table_.heard(b.node_id, b.epoch, ep, discovery::peer_source::beacon, now)) {
      apply_transition(*t, now);
    }
    touch_view(b.node_id, now);
  }
  return n;
}

std::size_t node_impl::process_router(clock::time_point now) {
  std::size_t n = 0;
  wire::node_id_bytes from{};
  std::string ip;
  bool bad_identity = false;
  bool has_second = false;
  for (; n < max_inputs_per_round; ++n) {
    zmq::message_t frame;
    zmq::message_t second;
    if (!transport_->receive_directed(from, frame, second, has_second, ip, bad_identity)) break;
    if (bad_identity) {
      bump(counters_.unknown_senders);
      report(fault::unknown_sender, "dropped a message to the ROUTER without a valid meshbus sender id");
      continue;
    }
    wire::control_msg msg;
    auto status = wire::decode_control(
        wire::byte_view(static_cast<const std::uint8_t*>(frame.data()), frame.size()), msg);
    // Only repairs and assignments have a second frame (the data frame they carry).
    const bool two_frames = wire::has_data_frame(msg);
    if (status == wire::decode_status::ok && has_second != two_frames) status = wire::decode_status::malformed;
    if (status == wire::decode_status::malformed) {
      bump(counters_.malformed_messages);
      report(fault::malformed_control, fmt::format("dropped a malformed control message from {}", ip));
      continue;
    }
    if (status == wire::decode_status::unsupported_version) {
      bump(counters_.unsupported_messages);
      report(fault::unsupported_control,
             fmt::format("dropped a control message of another protocol version from {}", ip));
      continue;
    }
    if (const auto* repair = std::get_if<wire::repair_msg>(&msg)) {
      if (sessions_.count(from) == 0 || inbound_->epoch_of(from) > repair->epoch) {
        bump(counters_.rejected_sequences);  // from a stranger, or an earlier life of the sender
        continue;
      }
      handle_data(std::move(second), &from);
      continue;
    }
    if (const auto* assignment = std::get_if<wire::assign_msg>(&msg)) {
      if (sessions_.count(from) == 0 || inbound_->epoch_of(from) > assignment->epoch) {
        bump(counters_.rejected_sequences);
        continue;
      }
      handle_assignment(from, *assignment, std::move(second));
      continue;
    }
    handle_control(from, msg, ip, now);
  }
  return n;
}

void node_impl::handle_control(const wire::node_id_bytes& from, wire::control_msg& msg,
                               const std::string& ip, clock::time_point now) {
  if (auto* hello = std::get_if<wire::hello_msg>(&msg)) {
    handle_hello(from, *hello, ip, now);
    return;
  }
  if (auto* ping = std::get_if<wire::ping_msg>(&msg)) {
    const auto* known = table_.find(from);
    discovery::peer_endpoint ep{ip.empty() && known != nullptr ? known->endpoint.host : ip,
                                ping->router_port, ping->pub_port};
    if (auto t = table_.heard(from, ping->epoch, ep, discovery::peer_source::hello, now)) {
      apply_transition(*t, now);
    }
    touch_view(from, now);
    merge_gossip(ping->peers, now);
    return;
  }
  if (std::holds_alternative<wire::goodbye_msg>(msg)) {
    if (auto t = table_.goodbye(from, now)) apply_transition(*t, now);
    // It comes after the peer's last acks on this connection: the group work it did
    // not acknowledge can go to the others now.
    if (sessions_.count(from) == 0) {
      outbound_->release_group_work(from, now);
      update_flow_state();
    }
    return;
  }
  // The rest needs an established session.
  auto it = sessions_.find(from);
  if (it == sessions_.end()) {
    // Except the last group acks of a peer that said goodbye: its goodbye beacon may
    // overtake them, and what they acknowledge must not be handed on.
    const auto* ack = std::get_if<wire::ack_msg>(&msg);
    const bool leaving =
        std::any_of(draining_.begin(), draining_.end(), [&](const draining_sub& d) { return d.id == from; });
    if (ack != nullptr && leaving) {
      wire::ack_msg group_acks{ack->epoch, {}};
      for (const auto& a : ack->acks) {
        if (wire::is_group_stream(a.first)) group_acks.acks.push_back(a);
      }
      outbound_->on_ack(from, group_acks, now);
      update_flow_state();
      return;
    }
    bump(counters_.unknown_senders);
    return;
  }
  auto& s = it->second;
  if (const auto* known = table_.find(from)) {
    (void)table_.heard(from, known->epoch, known->endpoint, discovery::peer_source::hello, now);
  }
  if (auto* subs = std::get_if<wire::subscriptions_msg>(&msg)) {
    // The same generation again: the subscriber has no READY for it (lost). Send
    // the one it was given, unchanged: its positions are where "now" was then.
    const bool again = subs->generation == s.patterns_generation;
    if (subs->generation >= s.patterns_generation) {
      s.patterns_generation = subs->generation;
      s.patterns = std::move(subs->patterns);
      set_peer_services(s, std::move(subs->services));
      update_subscriber_view(s);
    }
    if (again && s.ready_sent && s.ready_sent->generation >= subs->generation) send_control(s.id, *s.ready_sent);
  } else if (auto* ready = std::get_if<wire::ready_msg>(&msg)) {
    s.confirmed_generation = std::max(s.confirmed_generation, ready->generation);
    inbound_->on_ready(from, s.epoch, *ready, now);
  } else if (auto* nack = std::get_if<wire::nack_msg>(&msg)) {
    outbound_->on_nack(from, *nack, now);
  } else if (auto* ack = std::get_if<wire::ack_msg>(&msg)) {
    outbound_->on_ack(from, *ack, now);
    update_flow_state();
  } else if (auto* loss = std::get_if<wire::loss_msg>(&msg)) {
    inbound_->on_loss(from, *loss, now);
  } else if (auto* request = std::get_if<wire::request_msg>(&msg)) {
    handle_request(from, std::move(*request));
  } else if (auto* reply = std::get_if<wire::reply_msg>(&msg)) {
    handle_reply(from, std::move(*reply));
  }
}

void node_impl::handle_hello(const wire::node_id_bytes& from, wire::hello_msg& m,
                             const std::string& ip, clock::time_point now) {
  if (m.cluster != opts_.cluster) {
    bump(counters_.foreign_cluster_beacons);
    return;
  }
  if (m.node_id != from) {
    bump(counters_.malformed_messages);
    report(fault::malformed_control, fmt::format("dropped a HELLO from {} whose node id does not match its sender", ip));
    return;
  }
  const auto* known = table_.find(from);
  const discovery::peer_endpoint ep{ip.empty() && known != nullptr ? known->endpoint.host : ip,
                                    m.router_port, m.pub_port};
  if (auto t = table_.heard(from, m.epoch, ep, discovery::peer_source::hello, now)) {
    apply_transition(*t, now);
  }
  auto it = sessions_.find(from);
  if (it == sessions_.end()) return;  // refused (goodbye tombstone)
  auto& s = it->second;
  s.hello_received = true;
  s.epoch = m.epoch;  // a peer first learned by gossip had no epoch yet
  s.name = m.name;
  s.metadata.clear();
  for (auto& [k, v] : m.metadata) s.metadata[k] = v;
  if (m.sub_generation >= s.patterns_generation) {
    s.patterns_generation = m.sub_generation;
    s.patterns = std::move(m.patterns);
    set_peer_services(s, std::move(m.services));
  }
  // Ours may have been lost: a peer sends HELLO again only while it has none from
  // us. Answering at most once per beacon interval keeps two nodes that both just
  // sent theirs from answering each other forever.
  if (!s.hello_sent || now - s.last_hello_sent >= opts_.beacon_interval) send_hello(s, now);
  if (!s.announced) {
    s.announced = true;
    s.joined_at = now;
    bump(counters_.peers_joined);
    {
      std::lock_guard lock(view_mu_);
      peer_view_[from] = info_of(s);
    }
    update_subscriber_view(s);
    announce(PeerEvent::Kind::joined, s);
    logger().info("node {}: peer {} '{}' joined at {}", id_.short_string(), short_id(from), s.name,
                  s.endpoint.host);
  } else {
    update_subscriber_view(s);
  }
  merge_gossip(m.peers, now);
  // A seed answering: from now on it is an ordinary peer.
  std::uint32_t ip4 = 0;
  if (discovery::parse_ipv4(ip, ip4)) {
    for (auto& seed : seeds_) {
      if (!seed.identified && seed.resolved == ip4 && seed.address.port == m.router_port) {
        seed.identified = from;
        transport_->close_seed(seed.endpoint);
      }
    }
  }
}

std::size_t node_impl::process_xpub() {
  std::size_t n = 0;
  for (; n < max_inputs_per_round; ++n) {
    zmq::message_t msg;
    if (!transport_->receive_subscription(msg)) break;
    wire::node_id_bytes who{};
    std::uint64_t generation = 0;
    const wire::byte_view sub(static_cast<const std::uint8_t*>(msg.data()), msg.size());
    if (!wire::decode_sentinel_subscribe(sub, who, generation)) continue;  // ordinary (un)subscriptions
    auto it = sessions_.find(who);
    if (it == sessions_.end()) {
      early_ready_[who] = std::max(early_ready_[who], generation);
      continue;
    }
    auto& s = it->second;
    s.ready_generation = std::max(s.ready_generation, generation);
    s.ready_seen = true;
    update_subscriber_view(s);
    send_ready(s);
  }
  return n;
}

void node_impl::send_ready(peer_session& s) {
  // Every topic's position: the subscriber decides what its patterns match (the
  // patterns of the sentinel's generation may not have reached this node yet).
  wire::ready_msg r;
  r.generation = s.ready_generation;
  r.positions = outbound_->positions(wire::max_positions);
  send_control(s.id, r);
  s.ready_sent = std::move(r);
}

void node_impl::apply_transition(const discovery::peer_transition& t, clock::time_point now) {
  switch (t.change) {
    case discovery::peer_change::joined:
      open_session(t, now);
      break;
    case discovery::peer_change::restarted: {
      close_session(t.id);
      open_session(t, now);
      break;
    }
    case discovery::peer_change::suspect: {
      bump(counters_.peers_suspected);
      auto it = sessions_.find(t.id);
      if (it != sessions_.end() && it->second.announced) {
        {
          std::lock_guard lock(view_mu_);
          if (auto v = peer_view_.find(t.id); v != peer_view_.end()) v->second.state = PeerState::suspect;
        }
        announce(PeerEvent::Kind::suspect, it->second);
        logger().info("node {}: peer {} '{}' is suspect", id_.short_string(), short_id(t.id), it->second.name);
      }
      break;
    }
    case discovery::peer_change::alive_again: {
      auto it = sessions_.find(t.id);
      if (it != sessions_.end() && it->second.announced) {
        {
          std::lock_guard lock(view_mu_);
          if (auto v = peer_view_.find(t.id); v != peer_view_.end()) v->second.state = PeerState::alive;
        }
        announce(PeerEvent::Kind::alive_again, it->second);
      }
      break;
    }
    case discovery::peer_change::left:
      // A goodbye (not an expiry) leaves data in flight worth reading.
      close_session(t.id, t.goodbye);
      break;
  }
}

node_impl::peer_session& node_impl::open_session(const discovery::peer_transition& t,
                                                 clock::time_point now) {
  // Group work an earlier session still held after its goodbye goes to the others.
  outbound_->release_group_work(t.id, now);
  auto& s = sessions_[t.id];
  s = peer_session{};
  s.id = t.id;
  s.epoch = t.epoch;
  s.endpoint = t.endpoint;
  transport_->connect_peer(t.id, t.endpoint.host, t.endpoint.router_port, t.endpoint.pub_port);
  send_hello(s, now);
  if (auto e = early_ready_.find(t.id); e != early_ready_.end()) {
    // Its subscription reached us before we knew the peer: it still needs its READY.
    s.ready_generation = e->second;
    s.ready_seen = true;
    early_ready_.erase(e);
    send_ready(s);
  }
  return s;
}

void node_impl::close_session(const wire::node_id_bytes& id, bool draining) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  {
    // peers() no longer lists the peer by the time the application hears "left".
    std::lock_guard lock(view_mu_);
    peer_view_.erase(id);
    subscriber_view_.erase(id);
  }
  if (it->second.announced) {
    bump(counters_.peers_left);
    announce(PeerEvent::Kind::left, it->second);
    logger().info("node {}: peer {} '{}' left", id_.short_string(), short_id(id), it->second.name);
  }
  if (stalled_) peer_left_during_stall_ = true;
  // Its window no longer holds anyone up. Its group work moves to the others now, or,
  // after a goodbye, once its last acks are in (release_group_work).
  outbound_->forget_subscriber(id, clock::now(), draining);
  set_peer_services(it->second, {});
  fail_requests(&id, errc::peer_gone, "the instance left before it replied");
  update_flow_state();
  if (draining) {
    // Its last data may still be in flight: its streams live on until retire_drained().
    draining_.push_back({clock::now() + std::max(opts_.linger, 2 * opts_.beacon_interval),
                         transport_->pub_endpoint_of(id), id});
    transport_->disconnect_peer(id, true);
  } else {
    transport_->disconnect_peer(id);
    inbound_->on_publisher_gone(id, clock::now());
  }
  sessions_.erase(it);
  view_cv_.notify_all();
}

void node_impl::retire_drained(clock::time_point now) {
  for (auto it = draining_.begin(); it != draining_.end();) {
    if (now < it->until) {
      ++it;
      continue;
    }
    transport_->release_sub(it->endpoint);  // a no-op if a new peer took it over
    if (sessions_.count(it->id) == 0) {
      inbound_->on_publisher_gone(it->id, now);
      outbound_->release_group_work(it->id, now);  // its GOODBYE never came
      update_flow_state();
    }
    it = draining_.erase(it);
  }
}

wire::hello_msg node_impl::make_hello() const {
  wire::hello_msg h;
  h.node_id = id_bytes_;
  h.epoch = epoch_;
  h.cluster = opts_.cluster;
  h.name = opts_.name;
  h.router_port = router_port_;
  h.pub_port = pub_port_;
  h.metadata.assign(opts_.metadata.begin(), opts_.metadata.end());
  h.sub_generation = sub_generation_;
  h.patterns = subs_.patterns();
  h.peers = gossip_list();
  h.services = service_names();
  return h;
}

wire::bytes node_impl::make_beacon(std::uint8_t flags) const {
  wire::beacon b;
  b.flags = flags;
  b.node_id = id_bytes_;
  b.epoch = epoch_;
  b.cluster_hash = cluster_hash_;
  b.router_port = router_port_;
  b.pub_port = pub_port_;
  return wire::encode_beacon(b);
}

void node_impl::send_hello(peer_session& s, clock::time_point now) {
  send_control(s.id, make_hello());
  s.hello_sent = true;
  s.last_hello_sent = now;
  s.subscriptions_sent = now;  // a HELLO carries them too
}

void node_impl::send_control(const wire::node_id_bytes& id, const wire::control_msg& m) {
  const auto bytes = wire::encode_control(m);
  zmq::message_t msg(bytes.data(), bytes.size());
  switch (transport_->send_to(id, msg)) {
    case transport::send_status::ok: break;
    case transport::send_status::would_block:
      bump(counters_.control_send_failures);
      report(fault::control_send_failure,
             fmt::format("a control message to peer {} was refused (its queue is full)", short_id(id)));
      break;
    case transport::send_status::no_route:
      // The peer's connection is already gone (it left, or has not connected yet):
      // counted, but nothing to warn about - what matters is resent once it is back.
      bump(counters_.control_send_failures);
      break;
  }
}

void node_impl::merge_gossip(const std::vector<wire::peer_address>& peers, clock::time_point now) {
  for (const auto& p : peers) {
    if (p.id == id_bytes_ || table_.find(p.id) != nullptr || p.router_port == 0 || p.pub_port == 0) continue;
    const discovery::peer_endpoint ep{p.host, p.router_port, p.pub_port};
    if (auto t = table_.heard(p.id, 0, ep, discovery::peer_source::gossip, now)) apply_transition(*t, now);
  }
}

std::vector<wire::peer_address> node_impl::gossip_list() const {
  std::vector<wire::peer_address> out;
  for (const auto& [id, s] : sessions_) {
    if (!s.hello_received || out.size() >= wire::max_gossip_peers) continue;
    const auto* e = table_.find(id);
    if (e == nullptr || e->state != discovery::peer_state::alive) continue;
    out.push_back({id, s.endpoint.host, s.endpoint.router_port, s.endpoint.pub_port});
  }
  return out;
}

PeerInfo node_impl::info_of(const peer_session& s) const {
  PeerInfo p;
  p.id = to_node_id(s.id);
  p.epoch = s.epoch;
  p.name = s.name;
  p.address = s.endpoint.host;
  p.router_port = s.endpoint.router_port;
  p.pub_port = s.endpoint.pub_port;
  const auto* e = table_.find(s.id);
  p.state = e != nullptr && e->state == discovery::peer_state::suspect ? PeerState::suspect : PeerState::alive;
  p.joined_at = s.joined_at;
  p.last_heard = e != nullptr ? e->last_heard : s.joined_at;
  p.metadata = s.metadata;
  for (const auto& spec : s.patterns) {
    if (!is_internal_pattern(spec.pattern)) p.subscriptions.push_back(spec.pattern);
  }
  return p;
}

void node_impl::touch_view(const wire::node_id_bytes& id, clock::time_point now) {
  std::lock_guard lock(view_mu_);
  if (auto v = peer_view_.find(id); v != peer_view_.end()) v->second.last_heard = now;
}

void node_impl::update_subscriber_view(const peer_session& s) {
  if (!s.announced) return;
  subscriber_view v;
  std::vector<std::string> texts;
  for (const auto& spec : s.patterns) {
    wire::pattern p;
    std::string err;
    if (wire::pattern::compile(spec.pattern, p, err)) v.patterns.push_back(std::move(p));
    if (!is_internal_pattern(spec.pattern)) texts.push_back(spec.pattern);
  }
  v.ready = s.ready_seen && s.ready_generation >= s.patterns_generation;
  outbound_->set_subscriber(s.id, s.patterns, v.ready, clock::now());
  update_flow_state();
  {
    std::lock_guard lock(view_mu_);
    subscriber_view_[s.id] = std::move(v);
    if (auto pv = peer_view_.find(s.id); pv != peer_view_.end()) pv->second.subscriptions = std::move(texts);
  }
  view_cv_.notify_all();
}

void node_impl::announce(PeerEvent::Kind kind, const peer_session& s) {
  PeerEvent ev{kind, info_of(s)};
  dispatcher_->post([this, ev = std::move(ev)] {
    PeerHandler h;
    {
      std::lock_guard lock(handler_mu_);
      h = peer_handler_;
    }
    if (h) h(ev);
  });
  view_cv_.notify_all();
}

void node_impl::subscriptions_changed() {
  ++sub_generation_;
  auto next = wire::encode_sentinel(id_bytes_, sub_generation_);
  transport_->subscribe(next);
  if (!sentinel_.empty()) transport_->unsubscribe(sentinel_);
  sentinel_ = std::move(next);
  wire::subscriptions_msg m{sub_generation_, subs_.patterns(), service_names()};
  // This node is a member of its own groups too: the publisher side learns it here.
  std::vector<wire::pattern_spec> own_groups;
  for (const auto& spec : m.patterns) {
    if (!spec.group.empty()) own_groups.push_back(spec);
  }
  outbound_->set_subscriber(id_bytes_, own_groups, true, clock::now());
  const auto now = clock::now();
  for (auto& [id, s] : sessions_) {
    if (!s.hello_sent) continue;
    send_control(id, m);
    s.subscriptions_sent = now;
  }
}

void node_impl::send_seed_hellos(clock::time_point now) {
  for (auto& seed : seeds_) {
    if (seed.identified && table_.find(*seed.identified) != nullptr) continue;
    seed.identified.reset();
    if (seed.resolved == 0) discovery::resolve_ipv4(seed.address.host, seed.resolved);
    transport_->open_seed(seed.endpoint);
    const auto bytes = wire::encode_control(make_hello());
    zmq::message_t msg(bytes.data(), bytes.size());
    if (transport_->send_to_seed(seed.endpoint, msg) != transport::send_status::ok) {
      // Not connected yet (ZMQ_IMMEDIATE): the next interval tries again.
      logger().debug("node {}: seed {} not reachable yet", id_.short_string(), seed.endpoint);
    }
  }
  (void)now;
}

}  // namespace meshbus::detail
