// The peer protocol: beacons and gossip into the peer table, sessions with HELLO,
// PING and GOODBYE, the readiness sentinel and READY, liveness transitions
// (docs/protocol.md §5). Invariant: a session exists exactly while the table has the
// peer; mesh_view lists a peer from its first HELLO until its session closes.
#include "lib/node/peer_sessions.hpp"

#include <algorithm>

#include "discovery/interfaces.hpp"
#include "lib/node/log.hpp"
#include "lib/wire/sentinel.hpp"
#include "lib/wire/topic.hpp"

namespace meshbus::detail {
namespace {

// meshbus's own subscriptions (every node has them) are not shown as a peer's.
bool is_internal_pattern(std::string_view pattern) { return pattern.rfind(wire::internal_topic_prefix, 0) == 0; }

}  // namespace

peer_sessions::peer_sessions(node_context& ctx, transport::transport& transport, control_sender& control,
                             mesh_view& view, subscription_registry& subs, session_events& events,
                             std::vector<discovery::seed_address> seeds)
    : ctx_(ctx),
      transport_(transport),
      control_(control),
      view_(view),
      subs_(subs),
      events_(events),
      seeds_(ctx, transport, std::move(seeds)),
      table_(discovery::peer_timing{ctx.opts.beacon_interval * ctx.opts.suspect_after_missed, ctx.opts.peer_expiry}) {
  const auto now = clock::now();
  next_interval_ = now;
}

clock::time_point peer_sessions::next_due() const {
  auto next = std::min(table_.next_due(), next_interval_);
  for (const auto& [id, a] : absent_) next = std::min(next, a.until);
  return next;
}

void peer_sessions::credit_pause(clock::duration gap, clock::time_point now) {
  table_.credit(gap, now);
  for (auto& [id, a] : absent_) a.until += gap;
  ctx_.log.info("node {}: this node did not run for {} ms (stopped or held up); its peers' silence meanwhile "
                "does not count against them",
                ctx_.self.id.short_string(), std::chrono::duration_cast<std::chrono::milliseconds>(gap).count());
}

// An absent peer may be paused or cut off, or dead. Waiting peer_resume for it is
// the price of not handling its work twice; a refused connection to its ROUTER port
// shows at once that its process is gone, so a crash costs only the expiry.
void peer_sessions::forget_absent(clock::time_point now, bool probe) {
  using verdict = discovery::liveness_probe::verdict;
  for (auto it = absent_.begin(); it != absent_.end();) {
    auto& a = it->second;
    bool dead = false;
    if (probe) {
      dead = a.probe.running() && a.probe.check() == verdict::refused;
      if (!dead && !a.probe.running()) {
        dead = a.probe.start(a.endpoint.host, a.endpoint.router_port) == verdict::refused;
      }
    }
    if (!dead && now < a.until) {
      ++it;
      continue;
    }
    const auto id = it->first;
    it = absent_.erase(it);
    if (dead) {
      bump(ctx_.counters.peers_found_gone);
      ctx_.log.info("node {}: peer {} is gone for good (its port refuses connections): its streams end here",
                    ctx_.self.id.short_string(), short_id(id));
    } else {
      ctx_.log.info("node {}: peer {} did not come back within {} ms: its streams end here",
                    ctx_.self.id.short_string(), short_id(id), ctx_.opts.peer_resume.count());
    }
    events_.session_forgotten(id, now);
  }
}

void peer_sessions::tick(clock::time_point now) {
  forget_absent(now, now >= next_interval_);
  if (now >= table_.next_due()) {
    std::vector<discovery::peer_transition> changes;
    table_.tick(now, changes);
    for (const auto& t : changes) apply(t, now);
  }
  if (now >= next_interval_) {
    retire_drained(now);
    on_interval(now);
    next_interval_ = now + ctx_.opts.beacon_interval;
  }
}

void peer_sessions::on_beacon(const wire::beacon& b, std::uint32_t source, clock::time_point now) {
  if (b.goodbye()) {
    if (auto t = table_.goodbye(b.node_id, now)) apply(*t, now);
    return;
  }
  const discovery::peer_endpoint ep{discovery::ipv4_to_string(source), b.router_port, b.pub_port};
  if (auto t = table_.heard(b.node_id, b.epoch, ep, discovery::peer_source::beacon, now)) apply(*t, now);
  view_.heard(b.node_id, now);
}

void peer_sessions::on_ping(const wire::node_id_bytes& from, const wire::ping_msg& m, const std::string& ip,
                            clock::time_point now) {
  const auto* known = table_.find(from);
  discovery::peer_endpoint ep{ip.empty() && known != nullptr ? known->endpoint.host : ip, m.router_port,
                              m.pub_port};
  if (auto t = table_.heard(from, m.epoch, ep, discovery::peer_source::hello, now)) apply(*t, now);
  view_.heard(from, now);
  merge_gossip(m.peers, now);
}

void peer_sessions::on_goodbye(const wire::node_id_bytes& from, clock::time_point now) {
  if (auto t = table_.goodbye(from, now)) apply(*t, now);
  if (absent_.erase(from) != 0) events_.session_forgotten(from, now);  // it will not come back
}

peer_session* peer_sessions::established(const wire::node_id_bytes& from, clock::time_point now) {
  auto it = sessions_.find(from);
  if (it == sessions_.end()) return nullptr;
  if (const auto* known = table_.find(from)) {
    (void)table_.heard(from, known->epoch, known->endpoint, discovery::peer_source::hello, now);
  }
  return &it->second;
}

bool peer_sessions::draining(const wire::node_id_bytes& id) const {
  return std::any_of(draining_.begin(), draining_.end(), [&](const draining_peer& d) { return d.id == id; });
}

void peer_sessions::on_hello(const wire::node_id_bytes& from, wire::hello_msg& m, const std::string& ip,
                             clock::time_point now) {
  if (m.cluster != ctx_.opts.cluster) {
    bump(ctx_.counters.foreign_cluster_beacons);
    return;
  }
  if (m.node_id != from) {
    bump(ctx_.counters.malformed_messages);
    ctx_.faults.report(fault::malformed_control,
                       fmt::format("dropped a HELLO from {} whose node id does not match its sender", ip));
    return;
  }
  const auto* known = table_.find(from);
  const discovery::peer_endpoint ep{ip.empty() && known != nullptr ? known->endpoint.host : ip, m.router_port,
                                    m.pub_port};
  if (auto t = table_.heard(from, m.epoch, ep, discovery::peer_source::hello, now)) apply(*t, now);
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
    set_services(s, std::move(m.services));
  }
  // Ours may have been lost: a peer sends HELLO again only while it has none from
  // us. Answering at most once per beacon interval keeps two nodes that both just
  // sent theirs from answering each other forever.
  if (!s.hello_sent || now - s.last_hello_sent >= ctx_.opts.beacon_interval) send_hello(s, now);
  if (!s.announced) {
    join(s, now);
  } else {
    update_subscriber(s);
  }
  merge_gossip(m.peers, now);
  // A seed answering: from now on it is an ordinary peer.
  seeds_.answered(from, ip, m.router_port);
}

