// The subscriber side's stream state machines on a hand-driven clock: order,
// duplicates, gaps and their repair, loss reports, where "now" begins, cumulative
// acks, and service-group work with its hand-over. Faults are made by calling the
// methods in the order a lossy network would.
#include <catch2/catch.hpp>

#include "tests/unit/reliability_support.hpp"

using namespace meshbus;
using namespace meshbus::reliability;
using namespace meshbus::test;
using namespace std::chrono_literals;

namespace {

const auto pub = node(1);
constexpr std::uint64_t epoch = 7;
const start_position earliest{start_position::kind::earliest, 1};
const start_position now_start{start_position::kind::now, 0};

struct subscriber {
  counter_set counters;
  test_source source;
  recording_subscriber_sink sink;
  subscriber_streams streams{subscriber_config{}, source, sink, counters.subscriber()};
  clock::time_point now = clock::time_point{} + 1s;

  void data(std::uint64_t first, std::uint32_t count, std::string_view topic = "orders",
            bool repair = false) {
    streams.on_batch(batch_frame(topic), batch(pub, epoch, first, count, topic), topic, repair, now);
  }
  void assignment(std::uint64_t seq, std::string_view topic, std::uint64_t first = 1,
                  std::uint32_t count = 1) {
    streams.on_assignment(pub, epoch, "workers", seq, batch_frame(topic),
                          batch(pub, epoch, first, count, topic), topic, now);
  }
};

}  // namespace

TEST_CASE("a stream's batches reach each subscription once and in order", "[unit][reliability]") {
  subscriber s;
  s.source.add("orders");
  s.source.add("orders.**");
  s.data(1, 2);
  s.data(3, 1);
  s.data(3, 1);  // a duplicate
  s.data(1, 4);  // overlaps what was delivered: only the new event goes on
  CHECK(s.sink.order == std::vector<std::string>{"d1-2", "d1-2", "d3-3", "d3-3", "d4-4", "d4-4"});
  CHECK(value(s.counters.duplicates_dropped) == 1 * 2 + 3 * 2);
  // Each subscription has its own lane, and its deliveries share its key.
  REQUIRE(s.sink.deliveries.size() == 6);
  CHECK(s.sink.deliveries[0].lane.id != s.sink.deliveries[1].lane.id);
  CHECK(s.sink.deliveries[0].key == s.sink.deliveries[2].key);
  CHECK(s.sink.deliveries[0].d.frame.view().substr(0, 6) == "orders");
}

TEST_CASE("a gap is asked for by NACK, again after the retry time, and filled in order",
          "[unit][reliability]") {
  subscriber s;
  s.source.add("orders");
  s.data(1, 1);
  s.data(4, 2);  // 2 and 3 dropped; 4-5 held
  CHECK(value(s.counters.gaps) == 1);
  REQUIRE(s.sink.nacks.size() == 1);
  CHECK(s.sink.nacks[0].topic == "orders");
  CHECK(s.sink.nacks[0].epoch == epoch);
  CHECK(s.sink.nacks[0].ranges == std::vector<std::pair<std::uint64_t, std::uint64_t>>{{2, 3}});
  CHECK(s.streams.next_due(s.now) == s.now + 20ms);
  s.now += 20ms;
  s.streams.tick(s.now);  // the repair was lost too
  CHECK(s.sink.nacks.size() == 2);
  s.data(3, 1, "orders", true);  // repairs arrive out of order
  s.data(2, 1, "orders", true);
  CHECK(s.sink.order == std::vector<std::string>{"d1-1", "d2-2", "d3-3", "d4-5"});
  CHECK(value(s.counters.repairs_received) == 2);
  CHECK(value(s.counters.nacks_sent) == 2);
  // Nothing is left to repair. The ack value moved (busy: the owner ticks soon) ...
  CHECK(s.streams.busy());
  for (int i = 0; i < 10 && s.streams.busy(); ++i) {
    s.now += 5ms;
    s.streams.tick(s.now);
  }
  CHECK_FALSE(s.streams.busy());
  // ... and once it went out, only its repeats are due, every 500 ms for 10 s.
  const auto due = s.streams.next_due(s.now);
  CHECK(due > s.now);
  CHECK(due <= s.now + 500ms);
  for (int i = 0; i < 25; ++i) {
    s.now += 500ms;
    s.streams.tick(s.now);
  }
  CHECK(s.streams.next_due(s.now) == clock::time_point::max());
}

