// The publisher side's stream state machine on a hand-driven clock: repairs from
// history (shared, never copied), LOSS for what history lacks, ack tracking for
// flush and flow control, redelivery, and service-group assignment and hand-over.
#include <catch2/catch.hpp>

#include "tests/unit/reliability_support.hpp"

using namespace meshbus;
using namespace meshbus::reliability;
using namespace meshbus::test;
using namespace std::chrono_literals;

namespace {

constexpr std::uint64_t epoch = 7;
const auto alice = node(2);
const auto bob = node(3);
const auto carol = node(4);

struct publisher {
  explicit publisher(history_limits history = {}, std::uint64_t window = 1000) {
    tracker_config t;
    t.window = window;
    t.redelivery_timeout = 100ms;
    group_config g;
    g.redelivery_timeout = 100ms;
    streams = std::make_unique<publisher_streams>(history, t, g, epoch, sink, counters.publisher());
  }
  counter_set counters;
  recording_publisher_sink sink;
  std::unique_ptr<publisher_streams> streams;
  clock::time_point now = clock::time_point{} + 1s;
  std::uint64_t next_seq = 1;

  /// Sends `count` events on `topic`; returns the frame's bytes.
  const void* send(std::string_view topic, std::uint32_t count, std::size_t payload = 1000) {
    auto f = batch_frame(topic, payload);
    const void* data = f.data();
    streams->sent(topic, next_seq, count, std::move(f), now);
    next_seq += count;
    return data;
  }
  void subscribe(const wire::node_id_bytes& who, std::string pattern, std::uint8_t mode = 1,
                 std::string group = {}) {
    streams->set_subscriber(who, {wire::pattern_spec{std::move(pattern), mode, std::move(group)}}, true, now);
  }
};

}  // namespace

TEST_CASE("a NACK is answered from history with shares of the frames sent", "[unit][reliability]") {
  publisher p;
  p.subscribe(alice, "orders");
  const void* first = p.send("orders", 5);
  p.send("orders", 5);
  p.streams->on_nack(alice, wire::nack_msg{epoch, "orders", {{3, 4}}}, p.now);
  REQUIRE(p.sink.repairs.size() == 1);
  CHECK(p.sink.repairs[0].to == alice);
  CHECK(p.sink.repairs[0].frame.data() == first);  // the same buffer, not a copy
  CHECK(p.sink.losses.empty());
  CHECK(value(p.counters.repairs_sent) == 1);
  CHECK(value(p.counters.nacks_received) == 1);
}

TEST_CASE("a NACK for what history no longer holds is answered with LOSS", "[unit][reliability]") {
  publisher p(history_limits{10, std::size_t{1} << 20});
  p.subscribe(alice, "orders");
  for (int i = 0; i < 4; ++i) p.send("orders", 5);  // 1-20; history keeps 11-20
  p.streams->on_nack(alice, wire::nack_msg{epoch, "orders", {{1, 12}}}, p.now);
  REQUIRE(p.sink.losses.size() == 1);
  CHECK(p.sink.losses[0].second == wire::loss_msg{epoch, "orders", 1, 10});
  CHECK(p.sink.repairs.size() == 1);  // 11-15
  CHECK(value(p.counters.losses_sent) == 1);
}

TEST_CASE("NACKs and acks of another epoch or beyond what was sent are counted as bad",
          "[unit][reliability]") {
  publisher p;
  p.subscribe(alice, "orders");
  p.send("orders", 5);
  p.streams->on_nack(alice, wire::nack_msg{epoch + 1, "orders", {{1, 1}}}, p.now);
  p.streams->on_nack(alice, wire::nack_msg{epoch, "orders", {{4, 9}}}, p.now);  // 6-9 never sent
  CHECK(value(p.counters.bad_nacks) == 2);
  p.streams->on_ack(alice, wire::ack_msg{epoch - 1, {{"orders", 5}}}, p.now);
  p.streams->on_ack(alice, wire::ack_msg{epoch, {{"orders", 9}}}, p.now);
  CHECK(value(p.counters.bad_acks) == 2);
}

TEST_CASE("everything is acknowledged once every tracked subscriber acked it", "[unit][reliability]") {
  publisher p;
  CHECK(p.streams->all_acknowledged());
  p.subscribe(alice, "orders");
  p.subscribe(bob, "orders.**", 0);  // best effort: not tracked
  p.send("orders", 4);
  CHECK_FALSE(p.streams->all_acknowledged());
  CHECK(p.streams->unacknowledged() == 4);
  p.streams->on_ack(alice, wire::ack_msg{epoch, {{"orders", 3}}}, p.now);
  CHECK(p.streams->unacknowledged() == 1);
  p.streams->on_ack(alice, wire::ack_msg{epoch, {{"orders", 4}}}, p.now);
  CHECK(p.streams->all_acknowledged());
  CHECK(value(p.counters.acks_received) == 2);
  // A subscriber that is forgotten holds nobody up.
  p.send("orders", 2);
  p.streams->forget_subscriber(alice, p.now);
  CHECK(p.streams->all_acknowledged());
  CHECK(p.streams->positions(10) == std::vector<std::pair<std::string, std::uint64_t>>{{"orders", 6}});
}

