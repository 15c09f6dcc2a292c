// Topic syntax, wildcard matching (a table of cases) and the ZeroMQ prefix.
#include <catch2/catch.hpp>

#include "lib/wire/topic.hpp"
#include "meshbus/error.hpp"
#include "meshbus/topic.hpp"

using meshbus::wire::pattern;

namespace {
pattern compiled(std::string_view text) {
  pattern p;
  std::string err;
  REQUIRE(pattern::compile(text, p, err));
  return p;
}
}  // namespace

TEST_CASE("wildcard matching follows the table", "[unit][topic]") {
  struct row {
    const char* pattern;
    const char* topic;
    bool matches;
  };
  const row table[] = {
      {"orders.eu.placed", "orders.eu.placed", true},
      {"orders.eu.placed", "orders.eu.placedx", false},
      {"orders.eu.placed", "orders.eu", false},
      {"orders.*.placed", "orders.eu.placed", true},
      {"orders.*.placed", "orders.placed", false},
      {"orders.*.placed", "orders.eu.us.placed", false},
      {"orders.*", "orders.eu", true},
      {"orders.*", "orders", false},
      {"orders.*", "orders.eu.placed", false},
      {"*", "orders", true},
      {"*", "orders.eu", false},
      {"orders.**", "orders", true},
      {"orders.**", "orders.eu", true},
      {"orders.**", "orders.eu.placed.v2", true},
      {"orders.**", "ordersx.eu", false},
      {"orders.**", "billing.orders", false},
      {"**", "a", true},
      {"**", "a.b.c.d", true},
      {"**.placed", "orders.eu.placed", true},
      {"**.placed", "placed", true},
      {"**.placed", "orders.placed.not", false},
      {"orders.**.placed", "orders.placed", true},
      {"orders.**.placed", "orders.eu.de.placed", true},
      {"orders.**.placed", "orders.eu.de.shipped", false},
      {"*.*.placed", "orders.eu.placed", true},
      {"*.*.placed", "orders.placed", false},
      {"**.*", "a", true},
      {"**.*", "a.b", true},
      {"a.**.b.**.c", "a.x.b.y.c", true},
      {"a.**.b.**.c", "a.b.c", true},
      {"a.**.b.**.c", "a.c.b", false},
      {"a.**.**.b", "a.b", true},
      {"**", "$meshbus.peers", false},
      {"*.peers", "$meshbus.peers", false},
      {"sensors.é.temp", "sensors.é.temp", true},
  };
  for (const auto& r : table) {
    INFO("pattern '" << r.pattern << "' topic '" << r.topic << "'");
    CHECK(compiled(r.pattern).matches(r.topic) == r.matches);
  }
}

TEST_CASE("the ZeroMQ prefix is the literal part and lets every match through", "[unit][topic]") {
  CHECK(compiled("orders.eu.placed").zmq_prefix() == std::string("orders.eu.placed\0", 17));
  CHECK(compiled("orders.*.placed").zmq_prefix() == "orders.");
  CHECK(compiled("orders.**").zmq_prefix() == "orders");  // "**" may match zero segments
  CHECK(compiled("**").zmq_prefix().empty());
  CHECK(compiled("*.x").zmq_prefix().empty());
  CHECK(compiled("a.b.**.c").zmq_prefix() == "a.b");
  // Every topic a pattern matches starts with its prefix (with the NUL after the topic).
  for (const char* pat : {"orders.**", "orders.*.placed", "a.b.**.c", "x.y"}) {
    const auto p = compiled(pat);
    for (const char* topic : {"orders", "orders.eu.placed", "a.b.c", "a.b.z.c", "x.y"}) {
      if (!p.matches(topic)) continue;
      const std::string frame = std::string(topic) + '\0';
      CHECK(frame.rfind(p.zmq_prefix(), 0) == 0);
    }
  }
}

TEST_CASE("invalid topics are refused with a sentence that says why", "[unit][topic]") {
  using meshbus::wire::topic_error;
  CHECK(topic_error("orders.eu.placed").empty());
  CHECK(topic_error("a").empty());
  CHECK_THAT(topic_error(""), Catch::Contains("empty"));
  CHECK_THAT(topic_error("a..b"), Catch::Contains("empty"));
  CHECK_THAT(topic_error(".a"), Catch::Contains("empty"));
  CHECK_THAT(topic_error("a."), Catch::Contains("end with a dot"));
  CHECK_THAT(topic_error("a b"), Catch::Contains("spaces"));
  CHECK_THAT(topic_error(std::string("a\0b", 3)), Catch::Contains("control"));
  CHECK_THAT(topic_error("a.*"), Catch::Contains("wildcard"));
  CHECK_THAT(topic_error("$meshbus.x"), Catch::Contains("reserved"));
  CHECK(topic_error("$meshbus.x", true).empty());
  CHECK_THAT(topic_error(std::string(256, 'a')), Catch::Contains("255"));
  CHECK(topic_error(std::string(255, 'a')).empty());
  CHECK_THAT(topic_error("bad\xff.utf8"), Catch::Contains("UTF-8"));
  CHECK_THAT(topic_error("over\xc0\xaf.long"), Catch::Contains("UTF-8"));
}

TEST_CASE("invalid patterns are refused", "[unit][topic]") {
  pattern p;
  std::string err;
  CHECK_FALSE(pattern::compile("orders.e*", p, err));
  CHECK_THAT(err, Catch::Contains("whole segment"));
  CHECK_FALSE(pattern::compile("***", p, err));
  CHECK_FALSE(pattern::compile("", p, err));
  CHECK_FALSE(pattern::compile("a..b", p, err));
  CHECK(pattern::compile("a.*.**", p, err));
  CHECK(pattern::compile("$dlq.**", p, err));  // reserved topics can be subscribed to
  CHECK(p.matches("$dlq.orders.placed"));
}

TEST_CASE("the public topic helpers agree with the node", "[unit][topic]") {
  CHECK(meshbus::topic_matches("sensors.*.temperature", "sensors.s1.temperature"));
  CHECK_FALSE(meshbus::topic_matches("sensors.*.temperature", "sensors.s1.humidity"));
  CHECK_THROWS_AS(meshbus::topic_matches("bad*", "x"), meshbus::error);
  CHECK(meshbus::topic_error("x.y").empty());
  CHECK_FALSE(meshbus::pattern_error("x.y*").empty());
}
