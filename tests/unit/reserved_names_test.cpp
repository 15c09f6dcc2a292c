// meshbus's reserved ('$') names that nodes and tools must agree on: dead-letter
// topics and headers, and the internal topic prefix.
#include <catch2/catch.hpp>

#include "lib/wire/dead_letter.hpp"
#include "lib/wire/topic.hpp"

using namespace meshbus::wire;

TEST_CASE("a dead letter is announced on $dlq.<topic>, or on $dlq for a long topic", "[unit][wire]") {
  CHECK(dead_letter_topic("orders.eu") == "$dlq.orders.eu");
  const std::string longest(max_topic_length - 5, 'x');
  CHECK(dead_letter_topic(longest) == "$dlq." + longest);
  CHECK(dead_letter_topic(longest + "x") == "$dlq");
  for (const auto& t : {dead_letter_topic("orders.eu"), dead_letter_topic(longest), dead_letter_topic(longest + "x")}) {
    INFO(t);
    CHECK(topic_error(t, true).empty());
  }
}

TEST_CASE("the dead-letter pattern matches every announcement topic", "[unit][wire]") {
  pattern p;
  std::string error;
  REQUIRE(pattern::compile(dead_letter_pattern, p, error));
  CHECK(p.matches(dead_letter_topic("orders.eu")));
  CHECK(p.matches(dead_letter_topic(std::string(max_topic_length, 'x'))));
  CHECK_FALSE(p.matches("orders.eu"));
}

TEST_CASE("replay topics are reserved, internal and valid", "[unit][wire]") {
  for (const auto t : {dead_letter_replay_topic, dead_letter_replayed_topic}) {
    INFO(t);
    CHECK(topic_error(t, true).empty());
    CHECK_FALSE(topic_error(t, false).empty());
    CHECK(t.substr(0, internal_topic_prefix.size()) == internal_topic_prefix);
  }
}
