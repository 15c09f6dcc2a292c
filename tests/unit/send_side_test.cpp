// The publisher side: bounded history lookups and eviction, and the delivery
// tracker's windows, flush condition, ack validation and redelivery timers.
#include <catch2/catch.hpp>

#include "lib/reliability/delivery_tracker.hpp"
#include "lib/reliability/send_history.hpp"

using namespace meshbus::reliability;
using namespace std::chrono_literals;

namespace {
const clock::time_point t0{};
meshbus::wire::node_id_bytes sub(std::uint8_t n) {
  meshbus::wire::node_id_bytes id{};
  id[0] = n;
  return id;
}
}  // namespace

TEST_CASE("history finds the batches overlapping a range", "[unit][reliability]") {
  send_history<int> h({1000, 1 << 20});
  h.append("t", 1, 10, 100, 1);
  h.append("t", 11, 10, 100, 11);
  h.append("u", 1, 5, 50, 100);
  h.append("t", 21, 10, 100, 21);
  const auto r = h.find("t", 15, 22);
  REQUIRE(r.batches.size() == 2);
  CHECK(r.batches[0]->payload == 11);
  CHECK(r.batches[1]->payload == 21);
  CHECK(r.evicted_from == 0);
  CHECK_FALSE(r.beyond_sent);
  CHECK(h.find("t", 31, 40).beyond_sent);
  CHECK(h.find("nothing", 1, 1).beyond_sent);
}

TEST_CASE("history evicts the oldest batches across topics at its bounds", "[unit][reliability]") {
  send_history<int> h({25, 1 << 20});
  h.append("t", 1, 10, 1, 1);
  h.append("u", 1, 10, 1, 2);
  h.append("t", 11, 10, 1, 3);  // 30 events: the first batch of t goes
  CHECK(h.events() == 20);
  CHECK(h.oldest("t") == 11);
  CHECK(h.oldest("u") == 1);
  const auto r = h.find("t", 5, 15);
  CHECK(r.evicted_from == 5);
  CHECK(r.evicted_to == 10);
  REQUIRE(r.batches.size() == 1);
  CHECK(r.batches[0]->payload == 3);
  send_history<int> by_bytes({1000, 250});
  by_bytes.append("t", 1, 1, 100, 1);
  by_bytes.append("t", 2, 1, 100, 2);
  by_bytes.append("t", 3, 1, 100, 3);
  CHECK(by_bytes.bytes() == 200);
  by_bytes.append("t", 4, 1, 10000, 4);  // larger than the bound: kept alone
  CHECK(by_bytes.events() == 1);
  CHECK(by_bytes.evicted_events() == 3);
}

TEST_CASE("the window fills with unacknowledged events and empties with acks", "[unit][reliability]") {
  tracker_config cfg;
  cfg.window = 100;
  delivery_tracker t(cfg);
  t.track(sub(1), "a", delivery_mode::reliable, 0, t0);
  t.track(sub(2), "a", delivery_mode::best_effort, 0, t0);  // not tracked
  CHECK(t.subscribers() == 1);
  t.sent("a", 60, t0);
  CHECK_FALSE(t.window_full());
  t.sent("a", 100, t0);
  CHECK(t.window_full());
  CHECK(t.unacknowledged(sub(1)) == 100);
  CHECK(t.ack(sub(1), "a", 50, t0) == ack_result::ok);
  CHECK_FALSE(t.window_full());
  CHECK_FALSE(t.all_acknowledged());
  CHECK(t.ack(sub(1), "a", 100, t0) == ack_result::ok);
  CHECK(t.all_acknowledged());
}

