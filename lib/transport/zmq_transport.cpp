// ZeroMQ socket ownership and option policy for one node; see zmq_transport.hpp.
// Frames move between zmq::message_t and transport::frame without a copy.
#include "lib/transport/zmq_transport.hpp"

#include <algorithm>
#include <cstring>
#include <array>

#include <fmt/format.h>

#include "lib/transport/zmq_frame.hpp"
#include "lib/wire/control.hpp"
#include "meshbus/error.hpp"

namespace meshbus::transport {

std::string routing_id_for(const wire::node_id_bytes& id) { return wire::routing_id(id); }

namespace {

bool node_id_from_routing_id(const zmq::message_t& rid, wire::node_id_bytes& out) {
  return wire::decode_routing_id(wire::byte_view(static_cast<const std::uint8_t*>(rid.data()), rid.size()), out);
}

/// Sends `f` (taking its message when ZeroMQ takes it), without blocking.
bool send_frame(zmq::socket_t& s, frame& f, zmq::send_flags flags = zmq::send_flags::dontwait) {
  auto m = to_message(std::move(f));
  if (s.send(m, flags)) return true;
  f = to_frame(std::move(m));  // refused: the caller keeps it
  return false;
}

bool receive_frame(zmq::socket_t& s, frame& out) {
  zmq::message_t m;
  if (!s.recv(m, zmq::recv_flags::dontwait)) return false;
  out = to_frame(std::move(m));
  return true;
}

}  // namespace

zmq_transport::zmq_transport(const transport_config& cfg)
    : cfg_(cfg),
      ctx_(1),
      xpub_(ctx_, zmq::socket_type::xpub),
      sub_(ctx_, zmq::socket_type::sub),
      router_(ctx_, zmq::socket_type::router) {
  ctx_.set(zmq::ctxopt::blocky, 0);
  xpub_.set(zmq::sockopt::sndhwm, cfg.data_hwm);
  xpub_.set(zmq::sockopt::xpub_nodrop, 1);
  xpub_.set(zmq::sockopt::maxmsgsize, std::int64_t{1024});  // inbound: subscriptions only
  xpub_.set(zmq::sockopt::linger, cfg.linger_ms);
  sub_.set(zmq::sockopt::rcvhwm, cfg.data_hwm);
  sub_.set(zmq::sockopt::maxmsgsize, cfg.max_message_bytes);
  sub_.set(zmq::sockopt::linger, 0);
  router_.set(zmq::sockopt::rcvhwm, cfg.control_hwm);
  router_.set(zmq::sockopt::maxmsgsize, cfg.max_message_bytes);
  router_.set(zmq::sockopt::router_handover, 1);
  router_.set(zmq::sockopt::linger, 0);
  router_port_ = bind_socket(router_, cfg.router_port, "ROUTER");
  pub_port_ = bind_socket(xpub_, cfg.pub_port, "PUB");
}

zmq_transport::~zmq_transport() = default;

std::uint16_t zmq_transport::bind_socket(zmq::socket_t& s, std::uint16_t port, const char* role) {
  const auto endpoint = port == 0 ? fmt::format("tcp://{}:*", cfg_.bind_address)
                                  : fmt::format("tcp://{}:{}", cfg_.bind_address, port);
  try {
    s.bind(endpoint);
  } catch (const zmq::error_t& e) {
    if (e.num() == EADDRINUSE) {
      throw error(errc::address_in_use,
                  fmt::format("cannot bind the {} socket on {}: the port is in use; choose another "
                              "port or 0 for an ephemeral one",
                              role, endpoint));
    }
    throw error(errc::network,
                fmt::format("cannot bind the {} socket on {}: {}", role, endpoint, e.what()));
  }
  const auto last = s.get(zmq::sockopt::last_endpoint);
  const auto colon = last.rfind(':');
  return static_cast<std::uint16_t>(std::stoul(last.substr(colon + 1)));
}

zmq::socket_t zmq_transport::make_dealer(const std::string& endpoint, bool immediate) {
  zmq::socket_t d(ctx_, zmq::socket_type::dealer);
  // Seeds: refuse to queue while not connected, so retries do not pile up.
  d.set(zmq::sockopt::immediate, immediate ? 1 : 0);
  d.set(zmq::sockopt::routing_id, routing_id_for(cfg_.self));
  d.set(zmq::sockopt::sndhwm, cfg_.control_hwm);
  // Control messages left at close (a goodbye to a peer that is stopping too) are
  // not worth holding the process for the whole data linger.
  d.set(zmq::sockopt::linger, std::min(cfg_.linger_ms, 250));
  d.set(zmq::sockopt::rcvhwm, 1);  // nothing is ever sent back on this socket
  d.connect(endpoint);
  return d;
}

readiness zmq_transport::wait(std::chrono::milliseconds timeout, bool want_data, std::span<const int> fds,
                               std::span<bool> fd_ready) {
  constexpr std::size_t own = 3;
  std::array<zmq::pollitem_t, own + max_wait_fds> items{{
      {sub_.handle(), 0, static_cast<short>(want_data ? ZMQ_POLLIN : 0), 0},
      {router_.handle(), 0, ZMQ_POLLIN, 0},
      {xpub_.handle(), 0, ZMQ_POLLIN, 0},
  }};
  const auto extra = std::min(fds.size(), max_wait_fds);
  for (std::size_t i = 0; i < extra; ++i) items[own + i] = {nullptr, fds[i], ZMQ_POLLIN, 0};
  readiness r;
  try {
    zmq::poll(items.data(), own + extra, timeout);
  } catch (const zmq::error_t& e) {
    if (e.num() != EINTR) throw;
    return r;
  }
  r.data = (items[0].revents & ZMQ_POLLIN) != 0;
  r.directed = (items[1].revents & ZMQ_POLLIN) != 0;
  r.subscriptions = (items[2].revents & ZMQ_POLLIN) != 0;
  for (std::size_t i = 0; i < extra && i < fd_ready.size(); ++i) {
    fd_ready[i] = (items[own + i].revents & ZMQ_POLLIN) != 0;
  }
  return r;
}

send_status zmq_transport::publish(frame& f) {
  return send_frame(xpub_, f) ? send_status::ok : send_status::would_block;
}

send_status zmq_transport::publish_lossy(frame& f) {
  xpub_.set(zmq::sockopt::xpub_nodrop, 0);
  const bool sent = send_frame(xpub_, f);
  xpub_.set(zmq::sockopt::xpub_nodrop, 1);
  return sent ? send_status::ok : send_status::would_block;
}

bool zmq_transport::receive_subscription(frame& out) { return receive_frame(xpub_, out); }

void zmq_transport::subscribe(const std::string& prefix) {
  sub_.set(zmq::sockopt::subscribe, prefix);
}
void zmq_transport::unsubscribe(const std::string& prefix) {
  sub_.set(zmq::sockopt::unsubscribe, prefix);
}

bool zmq_transport::receive_data(frame& out) { return receive_frame(sub_, out); }

void zmq_transport::connect_peer(const wire::node_id_bytes& id, const std::string& host,
                                 std::uint16_t router_port, std::uint16_t pub_port) {
  if (peers_.count(id) != 0) return;
  peer_link link{make_dealer(fmt::format("tcp://{}:{}", host, router_port), false),
                 fmt::format("tcp://{}:{}", host, pub_port)};
  // One SUB connection per endpoint: reuse a retained or another peer's connection.
  bool connected = retained_subs_.erase(link.pub_endpoint) != 0;
  for (auto& [other, l] : peers_) {
    if (l.pub_endpoint == link.pub_endpoint) {
      l.pub_endpoint.clear();  // the newcomer owns it now
      connected = true;
    }
  }
  if (!connected) sub_.connect(link.pub_endpoint);
  peers_.emplace(id, std::move(link));
}

void zmq_transport::disconnect_peer(const wire::node_id_bytes& id, bool keep_sub) {
  auto it = peers_.find(id);
  if (it == peers_.end()) return;
  if (!it->second.pub_endpoint.empty()) {
    if (keep_sub) {
      retained_subs_.insert(it->second.pub_endpoint);
    } else {
      disconnect_sub(it->second.pub_endpoint);
    }
  }
  it->second.dealer.set(zmq::sockopt::linger, 0);
  peers_.erase(it);
}

std::string zmq_transport::pub_endpoint_of(const wire::node_id_bytes& id) const {
  auto it = peers_.find(id);
  return it == peers_.end() ? std::string() : it->second.pub_endpoint;
}

void zmq_transport::release_sub(const std::string& pub_endpoint) {
  if (retained_subs_.erase(pub_endpoint) != 0) disconnect_sub(pub_endpoint);
}

void zmq_transport::disconnect_sub(const std::string& pub_endpoint) {
  try {
    sub_.disconnect(pub_endpoint);
  } catch (const zmq::error_t&) {
    // Not connected (yet): nothing to undo.
  }
}

send_status zmq_transport::send_to(const wire::node_id_bytes& id, frame& msg) {
  auto it = peers_.find(id);
  if (it == peers_.end()) return send_status::no_route;
  return send_frame(it->second.dealer, msg) ? send_status::ok : send_status::would_block;
}

send_status zmq_transport::send_to(const wire::node_id_bytes& id, frame& head, frame& body) {
  auto it = peers_.find(id);
  if (it == peers_.end()) return send_status::no_route;
  // The high-water mark is checked on the first frame; the rest of a message always follows.
  if (!send_frame(it->second.dealer, head, zmq::send_flags::dontwait | zmq::send_flags::sndmore)) {
    return send_status::would_block;
  }
  (void)send_frame(it->second.dealer, body);
  return send_status::ok;
}

void zmq_transport::open_seed(const std::string& endpoint) {
  if (seeds_.count(endpoint) != 0) return;
  seeds_.emplace(endpoint, make_dealer(endpoint, true));
}

void zmq_transport::close_seed(const std::string& endpoint) {
  auto it = seeds_.find(endpoint);
  if (it == seeds_.end()) return;
  it->second.set(zmq::sockopt::linger, 0);
  seeds_.erase(it);
}

send_status zmq_transport::send_to_seed(const std::string& endpoint, frame& msg) {
  auto it = seeds_.find(endpoint);
  if (it == seeds_.end()) return send_status::no_route;
  return send_frame(it->second, msg) ? send_status::ok : send_status::would_block;
}

bool zmq_transport::receive_directed(directed_message& m) {
  m = directed_message{};
  zmq::message_t rid;
  if (!router_.recv(rid, zmq::recv_flags::dontwait)) return false;
  if (!rid.more()) {  // a lone frame cannot come from a ROUTER peer; drop it
    m.bad_identity = true;
    return true;
  }
  zmq::message_t first;
  zmq::message_t second;
  (void)router_.recv(first, zmq::recv_flags::dontwait);
  if (first.more()) {
    (void)router_.recv(second, zmq::recv_flags::dontwait);
    m.has_second = true;
  }
  bool more = m.has_second && second.more();
  while (more) {  // more frames are not part of the protocol: drain and refuse
    zmq::message_t extra;
    (void)router_.recv(extra, zmq::recv_flags::dontwait);
    more = extra.more();
    m.bad_identity = true;
  }
  if (!node_id_from_routing_id(rid, m.from)) m.bad_identity = true;
  const char* ip = nullptr;
  try {
    ip = first.gets("Peer-Address");
  } catch (const zmq::error_t&) {
    ip = nullptr;
  }
  m.peer_ip = ip != nullptr ? ip : "";
  m.first = to_frame(std::move(first));
  m.second = to_frame(std::move(second));
  return true;
}

}  // namespace meshbus::transport
