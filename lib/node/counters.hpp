// The live counters behind meshbus::Stats. Relaxed atomics: each is a tally, not a
// synchronisation point.
#pragma once

#include <atomic>
#include <cstdint>

namespace meshbus::detail {

using counter = std::atomic<std::uint64_t>;

struct node_counters {
  // publishing
  counter batches_sent{0}, bytes_sent{0}, publish_would_block{0}, send_stalls{0}, sent_past_gone{0},
      heartbeats_sent{0}, control_send_failures{0}, window_waits{0}, nacks_received{0}, repairs_sent{0},
      losses_sent{0}, redeliveries{0}, acks_received{0}, bad_acks{0}, bad_nacks{0};
  // receiving
  counter batches_received{0}, events_received{0}, bytes_received{0}, events_delivered{0},
      handler_errors{0}, events_unmatched{0}, gaps{0}, events_lost{0}, loss_notices{0}, nacks_sent{0},
      repairs_received{0}, acks_sent{0}, duplicates_dropped{0}, reorder_overflow{0},
      rejected_sequences{0}, receive_pauses{0}, handler_retries{0}, dead_letters{0},
      dead_letters_dropped{0}, unknown_starts{0};
  // request/reply
  counter requests_sent{0}, requests_failed{0}, requests_served{0}, late_replies{0};
  // bad input
  counter malformed_beacons{0}, unsupported_beacons{0}, foreign_cluster_beacons{0},
      foreign_network_beacons{0}, malformed_messages{0}, unsupported_messages{0}, unknown_senders{0};
  // peers
  counter peers_joined{0}, peers_left{0}, peers_suspected{0};
};

inline void bump(counter& c, std::uint64_t n = 1) noexcept { c.fetch_add(n, std::memory_order_relaxed); }
inline std::uint64_t read(const counter& c) noexcept { return c.load(std::memory_order_relaxed); }

}  // namespace meshbus::detail
