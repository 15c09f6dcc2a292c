// The subscriber's receive window, driven by a hand clock: ordering, holes, NACKs
// and their retries, losses, duplicates, bounds and the best-effort mode.
#include <catch2/catch.hpp>

#include "lib/reliability/receive_window.hpp"

using namespace meshbus::reliability;
using namespace std::chrono_literals;

namespace {
using window = receive_window<int>;
const clock::time_point t0{};

struct harness {
  explicit harness(delivery_mode mode = delivery_mode::reliable, std::uint64_t start = 1, receive_config cfg = {})
      : w(mode, cfg, start) {}
  window w;
  window::actions out;
  std::vector<std::uint64_t> delivered;  // every sequence handed over, in order

  void batch(std::uint64_t first, std::uint32_t count, clock::time_point now = t0) {
    out.clear();
    w.on_batch(first, count, 100, static_cast<int>(first), now, out);
    collect();
  }
  void collect() {
    for (const auto& d : out.deliver) {
      for (std::uint32_t i = d.skip; i < d.count; ++i) delivered.push_back(d.first_seq + i);
    }
  }
};
}  // namespace

TEST_CASE("batches in order are delivered at once", "[unit][reliability]") {
  harness h;
  h.batch(1, 3);
  h.batch(4, 2);
  CHECK(h.delivered == std::vector<std::uint64_t>{1, 2, 3, 4, 5});
  CHECK(h.w.delivered_through() == 5);
  CHECK_FALSE(h.w.has_gap());
}

TEST_CASE("a hole is asked for at once and filled in order", "[unit][reliability]") {
  harness h;
  h.batch(1, 2);
  h.batch(6, 2);  // 3..5 missing
  REQUIRE(h.out.nack == std::vector<seq_range>{{3, 5}});
  CHECK(h.delivered.size() == 2);
  h.batch(8, 1);  // nothing new is missing: no second NACK
  CHECK(h.out.nack.empty());
  h.batch(3, 3);  // the repair
  CHECK(h.delivered == std::vector<std::uint64_t>{1, 2, 3, 4, 5, 6, 7, 8});
  CHECK_FALSE(h.w.has_gap());
}

TEST_CASE("several holes are asked for in one go", "[unit][reliability]") {
  harness h;
  h.batch(1, 1);
  h.batch(5, 1);
  h.batch(9, 1);
  h.out.clear();
  h.w.tick(t0 + 1s, h.out);
  CHECK(h.out.nack == std::vector<seq_range>{{2, 4}, {6, 8}});
}

TEST_CASE("NACKs are retried with a doubling backoff until filled", "[unit][reliability]") {
  receive_config cfg;
  cfg.nack_retry = 10ms;
  harness h(delivery_mode::reliable, 1, cfg);
  h.batch(2, 1, t0);  // 1 missing: NACK now
  REQUIRE(h.out.nack.size() == 1);
  auto retries_at = [&](clock::time_point now) {
    h.out.clear();
    h.w.tick(now, h.out);
    return h.out.nack.size();
  };
  CHECK(retries_at(t0 + 5ms) == 0);
  CHECK(retries_at(t0 + 10ms) == 1);   // first retry after 10 ms
  CHECK(retries_at(t0 + 25ms) == 0);   // next one 20 ms later
  CHECK(retries_at(t0 + 30ms) == 1);
  CHECK(retries_at(t0 + 60ms) == 0);
  CHECK(retries_at(t0 + 70ms) == 1);   // 40 ms later
  h.batch(1, 1, t0 + 71ms);
  CHECK(retries_at(t0 + 10s) == 0);    // filled: nothing to retry
  CHECK(h.w.nack_due() == clock::time_point::max());
}

TEST_CASE("a heartbeat reveals a lost tail, which is asked for", "[unit][reliability]") {
  harness h;
  h.batch(1, 5);
  h.out.clear();
  h.w.on_last_sequence(5, t0, h.out);
  CHECK(h.out.nack.empty());
  h.w.on_last_sequence(8, t0, h.out);
  CHECK(h.out.nack == std::vector<seq_range>{{6, 8}});
}

