// Competing consumers, publisher side: load spreading, acks, a member leaving with
// unfinished work, the backlog while no member is there, redelivery, draining members
// that finish or hand back what they hold, numbering that goes on across a rejoin, and
// the group's scope.
#include <catch2/catch.hpp>

#include <set>

#include "lib/reliability/group_assigner.hpp"

using namespace meshbus::reliability;
using namespace std::chrono_literals;

namespace {
const clock::time_point t0{};
meshbus::wire::node_id_bytes member(std::uint8_t n) {
  meshbus::wire::node_id_bytes id{};
  id[0] = n;
  return id;
}
using assigner = group_assigner<int>;
}  // namespace

TEST_CASE("a group's batches are spread over its members, each batch to one", "[unit][groups]") {
  assigner g({});
  std::vector<assigner::send> out;
  g.join("billing", member(1), t0, out);
  g.join("billing", member(2), t0, out);
  g.join("billing", member(3), t0, out);
  for (int i = 0; i < 30; ++i) g.assign("billing", "t", 1, int(i), t0, out);
  REQUIRE(out.size() == 30);
  std::map<std::uint8_t, int> per_member;
  std::set<int> payloads;
  for (const auto& s : out) {
    ++per_member[s.member[0]];
    payloads.insert(*s.payload);
  }
  CHECK(per_member == std::map<std::uint8_t, int>{{1, 10}, {2, 10}, {3, 10}});
  CHECK(payloads.size() == 30);
  CHECK(g.unacknowledged() == 30);
}

TEST_CASE("the least loaded member gets the next batch", "[unit][groups]") {
  assigner g({});
  std::vector<assigner::send> out;
  g.join("g", member(1), t0, out);
  g.join("g", member(2), t0, out);
  g.assign("g", "t", 100, 1, t0, out);  // member A: 100 unacknowledged
  g.assign("g", "t", 1, 2, t0, out);    // member B
  g.assign("g", "t", 1, 3, t0, out);    // member B again: it has far less
  REQUIRE(out.size() == 3);
  CHECK(out[1].member == out[2].member);
  CHECK(out[0].member != out[1].member);
}

TEST_CASE("acks are cumulative per member and group", "[unit][groups]") {
  assigner g({});
  std::vector<assigner::send> out;
  g.join("g", member(1), t0, out);
  for (int i = 0; i < 5; ++i) g.assign("g", "t", 2, int(i), t0, out);
  CHECK(g.unacknowledged() == 10);
  CHECK(g.ack(member(1), "g", 3, t0));
  CHECK(g.unacknowledged() == 4);
  CHECK_FALSE(g.ack(member(1), "g", 6, t0));  // never assigned
  CHECK_FALSE(g.ack(member(9), "g", 1, t0));
  CHECK_FALSE(g.ack(member(1), "other", 1, t0));
  CHECK(g.ack(member(1), "g", 5, t0));
  CHECK(g.all_acknowledged());
}

TEST_CASE("a member that leaves hands its unfinished work to the others, in order", "[unit][groups]") {
  assigner g({});
  std::vector<assigner::send> out;
  g.join("g", member(1), t0, out);
  g.join("g", member(2), t0, out);
  for (int i = 0; i < 10; ++i) g.assign("g", "t", 1, int(i), t0, out);
  std::vector<int> of_one;
  for (const auto& s : out) {
    if (s.member == member(1)) of_one.push_back(*s.payload);
  }
  REQUIRE(of_one.size() == 5);
  // Member 1 finished its first two, then died.
  CHECK(g.ack(member(1), "g", 2, t0));
  out.clear();
  CHECK(g.leave("", member(1), t0, out) == 3);
  REQUIRE(out.size() == 3);
  for (std::size_t k = 0; k < 3; ++k) {
    CHECK(out[k].member == member(2));
    CHECK(*out[k].payload == of_one[k + 2]);
  }
  CHECK(out[0].seq == 6);  // member 2's own sequence goes on
  CHECK(g.unacknowledged() == 8);
  CHECK(g.reassigned() == 3);
}

TEST_CASE("with no member left, work waits and goes to the next one that joins", "[unit][groups]") {
  group_config cfg;
  cfg.max_backlog = 3;
  assigner g(cfg);
  std::vector<assigner::send> out;
  for (int i = 0; i < 5; ++i) g.assign("g", "t", 1, int(i), t0, out);
  CHECK(out.empty());
  CHECK(g.backlog() == 3);
  CHECK(g.backlog_dropped() == 2);  // counted, the oldest went
  g.join("g", member(7), t0, out);
  REQUIRE(out.size() == 3);
  CHECK(*out[0].payload == 2);
  CHECK(out[2].seq == 3);
}

