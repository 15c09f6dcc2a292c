// The node's publisher side: reliability::publisher_streams on this node's counters.
// I/O thread only.
#pragma once

#include <cstdint>

#include "lib/node/counters.hpp"
#include "lib/reliability/publisher_streams.hpp"

namespace meshbus::detail {

using outbound_sink = reliability::publisher_sink;

/// The publisher side's tallies are the node's own Stats counters.
inline reliability::publisher_counters publisher_counters_of(node_counters& c) noexcept {
  return {c.nacks_received, c.bad_nacks,       c.repairs_sent,        c.losses_sent,
          c.redeliveries,   c.acks_received,   c.bad_acks,            c.history_evicted,
          c.group_reassignments, c.group_backlog_dropped, c.group_out_of_scope};
}

/// publisher_streams on this node's counters.
class outbound_streams final : public reliability::publisher_streams {
 public:
  outbound_streams(reliability::history_limits history, reliability::tracker_config tracker,
                   reliability::group_config groups, std::uint64_t epoch, outbound_sink& sink,
                   node_counters& counters)
      : publisher_streams(history, tracker, groups, epoch, sink, publisher_counters_of(counters)) {}
};

}  // namespace meshbus::detail
