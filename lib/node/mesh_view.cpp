// The mesh as API threads see it; see mesh_view.hpp. Writers notify the condition
// variable after every change that a wait may be looking for.
#include "lib/node/mesh_view.hpp"

#include <algorithm>

namespace meshbus::detail {

void mesh_view::joined(const PeerInfo& info) {
  std::lock_guard lock(mu_);
  peers_[info.id.bytes] = info;
}

void mesh_view::announce_joined(const PeerInfo& info) { announce(PeerEvent::Kind::joined, info); }

void mesh_view::left(const PeerInfo& info, bool announced) {
  {
    std::lock_guard lock(mu_);
    peers_.erase(info.id.bytes);
    subscribers_.erase(info.id.bytes);
  }
  if (announced) {
    announce(PeerEvent::Kind::left, info);
  } else {
    cv_.notify_all();
  }
}

void mesh_view::set_state(const PeerInfo& info, PeerState state) {
  {
    std::lock_guard lock(mu_);
    if (auto v = peers_.find(info.id.bytes); v != peers_.end()) v->second.state = state;
  }
  auto shown = info;
  shown.state = state;
  announce(state == PeerState::suspect ? PeerEvent::Kind::suspect : PeerEvent::Kind::alive_again, shown);
}

void mesh_view::heard(const wire::node_id_bytes& id, clock::time_point now) {
  std::lock_guard lock(mu_);
  if (auto v = peers_.find(id); v != peers_.end()) v->second.last_heard = now;
}

void mesh_view::set_subscriber(const wire::node_id_bytes& id, std::vector<wire::pattern> patterns, bool ready,
                               std::vector<std::string> visible) {
  {
    std::lock_guard lock(mu_);
    subscribers_[id] = subscriber{std::move(patterns), ready};
    if (auto pv = peers_.find(id); pv != peers_.end()) pv->second.subscriptions = std::move(visible);
  }
  cv_.notify_all();
}

void mesh_view::set_services(const wire::node_id_bytes& id, const std::vector<std::string>& before,
                             const std::vector<std::string>& now) {
  std::lock_guard lock(mu_);
  for (const auto& name : before) {
    if (auto it = services_.find(name); it != services_.end()) {
      it->second.erase(id);
      if (it->second.empty()) services_.erase(it);
    }
  }
  for (const auto& name : now) services_[name].insert(id);
}

void mesh_view::clear() {
  {
    std::lock_guard lock(mu_);
    peers_.clear();
    subscribers_.clear();
  }
  cv_.notify_all();
}

void mesh_view::set_peer_handler(PeerHandler h) {
  std::lock_guard lock(handler_mu_);
  peer_handler_ = std::move(h);
}

void mesh_view::announce(PeerEvent::Kind kind, const PeerInfo& info) {
  handlers_.post([this, ev = PeerEvent{kind, info}] {
    PeerHandler h;
    {
      std::lock_guard lock(handler_mu_);
      h = peer_handler_;
    }
    if (h) h(ev);
  });
  cv_.notify_all();
}

std::vector<PeerInfo> mesh_view::peers() const {
  std::lock_guard lock(mu_);
  std::vector<PeerInfo> out;
  out.reserve(peers_.size());
  for (const auto& [id, p] : peers_) out.push_back(p);
  return out;
}

std::vector<NodeId> mesh_view::instances(std::string_view service) const {
  std::vector<NodeId> out;
  std::lock_guard lock(mu_);
  if (const auto it = services_.find(service); it != services_.end()) {
    for (const auto& peer : it->second) {
      const auto p = peers_.find(peer);
      if (p != peers_.end() && p->second.state == PeerState::alive) out.push_back(to_node_id(peer));
    }
  }
  return out;
}

void mesh_view::count(std::size_t& alive, std::size_t& suspect) const {
  std::lock_guard lock(mu_);
  for (const auto& [id, p] : peers_) {
    if (p.state == PeerState::alive) {
      ++alive;
    } else {
      ++suspect;
    }
  }
}

bool mesh_view::wait(const std::function<bool()>& satisfied, clock::time_point deadline) {
  if (ctx_.loop.drives_loop_here()) {
    // Nobody else runs the loop: run it here while waiting.
    for (;;) {
      {
        std::lock_guard lock(mu_);
        if (satisfied()) return true;
      }
      if (clock::now() >= deadline) return false;
      ctx_.loop.turn(std::chrono::milliseconds(5));
    }
  }
  std::unique_lock lock(mu_);
  return cv_.wait_until(lock, deadline, satisfied);
}

bool mesh_view::wait_for_peers(std::size_t count, std::chrono::milliseconds timeout) {
  return wait([&] { return peers_.size() >= count; }, clock::now() + timeout);
}

bool mesh_view::wait_for_subscribers(std::string_view topic, std::size_t count, std::chrono::milliseconds timeout) {
  auto satisfied = [&] {
    std::size_t n = 0;
    for (const auto& [id, v] : subscribers_) {
      if (!v.ready) continue;
      if (std::any_of(v.patterns.begin(), v.patterns.end(), [&](const wire::pattern& p) { return p.matches(topic); })) {
        ++n;
      }
    }
    return n >= count;
  };
  return wait(satisfied, clock::now() + timeout);
}

}  // namespace meshbus::detail
