// Seeds: HELLO to each until it answers; names resolved off the I/O thread; state
// changes logged once each (see seed_list.hpp). The resolver thread is detached and
// owns its share of the results: it sleeps a beacon interval between rounds and
// exits once every name resolved or the node stopped.
#include "lib/node/seed_list.hpp"

#include <algorithm>
#include <condition_variable>
#include <thread>

#include "discovery/interfaces.hpp"
#include "lib/node/log.hpp"

namespace meshbus::detail {
namespace {

std::string label(const discovery::seed_address& a) { return fmt::format("{}:{}", a.host, a.port); }

}  // namespace

/// What the resolver thread and the seed list share.
struct seed_list::resolutions {
  enum class outcome : std::uint8_t { pending, resolved, failed };
  std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;
  std::vector<std::string> hosts;
  std::vector<std::uint32_t> ips;  ///< 0 while not resolved
  std::vector<outcome> outcomes;

  void run(std::chrono::milliseconds retry) {
    std::unique_lock lock(mu);
    while (!stopping) {
      bool all = true;
      for (std::size_t i = 0; i < hosts.size(); ++i) {
        if (ips[i] != 0) continue;
        const auto host = hosts[i];
        lock.unlock();
        std::uint32_t ip = 0;
        const bool ok = discovery::resolve_ipv4(host, ip);
        lock.lock();
        ips[i] = ok ? ip : 0;
        outcomes[i] = ok ? outcome::resolved : outcome::failed;
        all = all && ok;
      }
      if (all) return;
      cv.wait_for(lock, retry, [this] { return stopping; });
    }
  }
};

seed_list::seed_list(node_context& ctx, transport::transport& transport, std::vector<discovery::seed_address> seeds)
    : ctx_(ctx), transport_(transport) {
  if (seeds.empty()) return;
  resolver_ = std::make_shared<resolutions>();
  for (auto& a : seeds) {
    seed s;
    s.endpoint = a.endpoint();
    resolver_->hosts.push_back(a.host);
    s.address = std::move(a);
    seeds_.push_back(std::move(s));
  }
  resolver_->ips.assign(seeds_.size(), 0);
  resolver_->outcomes.assign(seeds_.size(), resolutions::outcome::pending);
  std::thread([r = resolver_, retry = ctx.opts.beacon_interval] { r->run(retry); }).detach();
}

seed_list::~seed_list() { stop(); }

void seed_list::stop() {
  if (!resolver_) return;
  {
    std::lock_guard lock(resolver_->mu);
    resolver_->stopping = true;
  }
  resolver_->cv.notify_all();
}

void seed_list::collect() {
  if (!resolver_) return;
  std::scoped_lock lock(mu_, resolver_->mu);
  for (std::size_t i = 0; i < seeds_.size(); ++i) {
    auto& s = seeds_[i];
    switch (resolver_->outcomes[i]) {
      case resolutions::outcome::pending: break;
      case resolutions::outcome::resolved:
        s.ip = resolver_->ips[i];
        if (s.state == SeedState::resolving || s.state == SeedState::unresolvable) {
          set_state(s, SeedState::unreachable);
        }
        break;
      case resolutions::outcome::failed: set_state(s, SeedState::unresolvable); break;
    }
  }
}

void seed_list::set_state(seed& s, SeedState state) {
  if (s.state == state) return;
  s.state = state;
  const auto node = ctx_.self.id.short_string();
  switch (state) {
    case SeedState::resolving: break;
    case SeedState::unresolvable:
      ctx_.log.warn("node {}: seed {} does not resolve to an IPv4 address; trying again every beacon interval",
                    node, label(s.address));
      break;
    case SeedState::unreachable:
      ctx_.log.info("node {}: seed {} resolved; waiting for its HELLO", node, label(s.address));
      break;
    case SeedState::answered:
      ctx_.log.info("node {}: seed {} answered", node, label(s.address));
      break;
  }
}

bool seed_list::any_unanswered(const std::function<bool(const wire::node_id_bytes&)>& known) {
  collect();
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
      ctx_.log.warn("node {}: seed {} is not reachable (no connection to {}); trying again every beacon interval",
                    ctx_.self.id.short_string(), label(s.address), s.endpoint);
    }
  }
}

void seed_list::answered(const wire::node_id_bytes& from, const std::string& ip, std::uint16_t router_port) {
  std::uint32_t ip4 = 0;
  if (seeds_.empty() || !discovery::parse_ipv4(ip, ip4)) return;
  collect();
  std::lock_guard lock(mu_);
  for (auto& s : seeds_) {
    if (s.identified || s.ip != ip4 || s.address.port != router_port) continue;
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