void peer_sessions::join(peer_session& s, clock::time_point now) {
  s.announced = true;
  s.joined_at = now;
  bump(ctx_.counters.peers_joined);
  const auto info = info_of(s);
  for (const auto& p : view_.peers()) {
    if (p.name == s.name && !s.name.empty()) {
      ctx_.log.warn("node {}: peer {} joined with the name '{}', which peer {} already has: names are not "
                    "unique in this cluster (Options::name, MESHBUS_NAME)",
                    ctx_.self.id.short_string(), short_id(s.id), s.name, p.id.short_string());
      break;
    }
  }
  if (s.name == ctx_.opts.name && !s.name.empty()) {
    ctx_.log.warn("node {}: peer {} joined with this node's own name '{}': names are not unique in this "
                  "cluster (Options::name, MESHBUS_NAME)",
                  ctx_.self.id.short_string(), short_id(s.id), s.name);
  }
  // Its subscriptions are known before the application hears it joined.
  view_.joined(info);
  update_subscriber(s);
  view_.announce_joined(info);
  ctx_.log.info("node {}: peer {} '{}' joined at {}", ctx_.self.id.short_string(), short_id(s.id), s.name,
                s.endpoint.host);
}

void peer_sessions::on_subscriptions(peer_session& s, wire::subscriptions_msg& m) {
  // The same generation again: the subscriber has no READY for it (lost). Send the
  // one it was given, unchanged: its positions are where "now" was then.
  const bool again = m.generation == s.patterns_generation;
  if (m.generation >= s.patterns_generation) {
    s.patterns_generation = m.generation;
    s.patterns = std::move(m.patterns);
    set_services(s, std::move(m.services));
    update_subscriber(s);
  }
  if (again && s.ready_sent && s.ready_sent->generation >= m.generation) control_.send(s.id, *s.ready_sent);
}