TEST_CASE("a heartbeat reveals a lost tail", "[unit][reliability]") {
  subscriber s;
  s.source.add("orders");
  s.data(1, 1);
  wire::heartbeat hb{pub, epoch, 3, 0};
  s.streams.on_heartbeat(hb, "orders", s.now);
  REQUIRE(s.sink.nacks.size() == 1);
  CHECK(s.sink.nacks[0].ranges == std::vector<std::pair<std::uint64_t, std::uint64_t>>{{2, 3}});
}

TEST_CASE("what history no longer holds is reported lost before what follows it", "[unit][reliability]") {
  subscriber s;
  s.source.add("orders", delivery_mode::reliable, start_position{start_position::kind::sequence, 1});
  s.data(1, 1);
  s.data(6, 1);
  s.streams.on_loss(pub, wire::loss_msg{epoch, "orders", 2, 5}, s.now);
  CHECK(s.sink.order == std::vector<std::string>{"d1-1", "l2-5", "d6-6"});
  REQUIRE(s.sink.losses.size() == 1);
  const auto& r = s.sink.losses[0].report;
  CHECK(r.reason == loss_reason::not_in_history);
  CHECK(r.pattern == "orders");
  CHECK(r.topic == "orders");
  CHECK(r.epoch == epoch);
  CHECK(s.sink.losses[0].key == s.sink.deliveries[0].key);  // in the stream's order
  CHECK(value(s.counters.events_lost) == 4);
  CHECK(value(s.counters.loss_notices) == 1);
  // A LOSS of another epoch is not believed.
  s.streams.on_loss(pub, wire::loss_msg{epoch - 1, "orders", 7, 9}, s.now);
  CHECK(value(s.counters.rejected_sequences) == 1);
}

TEST_CASE("an earliest subscription starts at the oldest held without calling the rest lost",
          "[unit][reliability]") {
  subscriber s;
  s.source.add("orders", delivery_mode::reliable, earliest);
  wire::heartbeat hb{pub, epoch, 10, 0};
  s.streams.on_heartbeat(hb, "orders", s.now);  // asks for 1-10
  s.streams.on_loss(pub, wire::loss_msg{epoch, "orders", 1, 7}, s.now);
  s.data(8, 3, "orders", true);
  CHECK(s.sink.order == std::vector<std::string>{"d8-10"});
  CHECK(value(s.counters.events_lost) == 0);
}

const std::string open_tail = std::to_string(open_end);

TEST_CASE("a publisher that is gone leaves loss reports for what it could not repair",
          "[unit][reliability]") {
  subscriber s;
  s.source.add("orders");
  s.data(1, 1);
  s.data(3, 1);
  s.streams.on_publisher_gone(pub, s.now);
  // The hole, then everything after the last event heard of: where the stream ended
  // is not known (no goodbye), so the notice is open-ended.
  CHECK(s.sink.order == std::vector<std::string>{"d1-1", "l2-2", "d3-3", "l4-" + open_tail});
  CHECK(s.sink.losses[0].report.reason == loss_reason::publisher_gone);
  CHECK(s.sink.losses[1].report.reason == loss_reason::publisher_gone);
  CHECK(value(s.counters.events_lost) == 1);  // an open range counts no events: how many is not known
  CHECK(value(s.counters.loss_notices) == 2);
  CHECK(s.streams.epoch_of(pub) == 0);
}

TEST_CASE("a publisher that said where its streams ended leaves closed loss reports only",
          "[unit][reliability]") {
  subscriber s;
  s.source.add("orders");
  s.source.add("audit.*");
  s.data(1, 3);
  s.data(1, 2, "audit.log");
  s.streams.on_publisher_end(pub, wire::goodbye_msg{epoch, {{"orders", 5}, {"audit.log", 2}}});
  s.streams.on_publisher_gone(pub, s.now);
  // orders: 4-5 never came; audit.log: complete.
  CHECK(s.sink.order == std::vector<std::string>{"d1-3", "d1-2", "l4-5"});
  CHECK(value(s.counters.events_lost) == 2);
}

