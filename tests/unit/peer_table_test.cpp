// The peer state machine, driven by a hand clock: joined -> suspect -> gone,
// alive again, restart by epoch, goodbye, and tombstones against stale gossip.
#include <catch2/catch.hpp>

#include "discovery/peer_table.hpp"

using namespace meshbus::discovery;
using namespace std::chrono_literals;

namespace {
meshbus::wire::node_id_bytes id(std::uint8_t n) {
  meshbus::wire::node_id_bytes b{};
  b[0] = n;
  return b;
}
const peer_endpoint ep{"127.0.0.1", 1000, 1001};
const clock::time_point t0{};
}  // namespace

TEST_CASE("a new peer joins, turns suspect when silent, and is gone after expiry", "[unit][peers]") {
  peer_table table({3s, 5s});
  auto t = table.heard(id(1), 10, ep, peer_source::beacon, t0);
  REQUIRE(t);
  CHECK(t->change == peer_change::joined);
  CHECK_FALSE(table.heard(id(1), 10, ep, peer_source::beacon, t0 + 1s));  // nothing new

  std::vector<peer_transition> out;
  table.tick(t0 + 3s, out);  // 2 s since last heard
  CHECK(out.empty());
  table.tick(t0 + 4s, out);  // 3 s: suspect
  REQUIRE(out.size() == 1);
  CHECK(out[0].change == peer_change::suspect);
  CHECK(table.find(id(1))->state == peer_state::suspect);
  out.clear();
  table.tick(t0 + 5s, out);  // suspect is reported once
  CHECK(out.empty());
  table.tick(t0 + 6s, out);  // 5 s: gone
  REQUIRE(out.size() == 1);
  CHECK(out[0].change == peer_change::left);
  CHECK(table.find(id(1)) == nullptr);
}

TEST_CASE("a suspect peer heard again is alive again", "[unit][peers]") {
  peer_table table({3s, 5s});
  table.heard(id(1), 10, ep, peer_source::beacon, t0);
  std::vector<peer_transition> out;
  table.tick(t0 + 3500ms, out);
  REQUIRE(out.size() == 1);
  auto t = table.heard(id(1), 10, ep, peer_source::beacon, t0 + 4s);
  REQUIRE(t);
  CHECK(t->change == peer_change::alive_again);
  out.clear();
  table.tick(t0 + 8s, out);  // 4 s after being heard: suspect again, not gone
  REQUIRE(out.size() == 1);
  CHECK(out[0].change == peer_change::suspect);
}

TEST_CASE("a new epoch means the peer restarted", "[unit][peers]") {
  peer_table table({3s, 5s});
  table.heard(id(1), 10, ep, peer_source::beacon, t0);
  const peer_endpoint moved{"127.0.0.1", 2000, 2001};
  auto t = table.heard(id(1), 11, moved, peer_source::beacon, t0 + 1s);
  REQUIRE(t);
  CHECK(t->change == peer_change::restarted);
  CHECK(t->endpoint == moved);
  CHECK(table.find(id(1))->epoch == 11);
  CHECK_FALSE(table.heard(id(1), 0, ep, peer_source::gossip, t0 + 2s));  // epoch 0: unknown, no restart
}

TEST_CASE("goodbye removes a peer at once and late messages do not bring it back", "[unit][peers]") {
  peer_table table({3s, 5s});
  table.heard(id(1), 10, ep, peer_source::beacon, t0);
  auto t = table.goodbye(id(1), t0 + 1s);
  REQUIRE(t);
  CHECK(t->change == peer_change::left);
  CHECK(table.find(id(1)) == nullptr);
  CHECK_FALSE(table.goodbye(id(1), t0 + 1s));
  // A beacon of the same epoch still in flight is ignored...
  CHECK_FALSE(table.heard(id(1), 10, ep, peer_source::beacon, t0 + 1100ms));
  CHECK(table.find(id(1)) == nullptr);
  // ...a restart (new epoch) is welcome at once.
  auto again = table.heard(id(1), 12, ep, peer_source::beacon, t0 + 2s);
  REQUIRE(again);
  CHECK(again->change == peer_change::joined);
}