TEST_CASE("a range the publisher cannot repair is reported lost and skipped", "[unit][reliability]") {
  harness h;
  h.batch(1, 1);
  h.batch(6, 2);
  h.out.clear();
  h.w.on_loss({2, 5}, t0, h.out);
  h.collect();
  CHECK(h.out.lost == std::vector<seq_range>{{2, 5}});
  CHECK(h.delivered == std::vector<std::uint64_t>{1, 6, 7});
  CHECK(h.w.counters().lost == 4);
  CHECK_FALSE(h.w.has_gap());
}

TEST_CASE("a loss ahead of the cursor is applied when the cursor gets there", "[unit][reliability]") {
  harness h;
  h.batch(1, 1);
  h.batch(10, 1);
  h.out.clear();
  h.w.on_loss({5, 9}, t0, h.out);  // 2..4 still repairable
  CHECK(h.out.lost.empty());
  h.batch(2, 3);
  CHECK(h.out.lost == std::vector<seq_range>{{5, 9}});
  CHECK(h.delivered == std::vector<std::uint64_t>{1, 2, 3, 4, 10});
}

TEST_CASE("duplicates, whole or overlapping, are delivered once", "[unit][reliability]") {
  harness h;
  h.batch(1, 5);
  h.batch(1, 5);
  h.batch(3, 4);  // 3..6: only 6 is new
  h.batch(9, 1);
  h.batch(9, 1);  // held twice
  CHECK(h.delivered == std::vector<std::uint64_t>{1, 2, 3, 4, 5, 6});
  CHECK(h.w.counters().duplicates == 5 + 3 + 1);
}

TEST_CASE("the start point decides what is wanted", "[unit][reliability]") {
  SECTION("after a position") {
    harness h(delivery_mode::reliable, 101);
    h.batch(95, 10);  // 95..104: 101..104 wanted
    CHECK(h.delivered == std::vector<std::uint64_t>{101, 102, 103, 104});
  }
  SECTION("not known yet: what arrives is held until start() says where") {
    // The publisher's READY (where "now" was) can come after its first batches, or be
    // lost and sent again: starting at whatever came first would skip silently.
    harness h(delivery_mode::reliable, 0);
    h.batch(500, 2);
    h.batch(505, 1);
    CHECK(h.delivered.empty());
    CHECK(h.out.nack.empty());
    CHECK_FALSE(h.w.started());
    h.out.clear();
    h.w.start(498, t0, h.out);
    h.collect();
    CHECK(h.out.nack == std::vector<seq_range>{{498, 499}, {502, 504}});
    h.batch(498, 2);
    h.batch(502, 3);
    CHECK(h.delivered == std::vector<std::uint64_t>{498, 499, 500, 501, 502, 503, 504, 505});
  }
  SECTION("not known yet: held batches before the start are let go") {
    harness h(delivery_mode::reliable, 0);
    h.batch(10, 5);  // 10..14
    h.batch(20, 1);
    h.out.clear();
    h.w.start(13, t0, h.out);
    h.collect();
    CHECK(h.delivered == std::vector<std::uint64_t>{13, 14});
    CHECK(h.out.nack == std::vector<seq_range>{{15, 19}});
  }
  SECTION("not known yet, best effort: holes between held batches are losses at the start") {
    harness h(delivery_mode::best_effort, 0);
    h.batch(7, 1);
    h.batch(9, 1);
    h.out.clear();
    h.w.start(5, t0, h.out);
    h.collect();
    CHECK(h.delivered == std::vector<std::uint64_t>{7, 9});
    CHECK(h.out.lost == std::vector<seq_range>{{5, 6}, {8, 8}});
  }
  SECTION("not known yet, but the stream's first batch: no need to wait") {
    harness h(delivery_mode::reliable, 0);
    h.batch(3, 1);  // overtook the first one: held
    CHECK(h.delivered.empty());
    h.batch(1, 2);
    CHECK(h.w.started());
    CHECK(h.delivered == std::vector<std::uint64_t>{1, 2, 3});
  }
  SECTION("not known yet for start_wait: it starts at the first batch held, counted") {
    receive_config cfg;
    cfg.start_wait = 3s;
    harness h(delivery_mode::reliable, 0, cfg);
    h.batch(70, 2, t0 + 1s);
    CHECK(h.w.nack_due() == t0 + 4s);
    h.out.clear();
    h.w.tick(t0 + 3s, h.out);
    CHECK(h.delivered.empty());
    h.w.tick(t0 + 4s, h.out);
    h.collect();
    CHECK(h.delivered == std::vector<std::uint64_t>{70, 71});
    CHECK(h.w.counters().unknown_starts == 1);
  }
  SECTION("not known yet when the publisher goes: what is held is delivered") {
    harness h(delivery_mode::reliable, 0);
    h.batch(30, 2);
    h.out.clear();
    h.w.abandon(t0, h.out);
    h.collect();
    CHECK(h.delivered == std::vector<std::uint64_t>{30, 31});
  }
  SECTION("from the beginning: what came before the first batch is asked for") {
    harness h(delivery_mode::reliable, 1);
    h.batch(40, 1);
    CHECK(h.out.nack == std::vector<seq_range>{{1, 39}});
  }
}