TEST_CASE("a goodbye of another epoch, or one that lists no such topic, tells nothing",
          "[unit][reliability]") {
  subscriber s;
  s.source.add("orders");
  s.data(1, 3);
  s.streams.on_publisher_end(pub, wire::goodbye_msg{epoch + 1, {{"orders", 9}}});
  s.streams.on_publisher_gone(pub, s.now);
  CHECK(s.sink.order == std::vector<std::string>{"d1-3", "l4-" + open_tail});
}

TEST_CASE("an absent publisher that comes back with its epoch resumes its streams without a loss",
          "[unit][reliability]") {
  subscriber s;
  s.source.add("orders", delivery_mode::reliable, now_start);
  s.streams.on_ready(pub, epoch, wire::ready_msg{1, {{"orders", 0}}}, s.now);
  s.data(1, 3);
  s.streams.on_publisher_absent(pub);  // expired: a partition, or a pause
  s.sink.nacks.clear();
  s.sink.acks.clear();
  // While it is absent nothing is asked for or acknowledged, and nothing is reported.
  s.now += 10s;
  s.streams.tick(s.now);
  CHECK(s.sink.nacks.empty());
  CHECK(s.sink.acks.empty());
  CHECK(s.streams.next_due(s.now) == clock::time_point::max());
  // Back with the same epoch: its READY shows what was published meanwhile.
  s.streams.on_ready(pub, epoch, wire::ready_msg{1, {{"orders", 9}}}, s.now);
  REQUIRE(s.sink.nacks.size() == 1);
  CHECK(s.sink.nacks[0].ranges == std::vector<std::pair<std::uint64_t, std::uint64_t>>{{4, 9}});
  s.data(4, 6, "orders", true);
  CHECK(s.sink.order == std::vector<std::string>{"d1-3", "d4-9"});
  CHECK(value(s.counters.events_lost) == 0);
  CHECK(s.sink.losses.empty());
}

TEST_CASE("an absent publisher that comes back with a new epoch ends the old streams with an open-ended loss",
          "[unit][reliability]") {
  subscriber s;
  s.source.add("orders", delivery_mode::reliable, now_start);
  s.streams.on_ready(pub, epoch, wire::ready_msg{1, {{"orders", 0}}}, s.now);
  s.data(1, 3);
  s.streams.on_publisher_absent(pub);
  s.streams.on_ready(pub, epoch + 1, wire::ready_msg{1, {{"orders", 0}}}, s.now);
  CHECK(s.sink.order == std::vector<std::string>{"d1-3", "l4-" + open_tail});
  CHECK(s.sink.losses[0].report.epoch == epoch);
  CHECK(s.streams.epoch_of(pub) == epoch + 1);
}

TEST_CASE("a publisher's new epoch ends the old streams and an older epoch is rejected",
          "[unit][reliability]") {
  subscriber s;
  s.source.add("orders");
  s.data(1, 1);
  s.data(3, 1);
  const auto h = batch(pub, epoch + 1, 1, 1, "orders");
  s.streams.on_batch(batch_frame("orders"), h, "orders", false, s.now);
  CHECK(s.sink.order == std::vector<std::string>{"d1-1", "l2-2", "d3-3", "l4-" + open_tail, "d1-1"});
  CHECK(s.streams.epoch_of(pub) == epoch + 1);
  s.data(4, 1);  // the old epoch
  CHECK(value(s.counters.rejected_sequences) == 1);
  CHECK(s.sink.deliveries.size() == 3);
}

TEST_CASE("best effort reports a gap at once and moves on", "[unit][reliability]") {
  subscriber s;
  s.source.add("orders", delivery_mode::best_effort);
  s.data(1, 1);
  s.data(4, 1);
  CHECK(s.sink.order == std::vector<std::string>{"d1-1", "l2-3", "d4-4"});
  CHECK(s.sink.losses[0].report.reason == loss_reason::gap);
  CHECK(s.sink.nacks.empty());
}

