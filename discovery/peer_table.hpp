// The peer table: who is out there and whether they are alive.
//
// An explicit state machine per peer with no I/O and no clock of its own: the
// caller says when it heard from a peer (beacon, or any message) and advances time
// with tick(now). States: alive -> suspect (nothing heard for `suspect_after`)
// -> gone (nothing heard for `expiry`), or straight to gone on goodbye. A peer
// heard again while suspect is alive again; a peer heard with a new epoch has
// restarted. Gone peers leave a tombstone for `expiry`: gossip about them is not
// believed meanwhile, and after a goodbye, late messages of the same epoch do not
// bring the peer back (a peer that expired and is heard again rejoins at once).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "lib/wire/common.hpp"

namespace meshbus::discovery {

using clock = std::chrono::steady_clock;

enum class peer_state : std::uint8_t { alive, suspect, gone };
const char* to_string(peer_state s) noexcept;

/// How a peer was first learned of.
enum class peer_source : std::uint8_t { beacon, hello, gossip, seed };

struct peer_endpoint {
  std::string host;
  std::uint16_t router_port = 0;
  std::uint16_t pub_port = 0;
  friend bool operator==(const peer_endpoint&, const peer_endpoint&) = default;
};

struct peer_entry {
  wire::node_id_bytes id{};
  std::uint64_t epoch = 0;
  peer_endpoint endpoint;
  peer_state state = peer_state::alive;
  peer_source source = peer_source::beacon;
  clock::time_point first_seen{};
  clock::time_point last_heard{};
};

/// moved: the same id and epoch on other ports — its process started again from its
/// durable log (same identity, new sockets).
enum class peer_change : std::uint8_t { joined, suspect, alive_again, restarted, moved, left };
const char* to_string(peer_change c) noexcept;

struct peer_transition {
  peer_change change;
  wire::node_id_bytes id;
  peer_endpoint endpoint;   ///< current (for restarted: the new one)
  std::uint64_t epoch = 0;  ///< current (for restarted: the new one)
  bool goodbye = false;     ///< left because it said goodbye (not by expiry)
};

struct peer_timing {
  clock::duration suspect_after = std::chrono::seconds(3);
  clock::duration expiry = std::chrono::seconds(5);
};

class peer_table {
 public:
  explicit peer_table(peer_timing timing) : timing_(timing) {}

  /// Records that the peer was heard from now. An `epoch` of 0 means "unknown"
  /// (e.g. gossip) and never counts as a restart. Returns the transition, if any;
  /// when the peer is not (re)admitted because of a tombstone, find(id) stays null.
  std::optional<peer_transition> heard(const wire::node_id_bytes& id, std::uint64_t epoch,
                                       const peer_endpoint& endpoint, peer_source source,
                                       clock::time_point now);
  /// A goodbye: the peer is gone now.
  std::optional<peer_transition> goodbye(const wire::node_id_bytes& id, clock::time_point now);
  /// This node itself was not running for `gap` (stopped, or its thread held up):
  /// what it did not hear meanwhile is not held against its peers, whose silence
  /// counts from `gap` later (at most from now).
  void credit(clock::duration gap, clock::time_point now);
  /// Advances time; appends suspect and left transitions.
  void tick(clock::time_point now, std::vector<peer_transition>& out);
  /// When tick() next has something to do: a peer turning suspect or gone, a
  /// tombstone expiring (time_point::max() for an empty table).
  clock::time_point next_due() const;

  const peer_entry* find(const wire::node_id_bytes& id) const;
  /// True when the peer left less than `expiry` ago (stale gossip is ignored).
  bool recently_gone(const wire::node_id_bytes& id, clock::time_point now) const;
  const std::map<wire::node_id_bytes, peer_entry>& entries() const noexcept { return peers_; }
  std::size_t alive_count() const noexcept;
  const peer_timing& timing() const noexcept { return timing_; }

 private:
  peer_timing timing_;
  std::map<wire::node_id_bytes, peer_entry> peers_;
  struct tombstone {
    clock::time_point at;
    std::uint64_t epoch = 0;
    bool goodbye = false;
  };
  std::map<wire::node_id_bytes, tombstone> tombstones_;
};

}  // namespace meshbus::discovery
