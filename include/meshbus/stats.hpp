/// @file
/// Counters and gauges a Node keeps, taken with Node::stats(). Every drop, refusal and
/// malformed input is counted here; nothing is lost without a number going up.
///
/// The fields, with a line on each, are listed once in meshbus/detail/stats_fields.hpp;
/// the same list gives the name table stat_fields and for_each_stat(), so tools and
/// metric exporters can show every statistic without naming each.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "meshbus/detail/stats_fields.hpp"

namespace meshbus {

/// A snapshot of a Node's statistics: plain fields, one per entry of MESHBUS_STATS
/// (see meshbus/detail/stats_fields.hpp for what each counts).
struct Stats {
#define MESHBUS_DETAIL_STAT_FIELD(section, kind, name, doc) MESHBUS_DETAIL_STAT_TYPE_##kind name = 0;
  MESHBUS_STATS(MESHBUS_DETAIL_STAT_FIELD)
#undef MESHBUS_DETAIL_STAT_FIELD
};

/// Whether a statistic only grows (counter) or is a current value (gauge).
enum class StatKind : std::uint8_t { counter, gauge };

/// The group a statistic is shown under.
enum class StatSection : std::uint8_t { publishing, receiving, groups, requests, bad_input, peers, queues, store };

/// The name of a section ("publishing", "bad_input", ...).
constexpr std::string_view to_string(StatSection s) noexcept {
  switch (s) {
    case StatSection::publishing: return "publishing";
    case StatSection::receiving: return "receiving";
    case StatSection::groups: return "groups";
    case StatSection::requests: return "requests";
    case StatSection::bad_input: return "bad_input";
    case StatSection::peers: return "peers";
    case StatSection::queues: return "queues";
    case StatSection::store: return "store";
  }
  return "?";
}

/// What the list says of one statistic.
struct StatInfo {
  std::string_view name;  ///< the Stats field, also the metric name
  StatSection section;
  StatKind kind;
  std::string_view doc;  ///< one line on what it counts
};

/// Every statistic, in the order of the fields of Stats.
inline constexpr std::array stat_fields = {
#define MESHBUS_DETAIL_STAT_INFO(section, kind, name, doc) \
  StatInfo{#name, StatSection::section, StatKind::kind, doc},
    MESHBUS_STATS(MESHBUS_DETAIL_STAT_INFO)
#undef MESHBUS_DETAIL_STAT_INFO
};

/// Calls `f(const StatInfo&, std::uint64_t value)` for every statistic of `s`, in the
/// order of stat_fields.
template <class F>
void for_each_stat(const Stats& s, F&& f) {
  std::size_t i = 0;
#define MESHBUS_DETAIL_STAT_VISIT(section, kind, name, doc) f(stat_fields[i++], static_cast<std::uint64_t>(s.name));
  MESHBUS_STATS(MESHBUS_DETAIL_STAT_VISIT)
#undef MESHBUS_DETAIL_STAT_VISIT
}

}  // namespace meshbus