TEST_CASE("a full window of unacknowledged events holds publishing back until acks come",
          "[unit][reliability]") {
  publisher p({}, 10);
  p.subscribe(alice, "orders");
  p.send("orders", 9);
  CHECK_FALSE(p.streams->window_full());
  p.send("orders", 1);
  CHECK(p.streams->window_full());
  p.streams->on_ack(alice, wire::ack_msg{epoch, {{"orders", 5}}}, p.now);
  CHECK_FALSE(p.streams->window_full());
}

TEST_CASE("an acknowledged subscriber without progress gets its events again", "[unit][reliability]") {
  publisher p;
  p.subscribe(alice, "orders", 2);
  p.subscribe(bob, "orders", 1);  // reliable: repaired by NACK, never redelivered
  p.send("orders", 3);
  CHECK(p.streams->next_due() == p.now + 100ms);
  p.now += 99ms;
  p.streams->tick(p.now);
  CHECK(p.sink.repairs.empty());
  p.now += 1ms;
  p.streams->tick(p.now);
  REQUIRE(p.sink.repairs.size() == 1);
  CHECK(p.sink.repairs[0].to == alice);
  CHECK(value(p.counters.redeliveries) == 1);
  p.streams->on_ack(alice, wire::ack_msg{epoch, {{"orders", 3}}}, p.now);
  p.now += 1s;
  p.streams->tick(p.now);
  CHECK(p.sink.repairs.size() == 1);
}

TEST_CASE("each batch of group work goes to one member, and a gone member's work to the others",
          "[unit][reliability][groups]") {
  publisher p;
  p.subscribe(alice, "jobs.*", 2, "workers");
  p.subscribe(bob, "jobs.*", 2, "workers");
  CHECK(p.sink.changes == std::vector<std::string>{"workers [] -> [jobs.*]"});
  const void* first = p.send("jobs.a", 1);
  p.send("jobs.a", 1);
  p.send("other", 1);  // not the group's work
  REQUIRE(p.sink.assignments.size() == 2);
  CHECK(p.sink.assignments[0].to != p.sink.assignments[1].to);
  CHECK(p.sink.assignments[0].seq == 1);
  CHECK(p.sink.assignments[1].seq == 1);
  CHECK(p.sink.assignments[0].frame.data() == first);  // shared with history
  CHECK(p.streams->unacknowledged() == 2);
  const auto gone = p.sink.assignments[0].to;
  const auto stays = p.sink.assignments[1].to;
  p.streams->forget_subscriber(gone, p.now);
  REQUIRE(p.sink.assignments.size() == 3);
  CHECK(p.sink.assignments[2].to == stays);
  CHECK(p.sink.assignments[2].seq == 2);
  CHECK(value(p.counters.group_reassignments) == 1);
  p.streams->on_ack(stays, wire::ack_msg{epoch, {{"$group.workers", 2}}}, p.now);
  CHECK(p.streams->all_acknowledged());
}

TEST_CASE("a member asking for its group work again gets it, and LOSS for what it does not hold",
          "[unit][reliability][groups]") {
  publisher p;
  p.subscribe(alice, "jobs.*", 2, "workers");
  p.send("jobs.a", 1);
  p.streams->on_nack(alice, wire::nack_msg{epoch, "$group.workers", {{1, 1}}}, p.now);
  REQUIRE(p.sink.assignments.size() == 2);
  CHECK(p.sink.assignments[1].seq == 1);
  p.streams->on_ack(alice, wire::ack_msg{epoch, {{"$group.workers", 1}}}, p.now);
  p.streams->on_nack(alice, wire::nack_msg{epoch, "$group.workers", {{1, 1}}}, p.now);
  REQUIRE(p.sink.losses.size() == 1);
  CHECK(p.sink.losses[0].second == wire::loss_msg{epoch, "$group.workers", 1, 1});
}

TEST_CASE("a node subscribing a group with other patterns is reported and gets no work",
          "[unit][reliability][groups]") {
  publisher p;
  p.subscribe(alice, "jobs.*", 2, "workers");
  p.subscribe(bob, "jobs.*", 2, "workers");
  p.subscribe(carol, "jobs.print", 2, "workers");
  REQUIRE(p.sink.conflicts.size() == 1);
  CHECK(p.sink.conflicts[0] == "workers [jobs.print] vs [jobs.*]");
  for (int i = 0; i < 4; ++i) p.send("jobs.print", 1);
  for (const auto& a : p.sink.assignments) CHECK(a.to != carol);
}

TEST_CASE("unacknowledged group work is sent again after the redelivery timeout",
          "[unit][reliability][groups]") {
  publisher p;
  p.subscribe(alice, "jobs.*", 2, "workers");
  p.send("jobs.a", 1);
  p.now += 100ms;
  p.streams->tick(p.now);
  REQUIRE(p.sink.assignments.size() == 2);
  CHECK(p.sink.assignments[1].seq == 1);
  CHECK(value(p.counters.redeliveries) == 1);
}
