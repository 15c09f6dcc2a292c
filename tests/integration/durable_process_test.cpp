// The durable log across real processes, with default options (durability always):
// a publisher killed with SIGKILL under load keeps every event it flushed, and a late
// joiner gets them all in order from its log after the restart; a durable subscriber
// killed with SIGKILL three times during a stream ends with every event handled, its
// duplicates counted and bounded.
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>

#include "tests/support/node_helpers.hpp"

using namespace meshbus;
using namespace meshbus::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

std::vector<std::string> program(const char* path, const std::string& cluster, std::vector<std::string> args) {
  std::vector<std::string> argv{path, "--cluster", cluster, "--defaults", "1"};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

/// The last "<word> N" a program printed (0: none).
std::uint64_t last_number(const std::string& out, const std::string& word) {
  std::uint64_t n = 0;
  for (const auto& line : lines_of(out)) {
    if (line.rfind(word + " ", 0) == 0) n = std::stoull(line.substr(word.size() + 1));
  }
  return n;
}

}  // namespace

TEST_CASE("a publisher killed with SIGKILL under load keeps every event it flushed, and a late joiner gets them all",
          "[multiprocess][durable]") {
  temp_dir dir;
  const auto cluster = unique_cluster("killdurable");
  child_process pub(program(MESHBUS_TEST_STREAM_PUB, cluster,
                            {"--data-dir", dir.path.string(), "--subscribers", "0", "--count", "100000000",
                             "--flush-every", "5000", "--topic", "dur.load"}));
  REQUIRE(pub.wait_output([](const std::string& out) { return last_number(out, "flushed") >= 50000; }, 60s));
  pub.signal(SIGKILL);
  REQUIRE(pub.wait(10s).has_value());
  const auto flushed = last_number(pub.out(), "flushed");
  const auto progressed = last_number(pub.out(), "progress");
  INFO("flushed " << flushed << ", published at least " << progressed);

  // The same node again (its data directory), and a late joiner from the beginning.
  Options po = fast_options(cluster, "pub-again");
  po.data_dir = dir.path.string();
  Node again(po);
  std::mutex mu;
  std::uint64_t received = 0, bad = 0, last = 0;
  Node late(fast_options(cluster, "late"));
  SubscribeOptions so;
  so.start = StartFrom::earliest();
  late.subscribe("dur.*", [&](const Event& e) {
    std::lock_guard lock(mu);
    const bool numbered = std::to_string(e.sequence()) == e.text() || e.text() == "next";
    if (e.sequence() != last + 1 || !numbered) ++bad;
    last = e.sequence();
    ++received;
  }, so);
  // Everything flushed, and whatever else reached the log before the kill.
  REQUIRE(eventually([&] { std::lock_guard lock(mu); return received >= flushed; }, 60s));
  // The log may hold more than was flushed (written, then killed before flush
  // returned): a late joiner gets those too, and nothing beyond what was published.
  REQUIRE(again.publish("dur.load", "next") == PublishResult::ok);  // continues the stream
  REQUIRE(again.flush(20s));
  std::this_thread::sleep_for(200ms);
  std::lock_guard lock(mu);
  INFO("received " << received << ", last " << last << "; " << nonzero_stats(late));
  CHECK(bad == 0);
  CHECK(late.stats().events_lost == 0);
  CHECK(last >= flushed);
  CHECK(last <= progressed + 1000 + 1);  // at most what was published, and "next"
}

