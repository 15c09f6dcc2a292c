// Seeds: HELLO to each until it answers; names resolved off the I/O thread; state
// changes logged once each (see seed_list.hpp). The resolver thread sleeps until it
// is stopped or a beacon interval passes, and exits once every seed is resolved.
#include "lib/node/seed_list.hpp"

#include <algorithm>

#include "discovery/interfaces.hpp"
#include "lib/node/log.hpp"

namespace meshbus::detail {
namespace {

std::string label(const discovery::seed_address& a) { return fmt::format("{}:{}", a.host, a.port); }

}  // namespace

seed_list::seed_list(node_context& ctx, transport::transport& transport,
                     std::vector<discovery::seed_address> seeds)
    : ctx_(ctx), transport_(transport) {
  for (auto& a : seeds) {
    seed s;
    s.endpoint = a.endpoint();
    s.address = std::move(a);
    seeds_.push_back(std::move(s));
  }
  resolved_.assign(seeds_.size(), 0);
  if (!seeds_.empty()) resolver_ = std::thread([this] { resolve_all(); });
}

seed_list::~seed_list() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  resolver_cv_.notify_all();
  if (resolver_.joinable()) resolver_.join();
}

void seed_list::resolve_all() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    bool all = true;
    for (std::size_t i = 0; i < seeds_.size(); ++i) {
      if (resolved_[i] != 0) continue;
      const auto host = seeds_[i].address.host;
      lock.unlock();
      std::uint32_t ip = 0;
      const bool ok = discovery::resolve_ipv4(host, ip);
      lock.lock();
      if (stopping_) return;
      if (ok) {
        resolved_[i] = ip;
        if (seeds_[i].state == SeedState::resolving || seeds_[i].state == SeedState::unresolvable) {
          set_state(seeds_[i], SeedState::unreachable);
        }
      } else {
        all = false;
        set_state(seeds_[i], SeedState::unresolvable);
      }
    }
    if (all) return;
    resolver_cv_.wait_for(lock, ctx_.opts.beacon_interval, [this] { return stopping_; });
  }
}

void seed_list::set_state(seed& s, SeedState state) {
  if (s.state == state) return;
  s.state = state;
  const auto& node = ctx_.self.id;
  switch (state) {
    case SeedState::resolving: break;
    case SeedState::unresolvable:
      logger().warn("node {}: seed {} does not resolve to an IPv4 address; trying again every beacon interval",
                    node.short_string(), label(s.address));
      break;
    case SeedState::unreachable:
      logger().info("node {}: seed {} resolved; waiting for its HELLO", node.short_string(), label(s.address));
      break;
    case SeedState::answered:
      logger().info("node {}: seed {} answered", node.short_string(), label(s.address));
      break;
  }
}

bool seed_list::any_unanswered(const std::function<bool(const wire::node_id_bytes&)>& known) {
  std::lock_guard lock(mu_);
  bool any = false;
  for (auto& s : seeds_) {
    if (s.identified && known(*s.identified)) continue;
    if (s.identified) {
      // The peer it turned out to be is gone: it is a seed to call again.
      s.identified.reset();
      set_state(s, SeedState::unreachable);
    }
    any = true;
  }
  return any;
}

void seed_list::send_hellos(const wire::bytes& hello) {
  std::lock_guard lock(mu_);
  for (auto& s : seeds_) {
    if (s.identified) continue;
    transport_.open_seed(s.endpoint);
    transport::frame msg(hello.data(), hello.size());
    if (transport_.send_to_seed(s.endpoint, msg) != transport::send_status::ok && s.state == SeedState::unreachable &&
        !s.warned_unreachable) {
      // Not connected yet (ZMQ_IMMEDIATE): the next interval tries again.
      s.warned_unreachable = true;
      logger().warn("node {}: seed {} is not reachable (no connection to {}); trying again every beacon interval",
                    ctx_.self.id.short_string(), label(s.address), s.endpoint);
    }
  }
}

void seed_list::answered(const wire::node_id_bytes& from, const std::string& ip, std::uint16_t router_port) {
  std::uint32_t ip4 = 0;
  if (seeds_.empty() || !discovery::parse_ipv4(ip, ip4)) return;
  std::lock_guard lock(mu_);
  for (std::size_t i = 0; i < seeds_.size(); ++i) {
    auto& s = seeds_[i];
    if (s.identified || resolved_[i] != ip4 || s.address.port != router_port) continue;
    s.identified = from;
    s.warned_unreachable = false;
    set_state(s, SeedState::answered);
    transport_.close_seed(s.endpoint);
  }
}

std::vector<SeedInfo> seed_list::state() const {
  std::lock_guard lock(mu_);
  std::vector<SeedInfo> out;
  for (const auto& s : seeds_) {
    SeedInfo info;
    info.address = label(s.address);
    info.state = s.state;
    if (s.identified) info.node = to_node_id(*s.identified);
    out.push_back(std::move(info));
  }
  return out;
}

}  // namespace meshbus::detail
