// Discovery without beacons: one seed is enough for a whole mesh (gossip); two
// clusters on one beacon port ignore each other.
#include <catch2/catch.hpp>

#include <random>

#include "tests/support/node_helpers.hpp"

using namespace meshbus;
using namespace meshbus::test;
using namespace std::chrono_literals;

namespace {
// Each node gets a beacon port of its own, so no node hears another's beacons.
std::uint16_t lonely_beacon_port() {
  static std::random_device rd;
  return static_cast<std::uint16_t>(20000 + rd() % 40000);
}
}  // namespace

TEST_CASE("a mesh forms through one seed when beacons cannot reach", "[integration][discovery]") {
  const auto cluster = unique_cluster("seeds");
  auto os = fast_options(cluster, "seed");
  os.beacon_port = lonely_beacon_port();
  Node seed(os);
  const auto seed_address = "127.0.0.1:" + std::to_string(seed.router_port());

  auto ob = fast_options(cluster, "b");
  ob.beacon_port = lonely_beacon_port();
  ob.seeds = {seed_address};
  Node b(ob);
  REQUIRE(b.wait_for_peers(1, 10s));

  auto oc = fast_options(cluster, "c");
  oc.beacon_port = lonely_beacon_port();
  oc.seeds = {seed_address};
  Node c(oc);
  // c knows only the seed, yet meets b (and b meets c) through gossip.
  REQUIRE(c.wait_for_peers(2, 10s));
  REQUIRE(b.wait_for_peers(2, 10s));
  REQUIRE(seed.wait_for_peers(2, 10s));

  event_log log;
  c.subscribe("via.gossip", log.handler());
  REQUIRE(b.wait_for_subscribers("via.gossip", 1, 10s));
  REQUIRE(b.publish("via.gossip", "hi") == PublishResult::ok);
  REQUIRE(log.wait_for(1));
  CHECK(c.stats().foreign_cluster_beacons == 0);
}

TEST_CASE("a seed that starts late is found when it comes up", "[integration][discovery]") {
  const auto cluster = unique_cluster("lateseed");
  auto os = fast_options(cluster, "seed");
  os.beacon_port = lonely_beacon_port();
  // Reserve a port by starting and stopping a node on it.
  std::uint16_t port = 0;
  {
    Node probe(os);
    port = probe.router_port();
  }
  auto ob = fast_options(cluster, "b");
  ob.beacon_port = lonely_beacon_port();
  ob.seeds = {"127.0.0.1:" + std::to_string(port)};
  Node b(ob);
  CHECK_FALSE(b.wait_for_peers(1, 300ms));
  os.router_port = port;
  Node seed(os);
  REQUIRE(b.wait_for_peers(1, 10s));
  CHECK(b.peers().at(0).name == "seed");
}

TEST_CASE("two clusters on one beacon port ignore each other", "[integration][discovery]") {
  auto o1 = fast_options(unique_cluster("red"), "red");
  auto o2 = fast_options(unique_cluster("blue"), "blue");
  o2.beacon_port = o1.beacon_port = lonely_beacon_port();
  Node red(o1);
  Node blue(o2);
  REQUIRE(eventually([&] { return red.stats().foreign_cluster_beacons >= 2; }, 5s));
  CHECK(red.peers().empty());
  CHECK(blue.peers().empty());
}
