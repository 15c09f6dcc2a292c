// The transport seam: what a node needs from the network, as one interface with two
// implementations — zmq_transport (ZeroMQ sockets) and faulty_transport (a fault
// injector in front of another transport, for tests) — the way nng stamps out its
// transports. open_transport() picks: MESHBUS_FAULTS set means faults in front.
//
// Every call is made by the node's I/O thread only (the owner of the transport).
// Nothing blocks but wait(): sends return would_block instead (EAGAIN is a value),
// receives return false when nothing is waiting. Frames move in and out without a
// copy. This layer knows nothing about message contents.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "lib/transport/frame.hpp"
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
};

/// A message addressed to this node: its sender, its one or two frames.
struct directed_message {
  wire::node_id_bytes from{};
  frame first;
  frame second;  ///< empty unless has_second
  bool has_second = false;
  std::string peer_ip;        ///< the connection's peer address ("" if unknown)
  bool bad_identity = false;  ///< no valid meshbus sender id, or too many frames
};

/// What wait() found readable.
struct readiness {
  bool data = false;           ///< receive_data() has something
  bool directed = false;       ///< receive_directed() has something
  bool subscriptions = false;  ///< receive_subscription() has something
};

/// The most file descriptors wait() watches besides the transport's own.
inline constexpr std::size_t max_wait_fds = 4;

class transport {
 public:
  virtual ~transport() = default;
  transport(const transport&) = delete;
  transport& operator=(const transport&) = delete;

  virtual std::uint16_t router_port() const noexcept = 0;
  virtual std::uint16_t pub_port() const noexcept = 0;

  /// Waits up to `timeout` until an input is readable: the transport's own (data
  /// only when `want_data`: back-pressure leaves data in the queues) or one of
  /// `fds` (POLLIN, at most max_wait_fds; `fd_ready` says which). EINTR is a wait
  /// that found nothing.
  virtual readiness wait(std::chrono::milliseconds timeout, bool want_data, std::span<const int> fds,
                         std::span<bool> fd_ready) = 0;
  /// When something held back is next due without any socket being readable
  /// (faults); time_point::max() otherwise. Held-back data counts only when the
  /// caller `want_data` (under back-pressure it would not be read anyway).
  virtual std::chrono::steady_clock::time_point next_release(bool want_data) const {
    (void)want_data;
    return std::chrono::steady_clock::time_point::max();
  }
  /// The fault plan in front, as text, empty when none (for the log).
  virtual std::string faults() const { return {}; }

  /// Sends a data frame to every matching subscriber; a full subscriber queue
  /// refuses it (would_block), never drops it.
  virtual send_status publish(frame& f) = 0;
  /// Same, but full subscriber queues drop this frame instead of refusing it (only
  /// when a stalled subscriber is known to be gone; the caller counts it).
  virtual send_status publish_lossy(frame& f) = 0;
  /// Next subscription message from the publishing socket (first byte 1 =
  /// subscribe, 0 = unsubscribe).
  virtual bool receive_subscription(frame& out) = 0;

  virtual void subscribe(const std::string& prefix) = 0;
  virtual void unsubscribe(const std::string& prefix) = 0;
  virtual bool receive_data(frame& out) = 0;

  /// Connects to a peer's ROUTER and PUB. Idempotent per id.
  virtual void connect_peer(const wire::node_id_bytes& id, const std::string& host, std::uint16_t router_port,
                            std::uint16_t pub_port) = 0;
  /// Closes the connection to a peer's ROUTER. With `keep_sub`, its data still in
  /// flight can be read until release_sub(pub_endpoint_of(id)), unless a peer
  /// connected meanwhile on the same endpoint took the connection over.
  virtual void disconnect_peer(const wire::node_id_bytes& id, bool keep_sub = false) = 0;
  virtual std::string pub_endpoint_of(const wire::node_id_bytes& id) const = 0;
  virtual void release_sub(const std::string& pub_endpoint) = 0;
  virtual send_status send_to(const wire::node_id_bytes& id, frame& msg) = 0;
  /// A two-frame message (a repair or an assignment: header, then the data frame).
  virtual send_status send_to(const wire::node_id_bytes& id, frame& head, frame& body) = 0;

  /// A connection to a seed whose node id is not known yet.
  virtual void open_seed(const std::string& endpoint) = 0;
  virtual void close_seed(const std::string& endpoint) = 0;
  virtual send_status send_to_seed(const std::string& endpoint, frame& msg) = 0;

  /// Next message addressed to this node; false when nothing is waiting. A message
  /// without a valid sender id, or of more than two frames, is consumed and
  /// returned with bad_identity set.
  virtual bool receive_directed(directed_message& out) = 0;

 protected:
  transport() = default;
};

/// The transport a node runs on: ZeroMQ, with a fault injector in front when the
/// environment variable MESHBUS_FAULTS (tests only, docs/testing.md) holds a plan.
/// Throws meshbus::error (address_in_use, network, configuration).
std::unique_ptr<transport> open_transport(const transport_config& cfg);

}  // namespace meshbus::transport
