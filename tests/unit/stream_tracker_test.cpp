// Receive-side sequence accounting: in order, gaps, duplicates, overlaps, tails.
#include <catch2/catch.hpp>

#include "lib/reliability/stream_tracker.hpp"

using namespace meshbus::reliability;

TEST_CASE("batches in order have no gaps and no duplicates", "[unit][reliability]") {
  stream_position pos;
  auto v = accept_batch(pos, 1, 10);
  CHECK(v.missing == 0);
  CHECK(v.duplicates == 0);
  v = accept_batch(pos, 11, 5);
  CHECK(v.missing == 0);
  CHECK(v.duplicates == 0);
  CHECK(pos.next_expected == 16);
}

TEST_CASE("a skipped range is reported once as missing", "[unit][reliability]") {
  stream_position pos;
  accept_batch(pos, 1, 10);
  auto v = accept_batch(pos, 15, 1);
  CHECK(v.missing == 4);
  CHECK(pos.next_expected == 16);
}

TEST_CASE("old and overlapping batches count as duplicates", "[unit][reliability]") {
  stream_position pos;
  accept_batch(pos, 1, 10);
  auto v = accept_batch(pos, 3, 4);
  CHECK(v.duplicates == 4);
  v = accept_batch(pos, 8, 6);  // 8..13: 8,9,10 seen
  CHECK(v.duplicates == 3);
  CHECK(pos.next_expected == 14);
}

TEST_CASE("a stream starts wherever the first batch is", "[unit][reliability]") {
  stream_position pos;
  const auto v = accept_batch(pos, 500, 2);
  CHECK(v.missing == 0);
  CHECK(pos.next_expected == 502);
}

TEST_CASE("a heartbeat reveals a lost tail", "[unit][reliability]") {
  stream_position pos;
  CHECK(accept_heartbeat(pos, 10) == 0);  // stream not started: nothing to judge
  accept_batch(pos, 1, 10);
  CHECK(accept_heartbeat(pos, 10) == 0);
  CHECK(accept_heartbeat(pos, 13) == 3);
  CHECK(pos.next_expected == 14);
  CHECK(accept_heartbeat(pos, 12) == 0);
}
