// Control messages addressed to one peer, sent DEALER -> ROUTER: hello, subscription
// updates, subscription readiness, liveness pings with gossip, goodbye, the
// reliability messages and request/reply.
// Frame: version byte, kind byte, MessagePack body (docs/protocol.md §4). The sender
// is known from the ROUTER routing id, so bodies do not repeat it (but HELLO does,
// to bind the id to the session). Each kind has its own body codec
// (lib/wire/control_codec.hpp); this header is what the rest of meshbus uses.
#pragma once

#include <string>
#include <string_view>
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
  nack = 0x20,
  ack = 0x21,
  repair = 0x22,  ///< two frames: this header, then the original data frame
  loss = 0x23,
  assign = 0x24,  ///< two frames: this header, then the original data frame
  request = 0x30,
  reply = 0x31,
  status_request = 0x40,
  status_reply = 0x41,
};

inline constexpr std::uint32_t max_patterns = 4096;
inline constexpr std::uint32_t max_metadata = 64;
inline constexpr std::size_t max_metadata_value = 1024;
inline constexpr std::uint32_t max_gossip_peers = 1024;
inline constexpr std::uint32_t max_positions = 65536;
inline constexpr std::uint32_t max_nack_ranges = 64;
inline constexpr std::uint32_t max_acks = 65536;
inline constexpr std::uint32_t max_services = 1024;
/// Elements of a message body; more than a kind knows are skipped, up to this.
inline constexpr std::uint32_t max_body_fields = 64;
/// Elements of one entry of a list (a pattern, a gossip peer, a [topic, seq] pair,
/// a NACK range).
inline constexpr std::uint32_t max_entry_fields = 16;
/// Cluster name, node name, gossip host, metadata key.
inline constexpr std::size_t max_name_length = 255;

/// The routing id of every DEALER of a node: this byte, then its 16-byte node id.
/// (A ROUTER gives peers without one an id starting with 0x00.)
inline constexpr std::uint8_t routing_id_marker = 0x01;
inline constexpr std::size_t routing_id_size = 17;
std::string routing_id(const node_id_bytes& id);
/// The sender's node id from a ROUTER routing id; false when it is not a meshbus one.
bool decode_routing_id(byte_view rid, node_id_bytes& out) noexcept;

/// Acks, NACKs and LOSSes about a group's assignments name the stream
/// "$group.<group>" in their topic field (docs/protocol.md §7).
inline constexpr std::string_view group_stream_prefix = "$group.";
std::string group_stream_name(std::string_view group);
bool is_group_stream(std::string_view topic) noexcept;
/// The group of a "$group.<group>" stream name; empty for any other topic.
std::string_view group_of_stream(std::string_view topic) noexcept;

/// A subscription pattern with the delivery mode asked for (0 best effort,
/// 1 reliable, 2 acknowledged).
struct pattern_spec {
  std::string pattern;
  std::uint8_t mode = 1;
  std::string group;  ///< a service group (competing consumers), or empty
  friend bool operator==(const pattern_spec&, const pattern_spec&) = default;
};

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
  std::vector<pattern_spec> patterns;
  std::vector<peer_address> peers;
  std::vector<std::string> services;  ///< request services this node serves
  friend bool operator==(const hello_msg&, const hello_msg&) = default;
};

/// The sender's subscription patterns changed (generation increases by one per change).
struct subscriptions_msg {
  std::uint64_t generation = 0;
  std::vector<pattern_spec> patterns;
  std::vector<std::string> services;
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

/// The sender is leaving. `positions`: its last sequence per topic (at most
/// max_positions), so a subscriber can tell exactly what of its streams it lacks.
struct goodbye_msg {
  std::uint64_t epoch = 0;
  std::vector<std::pair<std::string, std::uint64_t>> positions;
  friend bool operator==(const goodbye_msg&, const goodbye_msg&) = default;
};

/// A subscriber asks its publisher (of `epoch`) to send `topic`'s ranges again.
struct nack_msg {
  std::uint64_t epoch = 0;
  std::string topic;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;  ///< inclusive
  friend bool operator==(const nack_msg&, const nack_msg&) = default;
};

/// Cumulative acks to a publisher (of `epoch`): the sender holds (reliable) or has
/// processed (acknowledged) every event of each topic up to its sequence.
struct ack_msg {
  std::uint64_t epoch = 0;
  std::vector<std::pair<std::string, std::uint64_t>> acks;
  friend bool operator==(const ack_msg&, const ack_msg&) = default;
};

/// Header of a repair: the next frame is an original data frame of `epoch`.
struct repair_msg {
  std::uint64_t epoch = 0;
  friend bool operator==(const repair_msg&, const repair_msg&) = default;
};

/// Header of a group assignment: the next frame is an original data frame of
/// `epoch`, assigned to the receiver as its `seq`-th batch of `group`.
struct assign_msg {
  std::uint64_t epoch = 0;
  std::string group;
  std::uint64_t seq = 0;
  friend bool operator==(const assign_msg&, const assign_msg&) = default;
};

/// The publisher (of `epoch`) no longer holds [from, to] of `topic`.
struct loss_msg {
  std::uint64_t epoch = 0;
  std::string topic;
  std::uint64_t from = 0;
  std::uint64_t to = 0;
  friend bool operator==(const loss_msg&, const loss_msg&) = default;
};

/// A request to one instance of a service; answered by a reply with the same id.
struct request_msg {
  std::uint64_t id = 0;  ///< unique per requester
  std::string service;
  std::uint64_t timeout_ms = 0;  ///< what the requester still waits
  std::string type_name;
  std::uint32_t type_version = 0;
  std::string correlation_id;
  std::string causation_id;
  std::string payload;
  friend bool operator==(const request_msg&, const request_msg&) = default;
};

enum class reply_status : std::uint8_t {
  ok = 0,
  no_service = 1,      ///< the instance does not (or no longer) serve it
  handler_failed = 2,  ///< the handler threw; `message` says what
  rejected = 3,        ///< the request can never be handled (does not decode, invalid)
};

struct reply_msg {
  std::uint64_t id = 0;
  reply_status status = reply_status::ok;
  std::string message;
  std::string type_name;
  std::uint32_t type_version = 0;
  std::string payload;
  friend bool operator==(const reply_msg&, const reply_msg&) = default;
};

/// Asks a peer for its report (docs/protocol.md §11); answered by STATUS_REPLY with
/// the same id, on the I/O thread, at a bounded rate per asker.
struct status_request_msg {
  std::uint64_t id = 0;
  friend bool operator==(const status_request_msg&, const status_request_msg&) = default;
};

/// A node's report: the MessagePack map of lib/wire/report.hpp, as a bin.
struct status_reply_msg {
  std::uint64_t id = 0;
  std::string report;
  friend bool operator==(const status_reply_msg&, const status_reply_msg&) = default;
};

using control_msg =
    std::variant<hello_msg, subscriptions_msg, ready_msg, ping_msg, goodbye_msg, nack_msg, ack_msg, repair_msg,
                 loss_msg, assign_msg, request_msg, reply_msg, status_request_msg, status_reply_msg>;

/// One frame: version, kind, body. REPAIR and ASSIGN are followed by a second frame,
/// the data frame they carry, which the caller sends.
bytes encode_control(const control_msg& msg);
/// Decodes the first frame of a control message; a body with more fields than its
/// kind knows is accepted (the rest skipped), fewer is malformed.
decode_status decode_control(byte_view frame, control_msg& out);
/// REPAIR and ASSIGN are two frames (this header, then a data frame); the rest one.
bool has_data_frame(const control_msg& msg) noexcept;

}  // namespace meshbus::wire
