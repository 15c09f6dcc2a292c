// The live counters behind meshbus::Stats, generated from the one list in
// meshbus/detail/stats_fields.hpp: every `counter` entry is a field here and is copied
// by copy_counters(); gauges are read by the node when Stats is taken. Relaxed
// atomics: each is a tally, not a synchronisation point. Each has a cache line of its
// own, since publishers, the I/O thread and handler threads write different ones.
#pragma once

#include <atomic>
#include <cstdint>

#include "meshbus/stats.hpp"

namespace meshbus::detail {

using counter = std::atomic<std::uint64_t>;

#define MESHBUS_DETAIL_NODE_COUNTER_counter(name) alignas(64) counter name{0};
#define MESHBUS_DETAIL_NODE_COUNTER_gauge(name)
#define MESHBUS_DETAIL_NODE_COUNTER(section, kind, name, doc) MESHBUS_DETAIL_NODE_COUNTER_##kind(name)

struct node_counters {
  MESHBUS_STATS(MESHBUS_DETAIL_NODE_COUNTER)
};

#undef MESHBUS_DETAIL_NODE_COUNTER
#undef MESHBUS_DETAIL_NODE_COUNTER_gauge
#undef MESHBUS_DETAIL_NODE_COUNTER_counter

inline void bump(counter& c, std::uint64_t n = 1) noexcept { c.fetch_add(n, std::memory_order_relaxed); }
inline std::uint64_t read(const counter& c) noexcept { return c.load(std::memory_order_relaxed); }

/// Copies every counter of `c` into `s`; the gauges of `s` are left as they are.
inline void copy_counters(const node_counters& c, Stats& s) noexcept {
#define MESHBUS_DETAIL_COPY_counter(name) s.name = read(c.name);
#define MESHBUS_DETAIL_COPY_gauge(name)
#define MESHBUS_DETAIL_COPY(section, kind, name, doc) MESHBUS_DETAIL_COPY_##kind(name)
  MESHBUS_STATS(MESHBUS_DETAIL_COPY)
#undef MESHBUS_DETAIL_COPY
#undef MESHBUS_DETAIL_COPY_gauge
#undef MESHBUS_DETAIL_COPY_counter
}

}  // namespace meshbus::detail
