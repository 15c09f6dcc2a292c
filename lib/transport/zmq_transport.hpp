// The ZeroMQ transport: the sockets of one node, owned and used by its I/O thread.
//
//   XPUB   bound; carries data frames to subscribers. XPUB_NODROP is on, so a full
//          subscriber queue is an EAGAIN we count and retry, never a silent drop.
//          Its inbound side reports subscriptions (used for readiness sentinels).
//   SUB    connected to every peer's XPUB; receives data frames.
//   ROUTER bound; receives every message addressed to this node.
//   DEALER one per peer (and per unidentified seed), connected to that peer's
//          ROUTER, with routing id 0x01 + node id; sends messages addressed to it.
//
// Sends never block (ZMQ_DONTWAIT); receives never block. Every inbound socket has
// ZMQ_MAXMSGSIZE, so oversized input is refused by ZeroMQ before it is buffered.
// Only lib/transport includes this header; the node sees `transport`.
#pragma once

#include <map>
#include <set>
#include <string>

#include <zmq.hpp>

#include "lib/transport/transport.hpp"

namespace meshbus::transport {

/// Routing id every DEALER of this node uses: 0x01 then the 16-byte node id.
std::string routing_id_for(const wire::node_id_bytes& id);

class zmq_transport final : public transport {
 public:
  /// Creates and binds the sockets; throws meshbus::error (address_in_use, network).
  explicit zmq_transport(const transport_config& cfg);
  ~zmq_transport() override;

  std::uint16_t router_port() const noexcept override { return router_port_; }
  std::uint16_t pub_port() const noexcept override { return pub_port_; }
  readiness wait(std::chrono::milliseconds timeout, bool want_data, std::span<const int> fds,
                 std::span<bool> fd_ready) override;

  send_status publish(frame& f) override;
  send_status publish_lossy(frame& f) override;
  bool receive_subscription(frame& out) override;
  void subscribe(const std::string& prefix) override;
  void unsubscribe(const std::string& prefix) override;
  bool receive_data(frame& out) override;

  void connect_peer(const wire::node_id_bytes& id, const std::string& host, std::uint16_t router_port,
                    std::uint16_t pub_port) override;
  void disconnect_peer(const wire::node_id_bytes& id, bool keep_sub = false) override;
  std::string pub_endpoint_of(const wire::node_id_bytes& id) const override;
  void release_sub(const std::string& pub_endpoint) override;
  send_status send_to(const wire::node_id_bytes& id, frame& msg) override;
  send_status send_to(const wire::node_id_bytes& id, frame& head, frame& body) override;

  void open_seed(const std::string& endpoint) override;
  void close_seed(const std::string& endpoint) override;
  send_status send_to_seed(const std::string& endpoint, frame& msg) override;

  bool receive_directed(directed_message& out) override;

 private:
  struct peer_link {
    zmq::socket_t dealer;
    std::string pub_endpoint;
  };
  zmq::socket_t make_dealer(const std::string& endpoint, bool immediate);
  void disconnect_sub(const std::string& pub_endpoint);
  std::uint16_t bind_socket(zmq::socket_t& s, std::uint16_t port, const char* role);

  transport_config cfg_;
  zmq::context_t ctx_;
  zmq::socket_t xpub_;
  zmq::socket_t sub_;
  zmq::socket_t router_;
  std::uint16_t router_port_ = 0;
  std::uint16_t pub_port_ = 0;
  std::map<wire::node_id_bytes, peer_link> peers_;
  std::map<std::string, zmq::socket_t> seeds_;
  std::set<std::string> retained_subs_;
};

}  // namespace meshbus::transport
