// ZeroMQ socket ownership and option policy for one node; see zmq_transport.hpp.
#include "lib/transport/zmq_transport.hpp"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "lib/wire/control.hpp"
#include "meshbus/error.hpp"

namespace meshbus::transport {

std::string routing_id_for(const wire::node_id_bytes& id) { return wire::routing_id(id); }

bool node_id_from_routing_id(const zmq::message_t& rid, wire::node_id_bytes& out) {
  return wire::decode_routing_id(wire::byte_view(static_cast<const std::uint8_t*>(rid.data()), rid.size()), out);
}

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
  if (cfg.faults.any()) {
    auto copy_message = [](const zmq::message_t& m) {
      zmq::message_t c;
      c.copy(const_cast<zmq::message_t&>(m));
      return c;
    };
    data_faults_ = std::make_unique<fault_injector<zmq::message_t>>(cfg.faults, copy_message);
    auto directed_plan = cfg.faults;
    directed_plan.seed = cfg.faults.seed * 31 + 7;
    directed_faults_ = std::make_unique<fault_injector<directed_msg>>(
        directed_plan, [copy_message](const directed_msg& m) {
          directed_msg c;
          c.from = m.from;
          c.frame = copy_message(m.frame);
          c.second = copy_message(m.second);
          c.has_second = m.has_second;
          c.peer_ip = m.peer_ip;
          c.bad_identity = m.bad_identity;
          return c;
        });
  }
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

send_status zmq_transport::publish(zmq::message_t& frame) {
  const auto r = xpub_.send(frame, zmq::send_flags::dontwait);
  return r ? send_status::ok : send_status::would_block;
}

send_status zmq_transport::publish_lossy(zmq::message_t& frame) {
  xpub_.set(zmq::sockopt::xpub_nodrop, 0);
  const auto r = xpub_.send(frame, zmq::send_flags::dontwait);
  xpub_.set(zmq::sockopt::xpub_nodrop, 1);
  return r ? send_status::ok : send_status::would_block;
}

bool zmq_transport::receive_subscription(zmq::message_t& msg) {
  return static_cast<bool>(xpub_.recv(msg, zmq::recv_flags::dontwait));
}

void zmq_transport::subscribe(const std::string& prefix) {
  sub_.set(zmq::sockopt::subscribe, prefix);
}
void zmq_transport::unsubscribe(const std::string& prefix) {
  sub_.set(zmq::sockopt::unsubscribe, prefix);
}

bool zmq_transport::receive_data(zmq::message_t& frame) {
  if (!data_faults_) return static_cast<bool>(sub_.recv(frame, zmq::recv_flags::dontwait));
  const auto now = fault_clock::now();
  for (int i = 0; i < 256; ++i) {
    zmq::message_t in;
    if (!sub_.recv(in, zmq::recv_flags::dontwait)) break;
    data_faults_->push(std::move(in), now);
  }
  return data_faults_->pop(frame, now);
}

fault_clock::time_point zmq_transport::next_fault_release() const {
  if (!data_faults_) return fault_clock::time_point::max();
  return std::min(data_faults_->next_release(), directed_faults_->next_release());
}

fault_counters zmq_transport::data_faults() const { return data_faults_ ? data_faults_->counters() : fault_counters{}; }
fault_counters zmq_transport::directed_faults() const {
  return directed_faults_ ? directed_faults_->counters() : fault_counters{};
}

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

send_status zmq_transport::send_to(const wire::node_id_bytes& id, zmq::message_t& msg) {
  auto it = peers_.find(id);
  if (it == peers_.end()) return send_status::no_route;
  const auto r = it->second.dealer.send(msg, zmq::send_flags::dontwait);
  return r ? send_status::ok : send_status::would_block;
}

send_status zmq_transport::send_to(const wire::node_id_bytes& id, zmq::message_t& head, zmq::message_t& body) {
  auto it = peers_.find(id);
  if (it == peers_.end()) return send_status::no_route;
  // The high-water mark is checked on the first frame; the rest of a message always follows.
  if (!it->second.dealer.send(head, zmq::send_flags::dontwait | zmq::send_flags::sndmore)) {
    return send_status::would_block;
  }
  (void)it->second.dealer.send(body, zmq::send_flags::dontwait);
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

send_status zmq_transport::send_to_seed(const std::string& endpoint, zmq::message_t& msg) {
  auto it = seeds_.find(endpoint);
  if (it == seeds_.end()) return send_status::no_route;
  const auto r = it->second.send(msg, zmq::send_flags::dontwait);
  return r ? send_status::ok : send_status::would_block;
}

bool zmq_transport::receive_directed(wire::node_id_bytes& from, zmq::message_t& frame, zmq::message_t& second,
                                     bool& has_second, std::string& peer_ip, bool& bad_identity) {
  directed_msg m;
  if (directed_faults_) {
    const auto now = fault_clock::now();
    for (int i = 0; i < 256; ++i) {
      directed_msg in;
      if (!read_directed(in)) break;
      directed_faults_->push(std::move(in), now);
    }
    if (!directed_faults_->pop(m, now)) return false;
  } else if (!read_directed(m)) {
    return false;
  }
  from = m.from;
  frame = std::move(m.frame);
  second = std::move(m.second);
  has_second = m.has_second;
  peer_ip = std::move(m.peer_ip);
  bad_identity = m.bad_identity;
  return true;
}

bool zmq_transport::read_directed(directed_msg& m) {
  zmq::message_t rid;
  if (!router_.recv(rid, zmq::recv_flags::dontwait)) return false;
  if (!rid.more()) {  // a lone frame cannot come from a ROUTER peer; drop it
    m.bad_identity = true;
    return true;
  }
  (void)router_.recv(m.frame, zmq::recv_flags::dontwait);
  if (m.frame.more()) {
    (void)router_.recv(m.second, zmq::recv_flags::dontwait);
    m.has_second = true;
  }
  bool more = m.has_second && m.second.more();
  while (more) {  // more frames are not part of the protocol: drain and refuse
    zmq::message_t extra;
    (void)router_.recv(extra, zmq::recv_flags::dontwait);
    more = extra.more();
    m.bad_identity = true;
  }
  if (!node_id_from_routing_id(rid, m.from)) m.bad_identity = true;
  const char* ip = nullptr;
  try {
    ip = m.frame.gets("Peer-Address");
  } catch (const zmq::error_t&) {
    ip = nullptr;
  }
  m.peer_ip = ip != nullptr ? ip : "";
  return true;
}

}  // namespace meshbus::transport