TEST_CASE("a member without progress gets its work again, with backoff", "[unit][groups]") {
  group_config cfg;
  cfg.redelivery_timeout = 100ms;
  assigner g(cfg);
  std::vector<assigner::send> out;
  g.join("g", member(1), t0, out);
  g.assign("g", "t", 1, 42, t0, out);
  out.clear();
  g.due(t0 + 50ms, out);
  CHECK(out.empty());
  g.due(t0 + 100ms, out);
  REQUIRE(out.size() == 1);
  CHECK(*out[0].payload == 42);
  out.clear();
  g.due(t0 + 250ms, out);
  CHECK(out.empty());
  g.due(t0 + 300ms, out);
  CHECK(out.size() == 1);
  out.clear();
  std::vector<seq_range> gone;
  CHECK(g.nack(member(1), "g", 1, 1, t0, out, gone));
  CHECK(out.size() == 1);
  CHECK(gone.empty());
}

TEST_CASE("a member's window fills with unacknowledged events", "[unit][groups]") {
  group_config cfg;
  cfg.window = 10;
  assigner g(cfg);
  std::vector<assigner::send> out;
  g.join("g", member(1), t0, out);
  g.assign("g", "t", 10, 1, t0, out);
  CHECK(g.window_full());
  g.ack(member(1), "g", 1, t0);
  CHECK_FALSE(g.window_full());
}

TEST_CASE("a NACK from an active member resends what it holds and names what it does not", "[unit][groups]") {
  assigner g({});
  std::vector<assigner::send> out;
  g.join("g", member(1), t0, out);
  for (int i = 0; i < 4; ++i) g.assign("g", "t", 1, int(i), t0, out);
  CHECK(g.ack(member(1), "g", 2, t0));
  out.clear();
  std::vector<seq_range> gone;
  CHECK(g.nack(member(1), "g", 1, 4, t0, out, gone));
  REQUIRE(out.size() == 2);
  CHECK(out[0].seq == 3);
  CHECK(out[1].seq == 4);
  CHECK(gone == std::vector<seq_range>{{1, 2}});
  gone.clear();
  CHECK_FALSE(g.nack(member(1), "g", 3, 9, t0, out, gone));  // 5.. never assigned
  CHECK_FALSE(g.nack(member(2), "g", 1, 1, t0, out, gone));  // never a member
}

TEST_CASE("a retired member keeps its work, takes no new work, and finishes or hands back",
          "[unit][groups]") {
  assigner g({});
  std::vector<assigner::send> out;
  g.join("g", member(1), t0, out);
  g.join("g", member(2), t0, out);
  for (int i = 0; i < 4; ++i) g.assign("g", "t", 1, int(i), t0, out);
  std::vector<std::uint64_t> seqs_of_one;
  for (const auto& s : out) {
    if (s.member == member(1)) seqs_of_one.push_back(s.seq);
  }
  REQUIRE(seqs_of_one == std::vector<std::uint64_t>{1, 2});
  g.retire("g", member(1));
  CHECK(g.is_draining("g", member(1)));
  CHECK(g.has_members("g"));
  out.clear();
  for (int i = 10; i < 14; ++i) g.assign("g", "t", 1, int(i), t0, out);
  for (const auto& s : out) CHECK(s.member == member(2));
  // It finished its first; it cannot take its second and asks for it again.
  CHECK(g.ack(member(1), "g", 1, t0));
  out.clear();
  std::vector<seq_range> gone;
  CHECK(g.nack(member(1), "g", 2, 2, t0, out, gone));
  REQUIRE(out.size() == 1);
  CHECK(out[0].member == member(2));
  CHECK(*out[0].payload == 2);
  CHECK(gone == std::vector<seq_range>{{2, 2}});
  CHECK(g.reassigned() == 1);
  // Holding nothing, it is no member any more; a late ack or NACK is still understood.
  CHECK_FALSE(g.is_draining("g", member(1)));
  CHECK(g.ack(member(1), "g", 2, t0));
  gone.clear();
  CHECK(g.nack(member(1), "g", 1, 2, t0, out, gone));
  CHECK(gone == std::vector<seq_range>{{1, 2}});
}

TEST_CASE("a member that joins again goes on with its numbering, one that left starts anew",
          "[unit][groups]") {
  assigner g({});
  std::vector<assigner::send> out;
  g.join("g", member(1), t0, out);
  for (int i = 0; i < 3; ++i) g.assign("g", "t", 1, int(i), t0, out);
  CHECK(g.ack(member(1), "g", 3, t0));
  g.retire("g", member(1));  // holds nothing: retired at once
  CHECK_FALSE(g.has_members("g"));
  out.clear();
  g.join("g", member(1), t0, out);
  g.assign("g", "t", 1, 7, t0, out);
  REQUIRE(out.size() == 1);
  CHECK(out[0].seq == 4);
  CHECK(g.ack(member(1), "g", 4, t0));
  out.clear();
  g.leave("", member(1), t0, out);  // gone (a restart): the next life starts at 1
  g.join("g", member(1), t0, out);
  out.clear();
  g.assign("g", "t", 1, 8, t0, out);
  REQUIRE(out.size() == 1);
  CHECK(out[0].seq == 1);
}

