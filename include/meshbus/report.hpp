/// @file
/// What a node says of itself when asked (Node::report(), Node::reports(), `meshbus
/// stats`, `meshbus top`, the Prometheus endpoint): its counters, peers, streams with
/// their rates, the subscribers behind on its streams, and how long events take to
/// reach its handlers. The report travels as a STATUS reply (docs/protocol.md §11).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "meshbus/stats.hpp"
#include "meshbus/types.hpp"

namespace meshbus {

/// A latency histogram: counts[i] events took at most bounds_ns[i] (and more than the
/// bound before it); the last count is for everything above the last bound.
struct LatencyHistogram {
  /// The upper bounds of the buckets, in nanoseconds (10 µs ... 10 s).
  static constexpr std::array<std::uint64_t, 18> bounds_ns = {
      10'000,      50'000,      100'000,     250'000,       500'000,       1'000'000,
      2'500'000,   5'000'000,   10'000'000,  25'000'000,    50'000'000,    100'000'000,
      250'000'000, 500'000'000, 1'000'000'000, 2'500'000'000, 5'000'000'000, 10'000'000'000};
  std::array<std::uint64_t, bounds_ns.size() + 1> counts{};
  std::uint64_t count = 0;   ///< events observed
  std::uint64_t sum_ns = 0;  ///< their total

  /// The value below which `q` (0..1) of the events fall, as the upper bound of its
  /// bucket (the last bound when it is in the overflow bucket); 0 when empty.
  std::uint64_t quantile_ns(double q) const noexcept;
};

/// A stream this node publishes on (`publisher` is the node itself) or receives.
struct StreamReport {
  NodeId publisher;
  std::string topic;
  std::uint64_t last_seq = 0;       ///< the last sequence sent (or delivered here)
  double events_per_second = 0;     ///< since the node's previous report, at least 250 ms ago (else over its life)
};

/// A subscriber with events of this node's reliable streams not yet acknowledged.
struct SubscriberLag {
  NodeId node;
  std::string name;
  std::uint64_t events = 0;  ///< unacknowledged events
  /// How long ago its oldest unacknowledged event was published (a lower bound when
  /// the history in memory no longer holds it).
  std::uint64_t lag_ms = 0;
  bool absent = false;  ///< declared gone, may come back
};

/// A peer as the reporting node sees it.
struct PeerReport {
  NodeId id;
  std::string name;
  std::string address;
  PeerState state = PeerState::alive;
  std::uint64_t last_heard_ms = 0;  ///< how long ago it was last heard
};

/// One node's report.
struct NodeReport {
  NodeId id;
  std::string name;
  std::string cluster;
  std::uint64_t epoch = 0;
  std::string address;  ///< the address it binds
  std::uint16_t router_port = 0;
  std::uint16_t pub_port = 0;
  std::uint64_t uptime_ms = 0;
  std::uint64_t unix_ms = 0;  ///< when the report was made (its wall clock)
  Stats stats;
  std::vector<PeerReport> peers;
  std::vector<StreamReport> published;  ///< the busiest first, at most 1000
  std::vector<StreamReport> received;   ///< the busiest first, at most 1000
  std::uint64_t streams_omitted = 0;    ///< streams beyond those limits
  std::vector<SubscriberLag> lagging;   ///< the furthest behind first, at most 1000
  std::vector<std::string> subscriptions;  ///< its subscription patterns
  std::vector<std::string> services;       ///< the services it serves
  /// From publish to the start of the handler, per event (the publisher's and this
  /// node's wall clocks: across hosts, their offset counts too).
  LatencyHistogram delivery_latency;
  /// How long handlers took, per event.
  LatencyHistogram handler_time;
};

/// The reports of the nodes that answered Node::reports(), and who did not.
struct MeshReport {
  std::vector<NodeReport> nodes;       ///< this node first, then the others by name
  std::vector<PeerInfo> unanswered;    ///< live peers that gave no report in time
};

}  // namespace meshbus