TEST_CASE("best effort reports a gap as lost and goes on", "[unit][reliability]") {
  harness h(delivery_mode::best_effort);
  h.batch(1, 1);
  h.batch(4, 1);
  CHECK(h.out.lost == std::vector<seq_range>{{2, 3}});
  CHECK(h.out.nack.empty());
  CHECK(h.delivered == std::vector<std::uint64_t>{1, 4});
  h.batch(2, 1);  // late: already given up
  CHECK(h.delivered.size() == 2);
}

TEST_CASE("the reorder buffer stays in bounds by dropping what is furthest ahead", "[unit][reliability]") {
  receive_config cfg;
  cfg.max_held_batches = 4;
  harness h(delivery_mode::reliable, 1, cfg);
  for (std::uint64_t s = 2; s <= 10; ++s) h.batch(s, 1);
  CHECK(h.w.held_batches() == 4);
  CHECK(h.w.counters().reorder_overflow == 5);
  h.batch(1, 1);
  CHECK(h.delivered == std::vector<std::uint64_t>{1, 2, 3, 4, 5});
  h.out.clear();
  h.w.tick(t0 + 10s, h.out);  // 6..10 were dropped: asked for again
  CHECK(h.out.nack == std::vector<seq_range>{{6, 10}});
}

TEST_CASE("a sequence from the far future is rejected", "[unit][reliability]") {
  receive_config cfg;
  cfg.max_ahead = 1000;
  harness h(delivery_mode::reliable, 1, cfg);
  h.batch(1, 1);
  h.batch(1'000'000'000, 1);
  CHECK(h.w.counters().rejected == 1);
  CHECK_FALSE(h.w.has_gap());
  h.out.clear();
  h.w.on_last_sequence(5'000'000, t0, h.out);
  CHECK(h.out.nack.empty());
  CHECK(h.w.counters().rejected == 2);
  h.batch(2, 1);
  CHECK(h.delivered == std::vector<std::uint64_t>{1, 2});
}

TEST_CASE("a NACK asks for a bounded span", "[unit][reliability]") {
  receive_config cfg;
  cfg.max_nack_span = 100;
  harness h(delivery_mode::reliable, 1, cfg);
  h.batch(1, 1);
  h.out.clear();
  h.w.on_last_sequence(10'000, t0, h.out);
  CHECK(h.out.nack == std::vector<seq_range>{{2, 101}});
}