void peer_sessions::on_ready(peer_session& s, const wire::ready_msg& m) {
  s.confirmed_generation = std::max(s.confirmed_generation, m.generation);
}

void peer_sessions::on_xpub_subscription(wire::byte_view msg) {
  wire::node_id_bytes who{};
  std::uint64_t generation = 0;
  if (!wire::decode_sentinel_subscribe(msg, who, generation)) return;  // ordinary (un)subscriptions
  auto it = sessions_.find(who);
  if (it == sessions_.end()) {
    early_ready_[who] = std::max(early_ready_[who], generation);
    return;
  }
  auto& s = it->second;
  s.ready_generation = std::max(s.ready_generation, generation);
  s.ready_seen = true;
  update_subscriber(s);
  send_ready(s);
}

void peer_sessions::send_ready(peer_session& s) {
  // Every topic's position: the subscriber decides what its patterns match (the
  // patterns of the sentinel's generation may not have reached this node yet).
  wire::ready_msg r;
  r.generation = s.ready_generation;
  r.positions = events_.positions();
  if (r.positions.size() > wire::max_positions) r.positions.resize(wire::max_positions);
  control_.send(s.id, r);
  s.ready_sent = std::move(r);
}

void peer_sessions::apply(const discovery::peer_transition& t, clock::time_point now) {
  switch (t.change) {
    case discovery::peer_change::joined:
      open(t, now);
      break;
    case discovery::peer_change::restarted:
      close(t.id, session_end::restarted);
      open(t, now);
      break;
    case discovery::peer_change::moved:
      // Its process started again from its durable log, on new sockets: as if it
      // had expired and come back with its streams.
      ctx_.log.info("node {}: peer {} started again with its epoch (new ports): its streams resume",
                    ctx_.self.id.short_string(), short_id(t.id));
      close(t.id, session_end::expired);
      open(t, now);
      break;
    case discovery::peer_change::suspect: {
      bump(ctx_.counters.peers_suspected);
      auto it = sessions_.find(t.id);
      if (it != sessions_.end() && it->second.announced) {
        view_.set_state(info_of(it->second), PeerState::suspect);
        ctx_.log.info("node {}: peer {} '{}' is suspect", ctx_.self.id.short_string(), short_id(t.id),
                      it->second.name);
      }
      break;
    }
    case discovery::peer_change::alive_again: {
      auto it = sessions_.find(t.id);
      if (it != sessions_.end() && it->second.announced) view_.set_state(info_of(it->second), PeerState::alive);
      break;
    }
    case discovery::peer_change::left:
      // A goodbye leaves data in flight worth reading; an expiry may be a partition
      // or a pause, after which the peer comes back with its streams.
      close(t.id, t.goodbye ? session_end::goodbye : session_end::expired);
      break;
  }
}