TEST_CASE("a draining member without progress loses its work to the others", "[unit][groups]") {
  group_config cfg;
  cfg.redelivery_timeout = 100ms;
  cfg.draining_attempts = 1;
  assigner g(cfg);
  std::vector<assigner::send> out;
  g.join("g", member(1), t0, out);
  g.assign("g", "t", 1, 5, t0, out);
  g.join("g", member(2), t0, out);
  g.retire("g", member(1));
  out.clear();
  g.due(t0 + 100ms, out);  // first: sent to it again
  REQUIRE(out.size() == 1);
  CHECK(out[0].member == member(1));
  out.clear();
  g.due(t0 + 300ms, out);  // then: to the others
  REQUIRE(out.size() == 1);
  CHECK(out[0].member == member(2));
  CHECK(*out[0].payload == 5);
  CHECK_FALSE(g.is_draining("g", member(1)));
  CHECK(g.unacknowledged() == 1);
}

TEST_CASE("work outside a group's scope is dropped, not given to members that cannot handle it",
          "[unit][groups]") {
  group_config cfg;
  assigner g(cfg);
  std::vector<assigner::send> out;
  g.join("g", member(1), t0, out);
  g.assign("g", "a.x", 1, 1, t0, out);
  g.assign("g", "b.x", 1, 2, t0, out);
  g.join("g", member(2), t0, out);
  g.retire("g", member(2));  // draining members keep theirs
  g.join("g", member(3), t0, out);
  g.assign("g", "b.y", 1, 3, t0, out);  // to member 3
  REQUIRE(out.size() == 3);
  g.set_scope("g", [](std::string_view topic) { return topic.rfind("a.", 0) == 0; });
  CHECK(g.out_of_scope() == 2);  // b.x of member 1 and b.y of member 3
  CHECK(g.unacknowledged() == 1);
  // Handed on from a leaving member, or waiting: the same.
  out.clear();
  g.leave("", member(1), t0, out);
  REQUIRE(out.size() == 1);
  CHECK(*out[0].payload == 1);
  out.clear();
  g.assign("g", "b.z", 1, 4, t0, out);
  CHECK(out.empty());
  CHECK(g.out_of_scope() == 3);
}

TEST_CASE("a suspended member keeps its work and numbering until it is back or gone for good",
          "[unit][groups]") {
  group_config cfg;
  cfg.window = 4;
  assigner g(cfg);
  std::vector<assigner::send> out;
  g.join("g", member(1), t0, out);
  g.join("g", member(2), t0, out);
  for (int i = 0; i < 8; ++i) g.assign("g", "t", 1, int(i), t0, out);
  CHECK(g.window_full());  // each holds 4
  out.clear();
  g.suspend(member(1));  // expired: maybe paused or cut off
  CHECK_FALSE(g.is_active("g", member(1)));
  CHECK(g.unacknowledged(member(1)) == 4);  // its own still
  CHECK(g.ack(member(2), "g", 4, t0));
  CHECK_FALSE(g.window_full());  // the absent member holds nobody up
  g.assign("g", "t", 1, 100, t0, out);
  REQUIRE(out.size() == 1);
  CHECK(out[0].member == member(2));  // new work goes to the others
  CHECK(g.ack(member(2), "g", 5, t0));
  out.clear();
  g.due(t0 + 1h, out);
  CHECK(out.empty());  // neither redelivered nor handed on meanwhile
  std::vector<seq_range> gone;
  CHECK(g.nack(member(1), "g", 1, 4, t0, out, gone));
  CHECK(out.empty());  // a NACK before it is back moves nothing
  CHECK(gone.empty());

  SECTION("back with its window: it goes on with its work and its numbering") {
    g.join("g", member(1), t0 + 1h, out);
    CHECK(g.is_active("g", member(1)));
    CHECK(g.nack(member(1), "g", 3, 4, t0 + 1h, out, gone));
    REQUIRE(out.size() == 2);  // its own, again, to it
    CHECK(out[0].member == member(1));
    CHECK(out[0].seq == 3);
    CHECK(g.reassigned() == 0);
    CHECK(g.ack(member(1), "g", 4, t0 + 1h));
    out.clear();
    g.assign("g", "t", 1, 101, t0 + 1h, out);
    g.assign("g", "t", 1, 102, t0 + 1h, out);
    bool numbered_on = false;
    for (const auto& s : out) numbered_on |= s.member == member(1) && s.seq == 5;
    CHECK(numbered_on);
  }
  SECTION("gone for good: its work goes to the others") {
    CHECK(g.leave("", member(1), t0 + 1h, out) == 4);
    REQUIRE(out.size() == 4);
    for (const auto& s : out) CHECK(s.member == member(2));
    CHECK(g.unacknowledged(member(1)) == 0);
  }
}
