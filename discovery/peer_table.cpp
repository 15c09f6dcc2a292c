// Peer liveness state machine; see peer_table.hpp.
#include "discovery/peer_table.hpp"

#include <algorithm>

namespace meshbus::discovery {

const char* to_string(peer_state s) noexcept {
  switch (s) {
    case peer_state::alive: return "alive";
    case peer_state::suspect: return "suspect";
    case peer_state::gone: return "gone";
  }
  return "?";
}

const char* to_string(peer_change c) noexcept {
  switch (c) {
    case peer_change::joined: return "joined";
    case peer_change::suspect: return "suspect";
    case peer_change::alive_again: return "alive again";
    case peer_change::restarted: return "restarted";
    case peer_change::moved: return "moved";
    case peer_change::left: return "left";
  }
  return "?";
}

std::optional<peer_transition> peer_table::heard(const wire::node_id_bytes& id, std::uint64_t epoch,
                                                 const peer_endpoint& endpoint, peer_source source,
                                                 clock::time_point now) {
  auto it = peers_.find(id);
  if (it == peers_.end()) {
    if (auto t = tombstones_.find(id); t != tombstones_.end() && now - t->second.at < timing_.expiry) {
      if (source == peer_source::gossip) return std::nullopt;
      if (t->second.goodbye && (epoch == 0 || epoch == t->second.epoch)) return std::nullopt;
    }
    tombstones_.erase(id);
    peer_entry e;
    e.id = id;
    e.epoch = epoch;
    e.endpoint = endpoint;
    e.source = source;
    e.first_seen = now;
    e.last_heard = now;
    peers_.emplace(id, e);
    return peer_transition{peer_change::joined, id, endpoint, epoch};
  }
  auto& e = it->second;
  e.last_heard = now;
  if (epoch != 0 && e.epoch != 0 && epoch != e.epoch) {
    e.epoch = epoch;
    e.endpoint = endpoint;
    e.state = peer_state::alive;
    e.first_seen = now;
    return peer_transition{peer_change::restarted, id, endpoint, epoch};
  }
  if (e.epoch == 0) e.epoch = epoch;
  // Ports are the process's own (the host may differ by interface): other ports with
  // the same epoch are a new process of the same node, continuing from its durable log.
  if (source != peer_source::gossip && epoch != 0 && endpoint.router_port != 0 &&
      (endpoint.router_port != e.endpoint.router_port || endpoint.pub_port != e.endpoint.pub_port)) {
    e.endpoint = endpoint;
    e.state = peer_state::alive;
    e.first_seen = now;
    return peer_transition{peer_change::moved, id, endpoint, e.epoch};
  }
  if (e.state == peer_state::suspect) {
    e.state = peer_state::alive;
    return peer_transition{peer_change::alive_again, id, e.endpoint, e.epoch};
  }
  return std::nullopt;
}

std::optional<peer_transition> peer_table::goodbye(const wire::node_id_bytes& id,
                                                   clock::time_point now) {
  auto it = peers_.find(id);
  if (it == peers_.end()) return std::nullopt;
  peer_transition t{peer_change::left, id, it->second.endpoint, it->second.epoch, true};
  tombstones_[id] = tombstone{now, it->second.epoch, true};
  peers_.erase(it);
  return t;
}

void peer_table::credit(clock::duration gap, clock::time_point now) {
  for (auto& [id, e] : peers_) e.last_heard = std::min(now, e.last_heard + gap);
}

void peer_table::tick(clock::time_point now, std::vector<peer_transition>& out) {
  for (auto it = peers_.begin(); it != peers_.end();) {
    auto& e = it->second;
    const auto silent = now - e.last_heard;
    if (silent >= timing_.expiry) {
      out.push_back({peer_change::left, e.id, e.endpoint, e.epoch});
      tombstones_[e.id] = tombstone{now, e.epoch, false};
      it = peers_.erase(it);
      continue;
    }
    if (e.state == peer_state::alive && silent >= timing_.suspect_after) {
      e.state = peer_state::suspect;
      out.push_back({peer_change::suspect, e.id, e.endpoint, e.epoch});
    }
    ++it;
  }
  for (auto it = tombstones_.begin(); it != tombstones_.end();) {
    it = now - it->second.at >= timing_.expiry ? tombstones_.erase(it) : std::next(it);
  }
}

clock::time_point peer_table::next_due() const {
  auto next = clock::time_point::max();
  for (const auto& [id, e] : peers_) {
    const auto after = e.state == peer_state::alive ? timing_.suspect_after : timing_.expiry;
    next = std::min(next, e.last_heard + after);
  }
  for (const auto& [id, t] : tombstones_) next = std::min(next, t.at + timing_.expiry);
  return next;
}

const peer_entry* peer_table::find(const wire::node_id_bytes& id) const {
  auto it = peers_.find(id);
  return it == peers_.end() ? nullptr : &it->second;
}

bool peer_table::recently_gone(const wire::node_id_bytes& id, clock::time_point now) const {
  auto it = tombstones_.find(id);
  return it != tombstones_.end() && now - it->second.at < timing_.expiry;
}

std::size_t peer_table::alive_count() const noexcept {
  std::size_t n = 0;
  for (const auto& [id, e] : peers_) n += e.state == peer_state::alive ? 1 : 0;
  return n;
}

}  // namespace meshbus::discovery
