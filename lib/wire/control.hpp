// Control messages addressed to one peer, sent DEALER -> ROUTER: hello, subscription
// updates, subscription readiness, liveness pings with gossip, goodbye.
// Frame: version byte, kind byte, MessagePack body (docs/protocol.md §4). The sender
// is known from the ROUTER routing id, so bodies do not repeat it (but HELLO does,
// to bind the id to the session).
#pragma once

#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "lib/wire/common.hpp"

namespace meshbus::wire {

enum class control_kind : std::uint8_t {
  hello = 0x10,
  subscriptions = 0x11,
  ready = 0x12,
  ping = 0x13,
  goodbye = 0x14,
};

inline constexpr std::uint32_t max_patterns = 4096;
inline constexpr std::uint32_t max_metadata = 64;
inline constexpr std::size_t max_metadata_value = 1024;
inline constexpr std::uint32_t max_gossip_peers = 1024;
inline constexpr std::uint32_t max_positions = 65536;

/// A peer as one node knows it, passed on so that one seed is enough.
struct peer_address {
  node_id_bytes id{};
  std::string host;
  std::uint16_t router_port = 0;
  std::uint16_t pub_port = 0;
  friend bool operator==(const peer_address&, const peer_address&) = default;
};

struct hello_msg {
  node_id_bytes node_id{};
  std::uint64_t epoch = 0;
  std::string cluster;
  std::string name;
  std::uint16_t router_port = 0;
  std::uint16_t pub_port = 0;
  std::vector<std::pair<std::string, std::string>> metadata;
  std::uint64_t sub_generation = 0;
  std::vector<std::string> patterns;
  std::vector<peer_address> peers;
  friend bool operator==(const hello_msg&, const hello_msg&) = default;
};

/// The sender's subscription patterns changed (generation increases by one per change).
struct subscriptions_msg {
  std::uint64_t generation = 0;
  std::vector<std::string> patterns;
  friend bool operator==(const subscriptions_msg&, const subscriptions_msg&) = default;
};

/// A publisher confirms that its PUB socket holds the receiver's subscriptions of
/// `generation`; `positions` gives its last sequence per topic at that moment.
struct ready_msg {
  std::uint64_t generation = 0;
  std::vector<std::pair<std::string, std::uint64_t>> positions;
  friend bool operator==(const ready_msg&, const ready_msg&) = default;
};

/// Liveness, sent every beacon interval to every peer. It carries the sender's
/// epoch and ports, so a peer that had given the sender up can reconnect at once.
struct ping_msg {
  std::uint64_t epoch = 0;
  std::uint16_t router_port = 0;
  std::uint16_t pub_port = 0;
  std::vector<peer_address> peers;
  friend bool operator==(const ping_msg&, const ping_msg&) = default;
};

struct goodbye_msg {
  friend bool operator==(const goodbye_msg&, const goodbye_msg&) = default;
};

using control_msg = std::variant<hello_msg, subscriptions_msg, ready_msg, ping_msg, goodbye_msg>;

bytes encode_control(const control_msg& msg);
decode_status decode_control(byte_view frame, control_msg& out);

}  // namespace meshbus::wire