TEST_CASE("an expired peer heard again rejoins (partition healed)", "[unit][peers]") {
  peer_table table({3s, 5s});
  table.heard(id(1), 10, ep, peer_source::beacon, t0);
  std::vector<peer_transition> out;
  table.tick(t0 + 6s, out);
  REQUIRE(table.find(id(1)) == nullptr);
  auto t = table.heard(id(1), 10, ep, peer_source::beacon, t0 + 7s);
  REQUIRE(t);
  CHECK(t->change == peer_change::joined);
}

TEST_CASE("gossip about a recently gone peer is not believed", "[unit][peers]") {
  peer_table table({3s, 5s});
  table.heard(id(1), 10, ep, peer_source::beacon, t0);
  std::vector<peer_transition> out;
  table.tick(t0 + 6s, out);
  CHECK(table.recently_gone(id(1), t0 + 7s));
  CHECK_FALSE(table.heard(id(1), 0, ep, peer_source::gossip, t0 + 7s));
  CHECK(table.find(id(1)) == nullptr);
  table.tick(t0 + 12s, out);  // tombstone expired
  CHECK_FALSE(table.recently_gone(id(1), t0 + 12s));
  CHECK(table.heard(id(1), 0, ep, peer_source::gossip, t0 + 12s));
}

TEST_CASE("peers are tracked independently", "[unit][peers]") {
  peer_table table({3s, 5s});
  table.heard(id(1), 1, ep, peer_source::beacon, t0);
  table.heard(id(2), 1, ep, peer_source::seed, t0 + 2s);
  std::vector<peer_transition> out;
  table.tick(t0 + 3s, out);
  REQUIRE(out.size() == 1);
  CHECK(out[0].id == id(1));
  CHECK(table.alive_count() == 1);
}

TEST_CASE("the table says when its next transition falls due", "[unit][peers]") {
  peer_table table({3s, 5s});
  CHECK(table.next_due() == clock::time_point::max());  // nothing to watch: no wake-ups
  (void)table.heard(id(1), 10, ep, peer_source::beacon, t0);
  (void)table.heard(id(2), 20, ep, peer_source::beacon, t0 + 1s);
  CHECK(table.next_due() == t0 + 3s);  // peer 1 turns suspect
  std::vector<peer_transition> out;
  table.tick(t0 + 3s, out);
  CHECK(table.next_due() == t0 + 4s);  // peer 2 turns suspect; peer 1 is gone at 5 s
  table.tick(t0 + 4s, out);
  CHECK(table.next_due() == t0 + 5s);
  table.tick(t0 + 6s, out);             // both gone, tombstones until 11 s and 11 s
  CHECK(table.find(id(1)) == nullptr);
  CHECK(table.find(id(2)) == nullptr);
  CHECK(table.next_due() == t0 + 11s);
  table.tick(t0 + 11s, out);
  CHECK(table.next_due() == clock::time_point::max());
}

TEST_CASE("the time this node did not run does not count against its peers", "[unit][peers]") {
  peer_table table({3s, 5s});
  REQUIRE(table.heard(id(1), 10, ep, peer_source::beacon, t0));
  REQUIRE(table.heard(id(2), 10, ep, peer_source::beacon, t0 + 2s));
  // This node was stopped from t0 + 2 s to t0 + 12 s.
  table.credit(10s, t0 + 12s);
  std::vector<peer_transition> out;
  table.tick(t0 + 12s, out);
  CHECK(out.empty());  // peer 1: 2 s of silence that counts; peer 2: none
  table.tick(t0 + 13s, out);
  REQUIRE(out.size() == 1);  // peer 1: 3 s, suspect
  CHECK(out[0].change == peer_change::suspect);
  CHECK(out[0].id == id(1));
  out.clear();
  table.tick(t0 + 15s, out);  // peer 1 gone after 5 s of its own silence; peer 2 suspect
  REQUIRE(out.size() == 2);
  CHECK(out[0].change == peer_change::left);
  CHECK(out[1].change == peer_change::suspect);
}
