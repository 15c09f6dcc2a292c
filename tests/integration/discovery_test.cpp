// Discovery without beacons: one seed is enough for a whole mesh (gossip); two
// clusters on one beacon port ignore each other.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

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

TEST_CASE("Node::seeds() shows each configured seed and whether it answered", "[integration][discovery]") {
  const auto cluster = unique_cluster("seed-state");
  auto os = fast_options(cluster, "seed");
  os.beacon_port = lonely_beacon_port();
  Node seed(os);

  auto ob = fast_options(cluster, "b");
  ob.beacon_port = lonely_beacon_port();
  ob.seeds = {"127.0.0.1:" + std::to_string(seed.router_port()), "no-such-host.invalid:7000"};
  Node b(ob);
  REQUIRE(b.wait_for_peers(1, 10s));
  REQUIRE(eventually([&] {
    const auto seeds = b.seeds();
    return seeds.size() == 2 && seeds[0].state == SeedState::answered && seeds[0].node == seed.id() &&
           seeds[1].state == SeedState::unresolvable && !seeds[1].node;
  }, 10s));
  CHECK(b.seeds()[1].address == "no-such-host.invalid:7000");
}

TEST_CASE("a beacon port held by another program is a clear error naming the option", "[integration][discovery]") {
  // A UDP socket without SO_REUSEPORT: the node cannot share its port.
  const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  socklen_t len = sizeof addr;
  REQUIRE(::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  auto o = fast_options(unique_cluster("busy-port"), "a");
  o.beacon_port = ntohs(addr.sin_port);
  try {
    Node n(o);
    FAIL("a node started on a beacon port it cannot share");
  } catch (const meshbus::error& e) {
    CHECK(e.code() == make_error_code(errc::address_in_use));
    CHECK_THAT(e.what(), Catch::Contains("MESHBUS_BEACON_PORT") && Catch::Contains("beacon_port"));
  }
  ::close(fd);
}
