// The causation tree `meshbus trace` prints (lib/toolkit/trace_tree): children under
// their cause in time order, causes nobody holds named once, cycles cut instead of
// followed, and an id several events share resolved by time and flagged as a guess.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "lib/toolkit/trace_tree.hpp"

using namespace meshbus;

namespace {

/// "depth:label" per line: the event's id, or "?<id>" for a placeholder; "!" marks a cycle root.
std::vector<std::string> shape(const std::vector<detail::trace_item>& items) {
  std::vector<std::string> out;
  for (const auto& line : detail::build_trace_tree(items)) {
    std::string label = line.event ? std::string(items[*line.event].id) : "?" + line.missing_id;
    if (line.cycle) label += "!";
    out.push_back(std::to_string(line.depth) + ":" + label);
  }
  return out;
}

}  // namespace

TEST_CASE("the causation tree: children under their cause, siblings and roots in time order",
          "[unit][trace]") {
  const std::vector<detail::trace_item> items{
      {"charged", "placed", 20, ""},  {"placed", "", 10, ""},    {"receipt", "placed", 15, ""},
      {"shipped", "charged", 30, ""}, {"other-root", "", 5, ""}, {"late", "placed", 40, ""},
  };
  CHECK(shape(items) == std::vector<std::string>{"0:other-root", "0:placed", "1:receipt", "1:charged",
                                                 "2:shipped", "1:late"});
  // Equal times: the tiebreak, then the input order.
  const std::vector<detail::trace_item> ties{
      {"b", "", 1, "node-b"}, {"a", "", 1, "node-a"}, {"c", "", 1, "node-a"}};
  CHECK(shape(ties) == std::vector<std::string>{"0:a", "0:c", "0:b"});
  CHECK(detail::build_trace_tree({}).empty());
}

TEST_CASE("the causation tree: a cause nobody holds is named once, with what it caused below",
          "[unit][trace]") {
  const std::vector<detail::trace_item> items{
      {"placed", "", 10, ""},
      {"completed", "shipped", 50, ""},  // shipped was on a node that lost it
      {"notified", "shipped", 45, ""},
      {"charged", "placed", 20, ""},
      {"orphan", "gone-before", 1, ""},
      {"after-completed", "completed", 60, ""},
  };
  CHECK(shape(items) == std::vector<std::string>{"0:?gone-before", "1:orphan", "0:placed", "1:charged",
                                                 "0:?shipped", "1:notified", "1:completed",
                                                 "2:after-completed"});
}

TEST_CASE("the causation tree: cycles are cut at their earliest event, never followed round",
          "[unit][trace]") {
  // a -> b -> c -> a, with d hanging off b, and e naming itself.
  const std::vector<detail::trace_item> items{
      {"a", "c", 30, ""}, {"b", "a", 10, ""}, {"c", "b", 20, ""}, {"d", "b", 40, ""}, {"e", "e", 5, ""},
  };
  CHECK(shape(items) == std::vector<std::string>{"0:e!", "0:b!", "1:c", "2:a", "1:d"});
  // A long chain does not need a deep stack.
  std::vector<std::string> ids;
  for (int i = 0; i < 200000; ++i) ids.push_back("e" + std::to_string(i));
  std::vector<detail::trace_item> chain;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    chain.push_back({ids[i], i == 0 ? std::string_view() : std::string_view(ids[i - 1]),
                     static_cast<std::int64_t>(i), ""});
  }
  const auto lines = detail::build_trace_tree(chain);
  REQUIRE(lines.size() == ids.size());
  CHECK(lines.back().depth == ids.size() - 1);
}

TEST_CASE(
    "the causation tree: an id several events share (default ids of two topics) takes the latest cause "
    "sent before the event, and says when that was a guess",
    "[unit][trace]") {
  // "p-1-1" is sequence 1 of two topics of one publisher: placed at 10, completed at 40.
  const std::vector<detail::trace_item> items{
      {"p-1-1", "", 10, "orders.placed"}, {"q-1-1", "p-1-1", 20, ""},
      {"r-1-1", "q-1-1", 30, ""},         {"p-1-1", "r-1-1", 40, "orders.completed"},
      {"s-1-1", "p-1-1", 50, ""},         {"early", "p-1-1", 5, ""},  // before both: the earliest
  };
  const auto lines = detail::build_trace_tree(items);
  std::vector<std::string> got;
  for (const auto& l : lines) {
    got.push_back(std::to_string(l.depth) + ":" + std::string(items[*l.event].id) + "@" +
                  std::to_string(items[*l.event].timestamp_ns) +
                  (l.ambiguous_cause > 0 ? "?" + std::to_string(l.ambiguous_cause) : ""));
  }
  // Only s-1-1 came after both events of that id: which one caused it cannot be told.
  CHECK(got == std::vector<std::string>{"0:p-1-1@10", "1:early@5", "1:q-1-1@20", "2:r-1-1@30", "3:p-1-1@40",
                                        "4:s-1-1@50?2"});
}