TEST_CASE("a subscription from now waits for READY to learn where it begins", "[unit][reliability]") {
  subscriber s;
  s.source.add("orders", delivery_mode::reliable, now_start);
  s.data(5, 2);  // before READY: held
  CHECK(s.sink.deliveries.empty());
  wire::ready_msg ready;
  ready.generation = 1;
  ready.positions = {{"orders", 4}};
  s.streams.on_ready(pub, epoch, ready, s.now);
  CHECK(s.sink.order == std::vector<std::string>{"d5-6"});
  // A topic the publisher had not published yet begins at 1.
  s.data(1, 1, "orders.new");
  CHECK(s.sink.deliveries.empty() == false);
}

TEST_CASE("a window whose READY never comes starts at the first batch it holds, counted",
          "[unit][reliability]") {
  subscriber s;
  s.source.add("orders", delivery_mode::reliable, now_start);
  s.data(5, 1);
  s.now += 3s;
  s.streams.tick(s.now);
  CHECK(s.sink.order == std::vector<std::string>{"d5-5"});
  CHECK(value(s.counters.unknown_starts) == 1);
}

TEST_CASE("a stream no subscription matches is counted and not kept", "[unit][reliability]") {
  subscriber s;
  s.source.add("payments");
  s.data(1, 3);
  CHECK(value(s.counters.events_unmatched) == 3);
  CHECK(s.sink.deliveries.empty());
  CHECK(s.streams.epoch_of(pub) == epoch);
}

TEST_CASE("the ack is the least any subscription holds or processed, and flushing sends it at once",
          "[unit][reliability]") {
  subscriber s;
  s.source.add("orders");
  s.source.add("orders", delivery_mode::acknowledged);
  s.source.add("orders", delivery_mode::best_effort);  // holds nobody up
  s.data(1, 10);
  s.streams.tick(s.now);
  CHECK(s.sink.acks.empty());  // the acknowledged one processed nothing yet
  const auto acknowledged = std::find_if(s.sink.deliveries.begin(), s.sink.deliveries.end(),
                                         [](const auto& d) { return d.lane.processed != nullptr; });
  REQUIRE(acknowledged != s.sink.deliveries.end());
  acknowledged->lane.processed->store(6);  // as the handler thread does
  s.streams.tick(s.now);
  CHECK(s.sink.acks.empty());  // not due yet: fewer than ack_every, not ack_interval late
  s.now += 5ms;
  s.streams.tick(s.now);
  REQUIRE(s.sink.acks.size() == 1);
  CHECK(s.sink.acks[0].epoch == epoch);
  CHECK(s.sink.acks[0].acks == std::vector<std::pair<std::string, std::uint64_t>>{{"orders", 6}});
  acknowledged->lane.processed->store(10);
  s.streams.flush_acks(s.now);  // due or not
  REQUIRE(s.sink.acks.size() == 2);
  CHECK(s.sink.acks[1].acks[0].second == 10);
  // Unchanged: sent again after ack_refresh, in case it was lost.
  s.now += 499ms;
  s.streams.tick(s.now);
  CHECK(s.sink.acks.size() == 2);
  s.now += 1ms;
  s.streams.tick(s.now);
  CHECK(s.sink.acks.size() == 3);
  CHECK(value(s.counters.acks_sent) == 3);
}

