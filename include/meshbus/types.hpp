/// @file
/// Small value types shared by the public API.
#pragma once

#include <array>
#include <chrono>
#include <compare>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace meshbus {

/// A node's 128-bit identity, random per Node unless Options::node_id is set.
struct NodeId {
  std::array<std::uint8_t, 16> bytes{};

  /// 32 lower-case hex digits.
  std::string to_string() const;
  /// The first 8 hex digits, for logs and tables.
  std::string short_string() const;
  /// Parses 32 hex digits; throws meshbus::error(invalid_argument) otherwise.
  static NodeId parse(std::string_view hex);
  bool is_zero() const noexcept;

  friend auto operator<=>(const NodeId&, const NodeId&) = default;
  friend bool operator==(const NodeId&, const NodeId&) = default;
};

/// Liveness of a peer, as the peer table sees it.
enum class PeerState : std::uint8_t { alive, suspect };

/// What this node knows about one peer.
struct PeerInfo {
  NodeId id;
  std::uint64_t epoch = 0;
  std::string name;
  std::string address;  ///< IPv4 address the peer is reached at
  std::uint16_t router_port = 0;
  std::uint16_t pub_port = 0;
  PeerState state = PeerState::alive;
  std::chrono::steady_clock::time_point joined_at{};   ///< when the HELLO exchange completed
  std::chrono::steady_clock::time_point last_heard{};  ///< beacon or any message
  std::map<std::string, std::string> metadata;
  std::vector<std::string> subscriptions;  ///< the peer's subscription patterns
};

/// Where a configured seed (Options::seeds, MESHBUS_PEERS) stands.
enum class SeedState : std::uint8_t {
  resolving,     ///< its host name is being resolved
  unresolvable,  ///< its host name does not resolve (tried again every beacon interval)
  unreachable,   ///< resolved, but no HELLO has come back yet (tried every beacon interval)
  answered,      ///< it answered: it is an ordinary peer now
};

/// A configured seed, for Node::seeds().
struct SeedInfo {
  std::string address;  ///< "host:port" as configured
  SeedState state = SeedState::resolving;
  std::optional<NodeId> node;  ///< the node it turned out to be, once it answered
};

/// A change in the set of peers.
struct PeerEvent {
  enum class Kind : std::uint8_t {
    joined,       ///< HELLO exchanged; the peer can be published to
    suspect,      ///< nothing heard for Options::suspect_after_missed beacon intervals
    alive_again,  ///< heard again while suspect
    left,         ///< goodbye, or nothing heard for Options::peer_expiry
  };
  Kind kind;
  PeerInfo peer;
};

const char* to_string(PeerEvent::Kind k) noexcept;

}  // namespace meshbus

template <>
struct std::hash<meshbus::NodeId> {
  std::size_t operator()(const meshbus::NodeId& id) const noexcept {
    std::size_t h = 0;
    for (int i = 0; i < 8; ++i) h = (h << 8) | id.bytes[static_cast<std::size_t>(i)];
    return h;
  }
};