peer_session& peer_sessions::open(const discovery::peer_transition& t, clock::time_point now) {
  bool resumed = false;
  auto epoch = t.epoch;
  if (auto a = absent_.find(t.id); a != absent_.end()) {
    if (epoch == 0) {
      // Learned of again by gossip, its epoch not known yet: taken to be the one it
      // had. If it restarted, the first beacon, HELLO or PING with its real epoch is
      // a restart for the table, and its old streams end then.
      epoch = a->second.epoch;
      (void)table_.heard(t.id, epoch, t.endpoint, discovery::peer_source::gossip, now);
    }
    const bool same_epoch = a->second.epoch == epoch;
    absent_.erase(a);
    if (same_epoch) {
      resumed = true;
      bump(ctx_.counters.peers_resumed);
      ctx_.log.info("node {}: peer {} is back: its streams resume", ctx_.self.id.short_string(), short_id(t.id));
    } else {
      events_.session_forgotten(t.id, now);  // restarted meanwhile
    }
  }
  events_.session_opened(t.id, resumed, now);
  auto& s = sessions_[t.id];
  s = peer_session{};
  s.id = t.id;
  s.epoch = epoch;
  s.endpoint = t.endpoint;
  transport_.connect_peer(t.id, t.endpoint.host, t.endpoint.router_port, t.endpoint.pub_port);
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

void peer_sessions::close(const wire::node_id_bytes& id, session_end why) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  const auto now = clock::now();
  const bool draining = why == session_end::goodbye;
  // peers() no longer lists the peer by the time the application hears "left".
  view_.left(info_of(it->second), it->second.announced);
  if (it->second.announced) {
    bump(ctx_.counters.peers_left);
    ctx_.log.info("node {}: peer {} '{}' left", ctx_.self.id.short_string(), short_id(id), it->second.name);
  }
  set_services(it->second, {});
  if (draining) {
    // Its last data may still be in flight: its streams live on until retire_drained().
    draining_.push_back({now + std::max(ctx_.opts.linger, 2 * ctx_.opts.beacon_interval),
                         transport_.pub_endpoint_of(id), id});
    transport_.disconnect_peer(id, true);
  } else {
    transport_.disconnect_peer(id);
  }
  if (why == session_end::expired) {
    auto& a = absent_[id];
    a.epoch = it->second.epoch;
    a.until = now + ctx_.opts.peer_resume;
    a.endpoint = it->second.endpoint;
  }
  sessions_.erase(it);
  events_.session_closed(id, why, now);
}

void peer_sessions::retire_drained(clock::time_point now) {
  for (auto it = draining_.begin(); it != draining_.end();) {
    if (now < it->until) {
      ++it;
      continue;
    }
    transport_.release_sub(it->endpoint);  // a no-op if a new peer took it over
    const auto id = it->id;
    it = draining_.erase(it);
    if (sessions_.count(id) == 0) events_.session_drained(id, now);
  }
}

void peer_sessions::on_interval(clock::time_point now) {
  const auto gossip = gossip_list();
  const auto& self = ctx_.self;
  for (auto& [id, s] : sessions_) {
    if (!s.hello_received) {
      if (now - s.last_hello_sent >= ctx_.opts.beacon_interval) send_hello(s, now);
      continue;
    }
    control_.send(id, wire::ping_msg{self.epoch, transport_.router_port(), transport_.pub_port(), gossip});
    // No READY for our subscriptions yet: it (or they) may have been lost. Until it
    // comes, what this peer publishes to us is held, not delivered; ask again.
    if (sub_generation_ > s.confirmed_generation && now - s.subscriptions_sent >= ctx_.opts.beacon_interval) {
      control_.send(id, wire::subscriptions_msg{sub_generation_, subs_.patterns(), events_.service_names()});
      s.subscriptions_sent = now;
    }
  }
  if (seeds_.any_unanswered([this](const wire::node_id_bytes& id) { return table_.find(id) != nullptr; })) {
    seeds_.send_hellos(wire::encode_control(make_hello()));
  }
}

wire::hello_msg peer_sessions::make_hello() {
  wire::hello_msg h;
  h.node_id = ctx_.self.bytes;
  h.epoch = ctx_.self.epoch;
  h.cluster = ctx_.opts.cluster;
  h.name = ctx_.opts.name;
  h.router_port = transport_.router_port();
  h.pub_port = transport_.pub_port();
  h.metadata.assign(ctx_.opts.metadata.begin(), ctx_.opts.metadata.end());
  h.sub_generation = sub_generation_;
  h.patterns = subs_.patterns();
  h.peers = gossip_list();
  h.services = events_.service_names();
  return h;
}