TEST_CASE("group work goes to every matching subscription of the group and is acked once all finished",
          "[unit][reliability][groups]") {
  subscriber s;
  s.source.add("jobs.*", delivery_mode::acknowledged, earliest, "workers");
  s.source.add("jobs.print", delivery_mode::acknowledged, earliest, "workers");
  s.source.add("jobs.*");  // not the group's: gets no group work
  s.assignment(1, "jobs.print", 40, 3);
  s.assignment(2, "jobs.mail", 43, 1);
  REQUIRE(s.sink.deliveries.size() == 3);
  CHECK(s.sink.order == std::vector<std::string>{"d40-42", "d40-42", "d43-43"});
  for (const auto& d : s.sink.deliveries) CHECK(d.d.on_done);
  s.streams.flush_acks(s.now);
  CHECK(s.sink.acks.empty());  // nothing finished
  s.sink.deliveries[0].d.on_done(work_outcome::finished);
  s.sink.deliveries[2].d.on_done(work_outcome::finished);
  s.streams.flush_acks(s.now);
  CHECK(s.sink.acks.empty());  // assignment 1 still waits for one subscription
  s.sink.deliveries[1].d.on_done(work_outcome::finished);
  s.streams.flush_acks(s.now);
  REQUIRE(s.sink.acks.size() == 1);
  CHECK(s.sink.acks[0].acks == std::vector<std::pair<std::string, std::uint64_t>>{{"$group.workers", 2}});
}

TEST_CASE("group work nobody here can take is asked for again until a subscription returns",
          "[unit][reliability][groups]") {
  subscriber s;
  auto worker = s.source.add("jobs.*", delivery_mode::acknowledged, earliest, "workers");
  s.assignment(1, "jobs.a");
  REQUIRE(s.sink.deliveries.size() == 1);
  // The subscription goes away while its handler runs: the rest is given up.
  s.source.remove(worker);
  s.sink.deliveries[0].d.on_done(work_outcome::abandoned);
  s.sink.clear();
  s.streams.tick(s.now);
  REQUIRE(s.sink.nacks.size() == 1);
  CHECK(s.sink.nacks[0].topic == "$group.workers");
  CHECK(s.sink.nacks[0].ranges == std::vector<std::pair<std::uint64_t, std::uint64_t>>{{1, 1}});
  s.streams.tick(s.now + 10ms);
  CHECK(s.sink.nacks.size() == 1);  // backoff
  s.streams.tick(s.now + 20ms);
  CHECK(s.sink.nacks.size() == 2);
  // A subscription of the group returns: the assignment is handed to it.
  s.source.add("jobs.*", delivery_mode::acknowledged, earliest, "workers");
  s.streams.tick(s.now + 21ms);
  REQUIRE(s.sink.deliveries.size() == 1);
  s.sink.deliveries[0].d.on_done(work_outcome::finished);
  s.streams.flush_acks(s.now + 21ms);
  REQUIRE(s.sink.acks.size() == 1);
  CHECK(s.sink.acks[0].acks[0] == std::pair<std::string, std::uint64_t>{"$group.workers", 1});
}

TEST_CASE("a LOSS on a group stream withdraws the assignments without a loss report",
          "[unit][reliability][groups]") {
  subscriber s;
  s.source.add("jobs.*", delivery_mode::acknowledged, earliest, "workers");
  s.assignment(1, "jobs.a");
  s.assignment(3, "jobs.a");  // 2 missing: NACKed
  REQUIRE(s.sink.nacks.size() == 1);
  CHECK(s.sink.nacks[0].topic == "$group.workers");
  // The publisher gave 2 to another member, and 1 (still running here) as well.
  s.streams.on_loss(pub, wire::loss_msg{epoch, "$group.workers", 1, 2}, s.now);
  CHECK(s.sink.losses.empty());
  CHECK(s.sink.order == std::vector<std::string>{"d1-1", "d1-1"});  // assignment 3 is delivered now
  s.sink.deliveries[0].d.on_done(work_outcome::finished);           // withdrawn meanwhile: ignored
  s.sink.deliveries[1].d.on_done(work_outcome::finished);
  s.streams.flush_acks(s.now);
  REQUIRE(s.sink.acks.size() == 1);
  CHECK(s.sink.acks[0].acks[0].second == 3);
}

TEST_CASE("a leaving node takes no new group work", "[unit][reliability][groups]") {
  subscriber s;
  s.source.add("jobs.*", delivery_mode::acknowledged, earliest, "workers");
  s.streams.stop_taking_group_work();
  s.assignment(1, "jobs.a", 1, 4);
  CHECK(s.sink.deliveries.empty());
  CHECK(value(s.counters.events_unmatched) == 4);
}
