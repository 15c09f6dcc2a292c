// The one list of statistics: Stats, the name table, for_each_stat() and the node's
// live counters all come from it and agree.
#include <catch2/catch.hpp>

#include <set>
#include <string>

#include "lib/node/counters.hpp"
#include "meshbus/stats.hpp"

using namespace meshbus;

TEST_CASE("every statistic has a unique name, a section and a line of documentation", "[unit][stats]") {
  std::set<std::string_view> names;
  for (const auto& info : stat_fields) {
    CHECK(names.insert(info.name).second);
    CHECK(!info.doc.empty());
    CHECK(to_string(info.section) != "?");
  }
  CHECK(names.count("events_published") == 1);
  CHECK(names.count("group_conflicts") == 1);
  CHECK(names.count("group_backlog_dropped") == 1);
  CHECK(names.count("group_out_of_scope") == 1);
  CHECK(names.count("events_abandoned") == 1);
}

TEST_CASE("for_each_stat visits every field of Stats in the table's order with its value", "[unit][stats]") {
  Stats s;
  s.events_published = 7;
  s.group_conflicts = 3;
  s.history_bytes = 42;
  std::size_t i = 0;
  std::uint64_t sum = 0;
  for_each_stat(s, [&](const StatInfo& info, std::uint64_t value) {
    REQUIRE(i < stat_fields.size());
    CHECK(info.name == stat_fields[i].name);
    if (info.name == "events_published") CHECK(value == 7);
    if (info.name == "group_conflicts") CHECK(value == 3);
    if (info.name == "history_bytes") {
      CHECK(value == 42);
      CHECK(info.kind == StatKind::gauge);
      CHECK(info.section == StatSection::queues);
    }
    sum += value;
    ++i;
  });
  CHECK(i == stat_fields.size());
  CHECK(sum == 52);
  CHECK(sizeof(Stats) == stat_fields.size() * sizeof(std::uint64_t));  // no field outside the list
}

TEST_CASE("copy_counters copies every counter of the node and leaves the gauges alone", "[unit][stats]") {
  detail::node_counters c;
  Stats s;
  s.peers_alive = 5;
  // Give each counter a distinct value, by name, through the same list.
  std::uint64_t next = 1;
#define SET_COUNTER_counter(name) detail::bump(c.name, next++);
#define SET_COUNTER_gauge(name)
#define SET_COUNTER(section, kind, name, doc) SET_COUNTER_##kind(name)
  MESHBUS_STATS(SET_COUNTER)
#undef SET_COUNTER
#undef SET_COUNTER_gauge
#undef SET_COUNTER_counter
  detail::copy_counters(c, s);
  std::uint64_t expected = 1;
  for_each_stat(s, [&](const StatInfo& info, std::uint64_t value) {
    if (info.kind == StatKind::gauge) {
      CHECK(value == (info.name == "peers_alive" ? 5u : 0u));
      return;
    }
    INFO(info.name);
    CHECK(value == expected++);
  });
  CHECK(expected == next);
}
