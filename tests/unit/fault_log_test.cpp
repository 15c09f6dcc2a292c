// Fault reporting: each cause is reported when first seen and then at most once per
// quiet period, with the number only counted in between; the clock is driven by hand.
#include <catch2/catch.hpp>

#include <atomic>
#include <thread>
#include <vector>

#include "lib/node/faults.hpp"
#include "meshbus/stats.hpp"

using namespace meshbus;
using namespace meshbus::detail;
using namespace std::chrono_literals;

namespace {
const fault_log::clock::time_point t0{std::chrono::hours(1)};
}

TEST_CASE("a fault is reported when first seen, then again only after the quiet period", "[unit][faults]") {
  fault_log log(10s);
  auto first = log.admit(fault::malformed_beacon, t0);
  REQUIRE(first);
  CHECK(*first == 0);
  CHECK_FALSE(log.admit(fault::malformed_beacon, t0 + 1ms));
  CHECK_FALSE(log.admit(fault::malformed_beacon, t0 + 5s));
  CHECK_FALSE(log.admit(fault::malformed_beacon, t0 + 9999ms));
  auto again = log.admit(fault::malformed_beacon, t0 + 10s);
  REQUIRE(again);
  CHECK(*again == 3);  // the three in between were only counted
  CHECK_FALSE(log.admit(fault::malformed_beacon, t0 + 11s));
  auto later = log.admit(fault::malformed_beacon, t0 + 1h);
  REQUIRE(later);
  CHECK(*later == 1);
}

TEST_CASE("each fault kind has its own quiet period", "[unit][faults]") {
  fault_log log(10s);
  CHECK(log.admit(fault::malformed_beacon, t0));
  CHECK(log.admit(fault::handler_exception, t0 + 1s));
  CHECK_FALSE(log.admit(fault::malformed_beacon, t0 + 2s));
  CHECK(log.admit(fault::group_conflict, t0 + 2s));
  CHECK_FALSE(log.admit(fault::handler_exception, t0 + 10s));
  CHECK(log.admit(fault::handler_exception, t0 + 11s));
}

TEST_CASE("threads seeing a fault at once report it once and count the rest", "[unit][faults]") {
  fault_log log(10s);
  std::atomic<int> reported{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) {
        if (log.admit(fault::dead_letter, t0)) ++reported;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(reported == 1);
  auto next = log.admit(fault::dead_letter, t0 + 10s);
  REQUIRE(next);
  CHECK(*next == 3999);
}

TEST_CASE("the report names the counter and says how many occurrences were only counted", "[unit][faults]") {
  fault_log log(10s);
  const auto first = log.describe(fault::malformed_data, "dropped a malformed data frame", 0);
  CHECK(first.rfind("dropped a malformed data frame (", 0) == 0);
  CHECK(first.find("Stats::malformed_messages") != std::string::npos);
  CHECK(first.find("at most once per 10s") != std::string::npos);
  CHECK(first.find("more since") == std::string::npos);
  const auto later = log.describe(fault::malformed_data, "dropped a malformed data frame", 41);
  CHECK(later.find("41 more since the last report") != std::string::npos);
}

TEST_CASE("every fault kind maps to its code and to a counter of Stats", "[unit][faults]") {
  CHECK(code_of(fault::group_conflict) == errc::group_conflict);
  CHECK(code_of(fault::malformed_beacon) == errc::malformed_input);
  CHECK(code_of(fault::handler_exception) == errc::handler_failed);
  CHECK(code_of(fault::control_send_failure) == errc::peer_overloaded);
  CHECK(code_of(fault::sequence_gap) == errc::data_loss);
  CHECK(info_of(fault::group_conflict).counter == "group_conflicts");
  CHECK(name_of(fault::unknown_start) == "unknown_start");
  for (const auto& f : fault_infos) {
    bool found = false;
    for (const auto& s : stat_fields) found = found || (s.name == f.counter && s.kind == StatKind::counter);
    INFO(f.name);
    CHECK(found);
  }
}
