// Reliability across real processes: a slow consumer that fills every queue, kill -9
// of a subscriber (and a restart asking for earliest), kill -9 of a publisher (and
// its restart with a new epoch).
#include <catch2/catch.hpp>

#include <signal.h>

#include "tests/support/node_helpers.hpp"

using namespace meshbus::test;
using namespace std::chrono_literals;

namespace {

std::vector<std::string> program(const char* path, const std::string& cluster, std::vector<std::string> args) {
  std::vector<std::string> argv{path, "--cluster", cluster, "--beacon-ms", "100", "--expiry-ms", "1500"};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

}  // namespace

TEST_CASE("a slow subscriber holds the publisher back: nothing lost, memory bounded", "[multiprocess][reliability]") {
  const char* mode = GENERATE("reliable", "acknowledged");
  INFO("mode " << mode);
  const auto cluster = unique_cluster("slow");
  // 100,000 events of 1 KB (100 MB) to a subscriber that takes 20 us per event; the
  // publisher may hold 2,000 unacknowledged, 10,000 in history and 1 MB queued.
  child_process sub(program(MESHBUS_TEST_STREAM_SUB, cluster,
                            {"--expect", "100000", "--sleep-us", "20", "--mode", mode, "--timeout-ms", "90000"}));
  REQUIRE(printed(sub, "subscribed", 10s));
  child_process pub(program(MESHBUS_TEST_STREAM_PUB, cluster,
                            {"--count", "100000", "--size", "1000", "--window", "2000", "--history", "10000",
                             "--send-queue-kb", "1024", "--timeout-ms", "90000"}));
  const auto pub_code = pub.wait(120s);
  INFO("pub: " << pub.out() << pub.err());
  REQUIRE(pub_code == 0);
  const auto sub_code = sub.wait(30s);
  INFO("sub: " << summary(sub) << sub.err());
  REQUIRE(sub_code == 0);
  CHECK_THAT(summary(sub), Catch::Contains("\"received\":100000,\"out_of_order\":0") &&
                               Catch::Contains("\"events_lost\":0"));
  CHECK_THAT(summary(pub), Catch::Contains("\"published\":100000,\"flushed\":true"));
  // The publisher was held back, and its memory stayed far below the 100 MB it sent.
  CHECK_THAT(summary(pub), !Catch::Contains("\"window_waits\":0,"));
  const auto rss_at = summary(pub).find("\"peak_rss_kib\":");
  REQUIRE(rss_at != std::string::npos);
  const auto peak_kib = std::stoull(summary(pub).substr(rss_at + 15));
  INFO("publisher peak RSS " << peak_kib << " KiB");
#if defined(__SANITIZE_ADDRESS__)
  // AddressSanitizer adds shadow memory, redzones and a quarantine of freed blocks: a
  // roughly fixed cost, so the bound is larger but still one. The publisher measured
  // 104 MiB for 25,000 such events, 107-132 MiB over ten runs of these 100,000 and
  // 126 MiB for 200,000: it follows what the publisher holds, not what it sent.
  // 200 MiB is 1.5 times the highest peak seen.
  CHECK(peak_kib < 200 * 1024);
#else
  CHECK(peak_kib < 64 * 1024);
#endif
}

TEST_CASE("kill -9 of a subscriber mid-stream: a restart asking for earliest gets everything in order",
          "[multiprocess][reliability]") {
  const auto cluster = unique_cluster("killsub");
  child_process first(program(MESHBUS_TEST_STREAM_SUB, cluster, {"--expect", "20000"}));
  REQUIRE(printed(first, "subscribed", 10s));
  child_process pub(program(MESHBUS_TEST_STREAM_PUB, cluster, {"--count", "20000", "--rate", "8000"}));
  REQUIRE(printed(first, "progress 5000", 30s));
  first.signal(SIGKILL);
  REQUIRE(first.wait(10s).has_value());
  child_process second(program(MESHBUS_TEST_STREAM_SUB, cluster, {"--expect", "20000", "--start", "earliest"}));
  const auto second_code = second.wait(60s);
  INFO("second: " << summary(second) << second.err());
  REQUIRE(second_code == 0);
  CHECK_THAT(summary(second), Catch::Contains("\"received\":20000,\"out_of_order\":0") &&
                                  Catch::Contains("\"first\":1,\"last\":20000,\"count\":20000") &&
                                  Catch::Contains("\"events_lost\":0"));
  const auto pub_code = pub.wait(60s);
  INFO("pub: " << pub.out() << pub.err());
  // The new one acknowledged everything; the dead one never will, and flush() says so.
  CHECK(pub_code == 1);
  CHECK_THAT(pub.out(), Catch::Contains("\"flushed\":false") && Catch::Contains("(gone) never got"));
}

TEST_CASE("kill -9 of a publisher: subscribers see its new epoch and a loss notice for what could not be repaired",
          "[multiprocess][reliability]") {
  const auto cluster = unique_cluster("killpub");
  const std::string id = "0123456789abcdef0123456789abcdef";
  // The subscriber loses a third of what it receives, so repairs are always under way.
  child_process::options faults;
  faults.env = {{"MESHBUS_FAULTS", "drop=0.3,seed=3"}};
  child_process sub(program(MESHBUS_TEST_STREAM_SUB, cluster, {"--expect-per-epoch", "1000", "--timeout-ms", "90000"}),
                    faults);
  REQUIRE(printed(sub, "subscribed", 10s));
  child_process first(program(MESHBUS_TEST_STREAM_PUB, cluster,
                              {"--node-id", id, "--count", "100000000", "--rate", "20000"}));
  REQUIRE(printed(sub, "progress 5000", 30s));
  first.signal(SIGKILL);
  REQUIRE(first.wait(10s).has_value());
  // The same node restarts without durable state: a new epoch.
  child_process second(program(MESHBUS_TEST_STREAM_PUB, cluster, {"--node-id", id, "--count", "1000"}));
  const auto second_code = second.wait(90s);
  INFO("second publisher: " << second.out() << second.err() << "\nsubscriber so far: " << sub.err());
  REQUIRE(second_code == 0);
  // Wait for the second epoch's stream to be complete too (two "epoch-complete" lines).
  CHECK(sub.wait_output([](const std::string& out) {
    const auto at = out.find("epoch-complete");
    return at != std::string::npos && at != out.rfind("epoch-complete");
  }, 30s));
  sub.signal(SIGTERM);
  REQUIRE(sub.wait(20s).has_value());
  const auto s = summary(sub);
  INFO("sub: " << s << sub.err());
  // Out of order counts any jump a loss notice does not cover; the old epoch ends in
  // an open-ended notice: nothing of it is left unaccounted for (once, under ASan at 30 %
  // drop, three sequence numbers were: the tail no one had heard of, now covered).
  CHECK_THAT(s, Catch::Contains("\"epochs\":2") && Catch::Contains("\"out_of_order\":0") &&
                    Catch::Contains("\"reason\":\"publisher gone\"") &&
                    Catch::Contains("\"to\":18446744073709551615"));
  CHECK_THAT(s, Catch::Contains("\"first\":1,\"last\":1000,\"count\":1000"));  // the new epoch, complete
}

namespace {
// Sequence numbers a group member printed as handled.
std::vector<std::uint64_t> handled_ids(const child_process& p) {
  std::vector<std::uint64_t> ids;
  for (const auto& line : lines_of(p.out())) {
    if (line.rfind("handled ", 0) == 0) ids.push_back(std::stoull(line.substr(8)));
  }
  return ids;
}
std::size_t handled_count(const child_process& p) {
  std::size_t n = 0;
  std::size_t at = 0;
  while ((at = p.out().find("handled ", at)) != std::string::npos) {
    ++n;
    at += 8;
  }
  return n;
}
}  // namespace

TEST_CASE("a service group of three processes shares 100,000 events while one is killed and another joins",
          "[multiprocess][groups]") {
  const auto cluster = unique_cluster("group");
  auto member = [&](const char* name) {
    return std::make_unique<child_process>(program(
        MESHBUS_TEST_STREAM_SUB, cluster,
        {"--name", name, "--group", "workers", "--print-ids", "1", "--timeout-ms", "120000"}));
  };
  std::vector<std::unique_ptr<child_process>> members;
  for (const char* name : {"m1", "m2", "m3"}) members.push_back(member(name));
  for (auto& m : members) REQUIRE(printed(*m, "subscribed", 10s));
  child_process pub(program(MESHBUS_TEST_STREAM_PUB, cluster,
                            {"--count", "100000", "--rate", "10000", "--subscribers", "3", "--timeout-ms", "120000"}));
  auto total_handled = [&] {
    std::size_t n = 0;
    for (auto& m : members) {
      m->poll();
      n += handled_count(*m);
    }
    return n;
  };
  REQUIRE(eventually([&] { return total_handled() >= 30000; }, 60s));
  members[1]->signal(SIGKILL);  // m2 dies with work in hand
  REQUIRE(members[1]->wait(10s).has_value());
  REQUIRE(eventually([&] { return total_handled() >= 60000; }, 60s));
  // A newcomer joins with about 4 s of work left at the publisher's pace (at 25,000/s
  // it was 1.6 s, less than a start and a join take on a loaded machine).
  members.push_back(member("m4"));
  // Keep reading every member's output meanwhile: a full pipe would block its handlers.
  std::optional<int> pub_code;
  const auto deadline = std::chrono::steady_clock::now() + 120s;
  while (!(pub_code = pub.wait(20ms)) && std::chrono::steady_clock::now() < deadline) {
    for (auto& m : members) m->poll();
  }
  INFO("pub: " << pub.out() << pub.err());
  REQUIRE(pub_code == 0);  // flushed: every event acknowledged by a live member
  for (std::size_t i = 0; i < members.size(); ++i) {
    if (i == 1) continue;
    members[i]->signal(SIGTERM);
    REQUIRE(members[i]->wait(20s).has_value());
  }
  std::map<std::uint64_t, int> times;
  std::map<std::uint64_t, int> times_live;  // handled by members that were not killed
  for (std::size_t i = 0; i < members.size(); ++i) {
    for (const auto id : handled_ids(*members[i])) {
      ++times[id];
      if (i != 1) ++times_live[id];
    }
  }
  std::size_t twice = 0;
  for (const auto& [id, n] : times) twice += n > 1 ? 1 : 0;
  INFO("events handled twice: " << twice);
  CHECK(times.size() == 100000);  // every event handled
  CHECK(times.begin()->first == 1);
  CHECK(times.rbegin()->first == 100000);
  // Among the members that lived, exactly once. The only repeats possible are events
  // the killed member had handled but not yet acknowledged when it died: a SIGKILL
  // leaves no way to tell, so the publisher hands them to another member.
  std::size_t live_twice = 0;
  for (const auto& [id, n] : times_live) live_twice += n > 1 ? 1 : 0;
  CHECK(live_twice == 0);
  CHECK(handled_ids(*members[3]).size() > 0);  // the newcomer took a share
  CHECK(twice < 5000);
}