TEST_CASE("a durable subscriber killed with SIGKILL three times during a stream handles every event, duplicates "
          "counted and bounded",
          "[multiprocess][durable]") {
  temp_dir dir;
  const auto cluster = unique_cluster("durablesub");
  const std::uint64_t total = 30000;
  const auto record = (dir.path / "handled.txt").string();
  const std::vector<std::string> sub_args{"--data-dir", (dir.path / "sub").string(), "--durable", "audit",
                                          "--record", record, "--pattern", "dsub.**", "--timeout-ms", "120000"};
  std::vector<std::unique_ptr<child_process>> runs;
  runs.push_back(std::make_unique<child_process>(program(MESHBUS_TEST_STREAM_SUB, cluster, sub_args)));
  REQUIRE(printed(*runs.back(), "subscribed", 10s));
  child_process pub(program(MESHBUS_TEST_STREAM_PUB, cluster,
                            {"--topic", "dsub.data", "--count", std::to_string(total), "--rate", "2500",
                             "--timeout-ms", "90000"}));
  auto handled_lines = [&] {
    std::ifstream in(record);
    std::uint64_t n = 0;
    std::string line;
    while (std::getline(in, line)) ++n;
    return n;
  };
  // Three kills, spread over the stream; each run restarted at once with the same name.
  for (std::uint64_t kill_at : {4000u, 11000u, 19000u}) {
    const bool reached = eventually([&] { return handled_lines() >= kill_at; }, 60s);
    runs.back()->poll();
    INFO("kill at " << kill_at << ": handled " << handled_lines() << ", run " << runs.size() << ": "
                    << runs.back()->out() << runs.back()->err());
    REQUIRE(reached);
    runs.back()->signal(SIGKILL);
    REQUIRE(runs.back()->wait(10s).has_value());
    runs.push_back(std::make_unique<child_process>(program(MESHBUS_TEST_STREAM_SUB, cluster, sub_args)));
    REQUIRE(printed(*runs.back(), "subscribed", 10s));
  }
  const auto pub_code = pub.wait(120s);
  INFO("publisher: " << pub.out() << pub.err());
  REQUIRE(pub_code == 0);  // flushed: every event acknowledged by the durable subscriber
  std::set<std::uint64_t> seen;
  const bool all_handled = eventually([&] {
    std::ifstream in(record);
    seen.clear();
    std::string line;
    while (std::getline(in, line)) seen.insert(std::stoull(line));
    return seen.size() == total;
  }, 60s);
  std::string missing;
  for (std::uint64_t s = 1; s <= total && missing.size() < 400; ++s) {
    if (!seen.count(s)) missing += std::to_string(s) + " ";
  }
  std::string outputs;
  for (const auto& run : runs) {
    run->poll();
    for (const auto& line : lines_of(run->out() + run->err())) {
      if (line.rfind("progress", 0) != 0) outputs += line + "\n";
    }
    outputs += "--\n";
  }
  INFO("missing: " << missing << "\nruns:\n" << outputs);
  REQUIRE(all_handled);
  runs.back()->signal(SIGTERM);
  REQUIRE(runs.back()->wait(20s).has_value());

  std::map<std::uint64_t, int> times;
  {
    std::ifstream in(record);
    std::string line;
    while (std::getline(in, line)) ++times[std::stoull(line)];
  }
  std::uint64_t duplicates = 0;
  for (const auto& [seq, n] : times) duplicates += static_cast<std::uint64_t>(n - 1);
  std::uint64_t counted = 0;
  for (const auto& run : runs) counted += last_number(run->out(), "durable-redeliveries");
  INFO("duplicates " << duplicates << ", counted " << counted << "; last run: " << summary(*runs.back()));
  CHECK(times.size() == total);
  CHECK(times.begin()->first == 1);
  CHECK(times.rbegin()->first == total);
  // Only what was being handled at each kill comes again: at most one batch per kill.
  CHECK(duplicates <= 3 * 4096);
  CHECK(counted >= duplicates);
  CHECK_THAT(summary(*runs.back()), Catch::Contains("\"out_of_order\":0"));
}

TEST_CASE("a second process on a data directory in use gets a clear error naming the holder", "[multiprocess][durable]") {
  if (std::string(MESHBUS_TOOL).empty()) {
    WARN("the meshbus tool is not built (MESHBUS_BUILD_TOOLS=OFF)");
    return;
  }
  temp_dir dir;
  const auto cluster = unique_cluster("durablelock");
  child_process holder({MESHBUS_TOOL, "pub", "--cluster", cluster, "--data-dir", dir.path.string(), "--wait", "0",
                        "--serve", "lock.t", "held"},
                       child_process::options{{}, std::nullopt, true});
  REQUIRE(printed(holder, "serving the history", 10s));
  child_process second({MESHBUS_TOOL, "sub", "--cluster", cluster, "--data-dir", dir.path.string(), "lock.*"},
                       child_process::options{{}, std::nullopt, true});
  const auto code = second.wait(10s);
  INFO(second.out() << second.err());
  CHECK(code == 1);
  CHECK_THAT(second.out() + second.err(), Catch::Contains("is in use by another process (pid " +
                                                          std::to_string(holder.pid()) + ")"));
  holder.signal(SIGTERM);
  CHECK(holder.wait(10s) == 0);
  // Once the holder is gone, the directory opens, with the holder's node id.
  child_process after({MESHBUS_TOOL, "log", dir.path.string()}, child_process::options{{}, std::nullopt, true});
  CHECK(after.wait(10s) == 0);
  CHECK_THAT(after.out(), Catch::Contains("lock.t held"));
}
