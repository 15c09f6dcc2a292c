// peer_sessions: the peer protocol of one node (docs/protocol.md §5). Beacons and
// gossip feed the peer table; a peer the table admits gets a session: DEALER and SUB
// connected, HELLO both ways, then it is joined. Liveness (suspect, alive again,
// gone) comes from the table; a goodbye closes the session at once but keeps reading
// the peer's data for a while (draining). The readiness sentinel: each change of this
// node's subscriptions is a new generation, announced by SUBSCRIPTIONS and confirmed
// by the publisher's READY once its XPUB holds them.
//
// What other parts must do when a session opens or closes, or a subscriber changes,
// goes out through `session_events`; what API threads may read goes to mesh_view.
// I/O thread only.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "discovery/beacon_socket.hpp"
#include "discovery/liveness_probe.hpp"
#include "discovery/peer_table.hpp"
#include "lib/node/control_sender.hpp"
#include "lib/node/mesh_view.hpp"
#include "lib/node/seed_list.hpp"
#include "lib/node/subscriptions.hpp"
#include "lib/transport/transport.hpp"
#include "lib/wire/beacon.hpp"
#include "lib/wire/control.hpp"

namespace meshbus::detail {

/// Why a session closed.
enum class session_end : std::uint8_t {
  goodbye,    ///< the peer said goodbye: its last data may still be in flight (draining)
  expired,    ///< nothing heard for peer_expiry: it may come back with its epoch (absent)
  restarted,  ///< it came back with a new epoch: the old one is gone for good
};

/// What the other parts learn from the peer protocol. Implemented by node_impl.
class session_events {
 public:
  virtual ~session_events() = default;
  /// A session opens: a new peer, a new epoch of one, or (`resumed`) a peer that
  /// expired and came back with the same epoch, whose streams resume.
  virtual void session_opened(const wire::node_id_bytes& id, bool resumed, clock::time_point now) = 0;
  /// A session closed (see session_end).
  virtual void session_closed(const wire::node_id_bytes& id, session_end why, clock::time_point now) = 0;
  /// A peer that expired did not come back with its epoch within Options::peer_resume
  /// (or came back with another): it is gone for good.
  virtual void session_forgotten(const wire::node_id_bytes& id, clock::time_point now) = 0;
  /// A peer that said goodbye is done draining (and has no session again).
  virtual void session_drained(const wire::node_id_bytes& id, clock::time_point now) = 0;
  /// What a subscriber (a peer, or this node for its own groups) subscribes, and
  /// whether the subscriptions are in effect at this node's XPUB (ready).
  virtual void subscriber_changed(const wire::node_id_bytes& id, const std::string& name,
                                  const std::vector<wire::pattern_spec>& patterns, bool ready,
                                  clock::time_point now) = 0;
  /// The last sequence of every topic this node published, for READY.
  virtual std::vector<std::pair<std::string, std::uint64_t>> positions() = 0;
  /// The request services this node serves, for HELLO and SUBSCRIPTIONS.
  virtual std::vector<std::string> service_names() = 0;

 protected:
  session_events() = default;
  session_events(const session_events&) = default;
  session_events& operator=(const session_events&) = default;
};

/// A peer as the protocol sees it.
struct peer_session {
  wire::node_id_bytes id{};
  std::uint64_t epoch = 0;
  discovery::peer_endpoint endpoint;
  bool hello_sent = false;
  bool hello_received = false;
  bool announced = false;
  clock::time_point last_hello_sent{};
  clock::time_point joined_at{};
  std::string name;
  std::map<std::string, std::string> metadata;
  // As a subscriber of this node.
  std::uint64_t patterns_generation = 0;
  std::vector<wire::pattern_spec> patterns;
  std::uint64_t ready_generation = 0;
  bool ready_seen = false;
  std::optional<wire::ready_msg> ready_sent;  ///< the last READY, sent again if asked
  // As a publisher to this node: the generation of ours it confirmed (READY), and
  // when we last told it our subscriptions (sent again while unconfirmed).
  std::uint64_t confirmed_generation = 0;
  clock::time_point subscriptions_sent{};
  std::vector<std::string> services;  ///< request services it serves
};

class peer_sessions {
 public:
  peer_sessions(node_context& ctx, transport::transport& transport, control_sender& control, mesh_view& view,
                subscription_registry& subs, session_events& events, std::vector<discovery::seed_address> seeds);