wire::beacon peer_sessions::beacon(std::uint8_t flags) const {
  wire::beacon b;
  b.flags = flags;
  b.node_id = ctx_.self.bytes;
  b.epoch = ctx_.self.epoch;
  b.cluster_hash = ctx_.self.cluster_hash;
  b.router_port = transport_.router_port();
  b.pub_port = transport_.pub_port();
  return b;
}

void peer_sessions::send_hello(peer_session& s, clock::time_point now) {
  control_.send(s.id, make_hello());
  s.hello_sent = true;
  s.last_hello_sent = now;
  s.subscriptions_sent = now;  // a HELLO carries them too
}

void peer_sessions::say_goodbye() {
  wire::goodbye_msg m{ctx_.self.epoch, events_.positions()};
  if (m.positions.size() > wire::max_positions) m.positions.resize(wire::max_positions);
  for (auto& [id, s] : sessions_) control_.send(id, m);
}

void peer_sessions::merge_gossip(const std::vector<wire::peer_address>& peers, clock::time_point now) {
  for (const auto& p : peers) {
    if (p.id == ctx_.self.bytes || table_.find(p.id) != nullptr || p.router_port == 0 || p.pub_port == 0) continue;
    const discovery::peer_endpoint ep{p.host, p.router_port, p.pub_port};
    if (auto t = table_.heard(p.id, 0, ep, discovery::peer_source::gossip, now)) apply(*t, now);
  }
}

std::vector<wire::peer_address> peer_sessions::gossip_list() const {
  std::vector<wire::peer_address> out;
  for (const auto& [id, s] : sessions_) {
    if (!s.hello_received || out.size() >= wire::max_gossip_peers) continue;
    const auto* e = table_.find(id);
    if (e == nullptr || e->state != discovery::peer_state::alive) continue;
    out.push_back({id, s.endpoint.host, s.endpoint.router_port, s.endpoint.pub_port});
  }
  return out;
}

PeerInfo peer_sessions::info_of(const peer_session& s) const {
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

void peer_sessions::set_services(peer_session& s, std::vector<std::string> services) {
  view_.set_services(s.id, s.services, services);
  s.services = std::move(services);
}

void peer_sessions::update_subscriber(const peer_session& s) {
  if (!s.announced) return;
  std::vector<wire::pattern> compiled;
  std::vector<std::string> visible;
  for (const auto& spec : s.patterns) {
    wire::pattern p;
    std::string err;
    if (wire::pattern::compile(spec.pattern, p, err)) compiled.push_back(std::move(p));
    if (!is_internal_pattern(spec.pattern)) visible.push_back(spec.pattern);
  }
  const bool ready = s.ready_seen && s.ready_generation >= s.patterns_generation;
  events_.subscriber_changed(s.id, s.name, s.patterns, ready, clock::now());
  view_.set_subscriber(s.id, std::move(compiled), ready, std::move(visible));
}

void peer_sessions::subscriptions_changed() {
  ++sub_generation_;
  auto next = wire::encode_sentinel(ctx_.self.bytes, sub_generation_);
  transport_.subscribe(next);
  if (!sentinel_.empty()) transport_.unsubscribe(sentinel_);
  sentinel_ = std::move(next);
  wire::subscriptions_msg m{sub_generation_, subs_.patterns(), events_.service_names()};
  // This node is a member of its own groups too: the publisher side learns it here.
  std::vector<wire::pattern_spec> own_groups;
  for (const auto& spec : m.patterns) {
    if (!spec.group.empty()) own_groups.push_back(spec);
  }
  const auto now = clock::now();
  events_.subscriber_changed(ctx_.self.bytes, ctx_.opts.name, own_groups, true, now);
  for (auto& [id, s] : sessions_) {
    if (!s.hello_sent) continue;
    control_.send(id, m);
    s.subscriptions_sent = now;
  }
}

}  // namespace meshbus::detail
