// The tallies the stream state machines keep, as references to counters their owner
// holds: the node maps them onto the counters behind meshbus::Stats, a test onto its
// own. Relaxed atomics: each is a tally, not a synchronisation point.
#pragma once

#include <atomic>
#include <cstdint>

namespace meshbus::reliability {

using counter = std::atomic<std::uint64_t>;

inline void bump(counter& c, std::uint64_t n = 1) noexcept {
  c.fetch_add(n, std::memory_order_relaxed);
}

/// What the subscriber side counts (subscriber_streams).
struct subscriber_counters {
  counter& duplicates_dropped;  ///< events received again
  counter& gaps;                ///< gaps detected
  counter& reorder_overflow;    ///< held batches dropped to stay in bounds
  counter& rejected_sequences;  ///< too far ahead, or of an older epoch
  counter& unknown_starts;      ///< windows started at the first batch held
  counter& events_lost;         ///< events given up on
  counter& loss_notices;
  counter& nacks_sent;
  counter& acks_sent;
  counter& repairs_received;
  counter& events_unmatched;  ///< received, but no subscription here takes them
};

/// What the publisher side counts (publisher_streams).
struct publisher_counters {
  counter& nacks_received;
  counter& bad_nacks;  ///< for another epoch, or beyond what was sent
  counter& repairs_sent;
  counter& losses_sent;
  counter& redeliveries;
  counter& acks_received;
  counter& bad_acks;
  counter& history_evicted;        ///< events the bounded history let go of
  counter& group_reassignments;    ///< group work handed to another member
  counter& group_backlog_dropped;  ///< group work dropped from a full backlog
  counter& group_out_of_scope;     ///< group work no member's patterns match any more
};

}  // namespace meshbus::reliability