TEST_CASE("an absent subscriber holds nobody up but still counts until it is back or forgotten",
          "[unit][reliability]") {
  tracker_config cfg;
  cfg.window = 100;
  delivery_tracker t(cfg);
  t.track(sub(1), "a", delivery_mode::acknowledged, 0, t0);
  t.track(sub(2), "a", delivery_mode::reliable, 0, t0);
  t.sent("a", 150, t0);
  CHECK(t.window_full());
  REQUIRE(t.ack(sub(2), "a", 150, t0) == ack_result::ok);
  t.set_absent(sub(1), true);  // expired: a partition, or a pause
  CHECK(t.absent(sub(1)));
  CHECK_FALSE(t.window_full());    // it holds nobody up...
  CHECK_FALSE(t.all_acknowledged());  // ...but flush() still waits for it
  std::vector<redelivery> due;
  t.due_redeliveries(t0 + 1h, due);
  CHECK(due.empty());  // nobody to send to
  t.sent("a", 160, t0);
  CHECK(t.unacknowledged(sub(1)) == 160);
  t.set_absent(sub(1), false);  // back with its epoch: its progress is where it was
  CHECK(t.window_full());
  REQUIRE(t.ack(sub(1), "a", 160, t0) == ack_result::ok);
  CHECK_FALSE(t.window_full());
  t.sent("a", 170, t0);
  t.set_absent(sub(1), true);
  CHECK(t.lagging().size() == 2);
  CHECK(t.forget(sub(1)) == 10);  // gone for good: what it never acknowledged
  CHECK(t.lagging().size() == 1);
}

TEST_CASE("a subscriber is responsible only from its start point", "[unit][reliability]") {
  delivery_tracker t({});
  t.sent("a", 1000, t0);
  t.track(sub(1), "a", delivery_mode::reliable, 1000, t0);  // joined "now"
  CHECK(t.all_acknowledged());
  t.track(sub(2), "a", delivery_mode::reliable, 0, t0);  // wants everything
  CHECK(t.unacknowledged(sub(2)) == 1000);
}

TEST_CASE("bad acks are refused and do not disturb others", "[unit][reliability]") {
  delivery_tracker t({});
  t.track(sub(1), "a", delivery_mode::reliable, 0, t0);
  t.sent("a", 10, t0);
  CHECK(t.ack(sub(9), "a", 5, t0) == ack_result::unknown_subscriber);
  CHECK(t.ack(sub(1), "b", 5, t0) == ack_result::unknown_subscriber);
  CHECK(t.ack(sub(1), "a", 11, t0) == ack_result::beyond_sent);
  CHECK(t.unacknowledged(sub(1)) == 10);
  CHECK(t.ack(sub(1), "a", 3, t0) == ack_result::ok);
  CHECK(t.ack(sub(1), "a", 2, t0) == ack_result::ok);  // older: no change
  CHECK(t.unacknowledged(sub(1)) == 7);
}

TEST_CASE("a departed subscriber no longer holds the window or a flush", "[unit][reliability]") {
  tracker_config cfg;
  cfg.window = 10;
  delivery_tracker t(cfg);
  t.track(sub(1), "a", delivery_mode::reliable, 0, t0);
  t.sent("a", 50, t0);
  CHECK(t.window_full());
  t.forget(sub(1));
  CHECK_FALSE(t.window_full());
  CHECK(t.all_acknowledged());
  t.sent("a", 60, t0);
  CHECK(t.all_acknowledged());
}

TEST_CASE("acknowledged subscribers without progress are redelivered to, with backoff", "[unit][reliability]") {
  tracker_config cfg;
  cfg.redelivery_timeout = 100ms;
  delivery_tracker t(cfg);
  t.track(sub(1), "a", delivery_mode::acknowledged, 0, t0);
  t.track(sub(2), "a", delivery_mode::reliable, 0, t0);
  t.sent("a", 10, t0);
  std::vector<redelivery> due;
  t.due_redeliveries(t0 + 50ms, due);
  CHECK(due.empty());
  t.due_redeliveries(t0 + 100ms, due);
  REQUIRE(due.size() == 1);  // reliable subscribers repair by NACK instead
  CHECK(due[0].subscriber == sub(1));
  CHECK(due[0].range == seq_range{1, 10});
  due.clear();
  t.due_redeliveries(t0 + 250ms, due);  // next after 200 ms
  CHECK(due.empty());
  t.due_redeliveries(t0 + 300ms, due);
  CHECK(due.size() == 1);
  due.clear();
  CHECK(t.ack(sub(1), "a", 4, t0 + 310ms) == ack_result::ok);  // progress resets the backoff
  t.due_redeliveries(t0 + 410ms, due);
  REQUIRE(due.size() == 1);
  CHECK(due[0].range == seq_range{5, 10});
  CHECK(t.next_redelivery() == t0 + 410ms + 200ms);
}
