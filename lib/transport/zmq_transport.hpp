// The ZeroMQ sockets of one node, owned and used by the node's I/O thread only.
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
// This layer knows nothing about message contents.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <memory>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "lib/transport/fault_injector.hpp"
#include "lib/wire/common.hpp"

namespace meshbus::transport {

enum class send_status : std::uint8_t { ok, would_block, no_route };

struct transport_config {
  wire::node_id_bytes self{};
  std::string bind_address = "127.0.0.1";
  std::uint16_t router_port = 0;  ///< 0: ephemeral
  std::uint16_t pub_port = 0;     ///< 0: ephemeral
  std::int64_t max_message_bytes = 16 << 20;
  int data_hwm = 10000;     ///< messages per subscriber queue (XPUB, SUB)
  int control_hwm = 10000;  ///< messages per peer queue (DEALER, ROUTER)
  int linger_ms = 2000;
  /// Test only: faults applied to everything this node receives (data and directed).
  fault_plan faults;
};

/// Routing id every DEALER of this node uses: 0x01 then the 16-byte node id.
std::string routing_id_for(const wire::node_id_bytes& id);
bool node_id_from_routing_id(const zmq::message_t& rid, wire::node_id_bytes& out);

class zmq_transport {
 public:
  /// Creates and binds the sockets; throws meshbus::error (address_in_use, network).
  explicit zmq_transport(const transport_config& cfg);
  ~zmq_transport();
  zmq_transport(const zmq_transport&) = delete;
  zmq_transport& operator=(const zmq_transport&) = delete;

  std::uint16_t router_port() const noexcept { return router_port_; }
  std::uint16_t pub_port() const noexcept { return pub_port_; }

  // Sockets for zmq_poll (the node loop polls them with its own fds).
  zmq::socket_ref xpub() noexcept { return xpub_; }
  zmq::socket_ref sub() noexcept { return sub_; }
  zmq::socket_ref router() noexcept { return router_; }

  /// Sends a data frame to every matching subscriber.
  send_status publish(zmq::message_t& frame);
  /// Same, but full subscriber queues drop this frame instead of refusing it
  /// (used only when a stalled subscriber is known to be gone; the caller counts it).
  send_status publish_lossy(zmq::message_t& frame);
  /// Next subscription message from XPUB (first byte 1 = subscribe, 0 = unsubscribe).
  bool receive_subscription(zmq::message_t& msg);

  void subscribe(const std::string& prefix);
  void unsubscribe(const std::string& prefix);
  bool receive_data(zmq::message_t& frame);

  /// Connects DEALER and SUB to a peer. Idempotent per id.
  void connect_peer(const wire::node_id_bytes& id, const std::string& host,
                    std::uint16_t router_port, std::uint16_t pub_port);
  /// Closes the DEALER to a peer. With `keep_sub`, the SUB stays connected to the
  /// peer's PUB so data still in flight can be read; release_sub() ends that later,
  /// unless a peer connected meanwhile on the same endpoint took the connection over.
  /// There is never more than one SUB connection per endpoint (a second one would
  /// deliver everything twice).
  void disconnect_peer(const wire::node_id_bytes& id, bool keep_sub = false);
  std::string pub_endpoint_of(const wire::node_id_bytes& id) const;
  void release_sub(const std::string& pub_endpoint);
  bool has_peer(const wire::node_id_bytes& id) const { return peers_.count(id) != 0; }
  send_status send_to(const wire::node_id_bytes& id, zmq::message_t& msg);
  /// A two-frame message (a repair: header, then the original data frame).
  send_status send_to(const wire::node_id_bytes& id, zmq::message_t& head, zmq::message_t& body);

  /// A DEALER to a seed whose node id is not known yet.
  void open_seed(const std::string& endpoint);
  void close_seed(const std::string& endpoint);
  send_status send_to_seed(const std::string& endpoint, zmq::message_t& msg);

  /// Next message addressed to this node: sender id, its one or two frames
  /// (`second` is empty for one), and the sender's IP. Returns false when nothing is
  /// waiting. Messages without a valid routing id, or of more than two frames, are
  /// consumed and reported through `bad_identity`.
  bool receive_directed(wire::node_id_bytes& from, zmq::message_t& frame, zmq::message_t& second,
                        bool& has_second, std::string& peer_ip, bool& bad_identity);
  /// With faults on: when a held-back message is next due (time_point::max() otherwise).
  fault_clock::time_point next_fault_release() const;
  /// With faults on: what they did so far.
  fault_counters data_faults() const;
  fault_counters directed_faults() const;

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

  struct directed_msg {
    wire::node_id_bytes from{};
    zmq::message_t frame;
    zmq::message_t second;
    bool has_second = false;
    std::string peer_ip;
    bool bad_identity = false;
  };
  bool read_directed(directed_msg& m);
  std::unique_ptr<fault_injector<zmq::message_t>> data_faults_;
  std::unique_ptr<fault_injector<directed_msg>> directed_faults_;
};

}  // namespace meshbus::transport