  // Timers: peer table (liveness), then once per beacon interval (PING, lost
  // HELLOs and SUBSCRIPTIONS, seeds, draining peers).
  void tick(clock::time_point now);
  clock::time_point next_due() const;
  /// This node was not running for `gap` (see peer_table::credit).
  void credit_pause(clock::duration gap, clock::time_point now);

  /// A decoded beacon from `source` (IPv4, host order).
  void on_beacon(const wire::beacon& b, std::uint32_t source, clock::time_point now);
  void on_hello(const wire::node_id_bytes& from, wire::hello_msg& m, const std::string& ip, clock::time_point now);
  void on_ping(const wire::node_id_bytes& from, const wire::ping_msg& m, const std::string& ip,
               clock::time_point now);
  void on_goodbye(const wire::node_id_bytes& from, clock::time_point now);
  /// The session of `from`, its liveness refreshed; null when there is none.
  peer_session* established(const wire::node_id_bytes& from, clock::time_point now);
  void on_subscriptions(peer_session& s, wire::subscriptions_msg& m);
  /// READY for our subscriptions of some generation.
  void on_ready(peer_session& s, const wire::ready_msg& m);
  /// A subscription message from the XPUB socket (most are ordinary prefixes).
  void on_xpub_subscription(wire::byte_view msg);
  bool has(const wire::node_id_bytes& id) const { return sessions_.count(id) != 0; }
  bool draining(const wire::node_id_bytes& id) const;
  /// The generation of this node's subscriptions (1 after construction).
  std::uint64_t generation() const noexcept { return sub_generation_; }
  /// This node's subscriptions or services changed: a new generation.
  void subscriptions_changed();
  /// Leaving: goodbye to every peer (the beacon goodbye is the loop's).
  void say_goodbye();
  wire::beacon beacon(std::uint8_t flags) const;
  seed_list& seeds() noexcept { return seeds_; }

 private:
  void apply(const discovery::peer_transition& t, clock::time_point now);
  peer_session& open(const discovery::peer_transition& t, clock::time_point now);
  void close(const wire::node_id_bytes& id, session_end why);
  /// Absent peers that did not come back in time, or whose process is gone, are
  /// forgotten. `probe`: check and restart their liveness probes (once an interval).
  void forget_absent(clock::time_point now, bool probe);
  void retire_drained(clock::time_point now);
  void on_interval(clock::time_point now);
  void join(peer_session& s, clock::time_point now);
  void set_services(peer_session& s, std::vector<std::string> services);
  wire::hello_msg make_hello();
  void send_hello(peer_session& s, clock::time_point now);
  void send_ready(peer_session& s);
  void merge_gossip(const std::vector<wire::peer_address>& peers, clock::time_point now);
  std::vector<wire::peer_address> gossip_list() const;
  void update_subscriber(const peer_session& s);
  PeerInfo info_of(const peer_session& s) const;

  node_context& ctx_;
  transport::transport& transport_;
  control_sender& control_;
  mesh_view& view_;
  subscription_registry& subs_;
  session_events& events_;
  seed_list seeds_;
  discovery::peer_table table_;
  std::map<wire::node_id_bytes, peer_session> sessions_;
  std::map<wire::node_id_bytes, std::uint64_t> early_ready_;  ///< sentinels seen before HELLO
  struct draining_peer {
    clock::time_point until;
    std::string endpoint;
    wire::node_id_bytes id{};
  };
  std::vector<draining_peer> draining_;
  struct absent_peer {
    std::uint64_t epoch = 0;
    clock::time_point until;
    discovery::peer_endpoint endpoint;
    discovery::liveness_probe probe;  ///< a refused connection: its process is gone
  };
  std::map<wire::node_id_bytes, absent_peer> absent_;  ///< expired, may come back
  std::uint64_t sub_generation_ = 0;
  std::string sentinel_;
  clock::time_point next_interval_{};
};

}  // namespace meshbus::detail
