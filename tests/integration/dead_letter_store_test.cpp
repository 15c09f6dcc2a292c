// Dead letters in the durable log: a node opened again on the same data directory lists
// the dead letters of its earlier run with everything they held, replays them to the
// subscription that now has their pattern (also when `meshbus dlq` asks), keeps giving
// new ids after the old ones, and reports, counts and skips a damaged record.
#include <unistd.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <set>

#include "tests/support/node_helpers.hpp"

using namespace meshbus;
using namespace meshbus::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

Options durable_options(const std::string& cluster, const std::string& name, const fs::path& dir) {
  auto o = fast_options(cluster, name);
  o.data_dir = dir.string();
  return o;
}

SubscribeOptions giving_up_after(unsigned attempts) {
  SubscribeOptions o;
  o.delivery = Delivery::acknowledged;
  o.max_deliver = attempts;
  o.retry_backoff = 10ms;
  return o;
}

/// The tool beside in-process nodes made with fast_options() (their 100 ms beacons).
std::vector<std::string> fast_tool(const std::string& cluster, std::initializer_list<std::string> args) {
  std::vector<std::string> argv{MESHBUS_TOOL};
  argv.insert(argv.end(), args);
  argv.insert(argv.end(), {"--cluster", cluster, "--beacon-interval", "100"});
  return argv;
}

std::set<std::uint64_t> ids_of(const std::vector<DeadLetter>& letters) {
  std::set<std::uint64_t> ids;
  for (const auto& d : letters) ids.insert(d.id);
  return ids;
}

}  // namespace

TEST_CASE("dead letters outlive their node: the next node on the same data directory lists and replays them",
          "[integration][durable][dlq]") {
  temp_dir dir;
  const auto cluster = unique_cluster("dlqdurable");
  Node publisher(fast_options(cluster, "publisher"));
  std::atomic<int> announced{0};
  publisher.subscribe("$dlq.**", [&](const Event&) { ++announced; });
  std::vector<DeadLetter> before;
  {
    Node holder(durable_options(cluster, "holder", dir.path));
    holder.subscribe(
        "orders.*", [](const Event&) { throw std::runtime_error("database down"); }, giving_up_after(2));
    REQUIRE(publisher.wait_for_subscribers("orders.placed", 1, 20s));
    const Header headers[] = {{"tenant", "acme"}};
    PublishOptions po;
    po.event_id = "order-1";
    po.correlation_id = "flow-1";
    po.type_name = "Order";
    po.type_version = 3;
    po.content_type = "text/plain";
    po.headers = headers;
    REQUIRE(publisher.publish("orders.placed", "order\t1", po) == PublishResult::ok);
    REQUIRE(publisher.publish("orders.placed", "order 2") == PublishResult::ok);
    // Stored, then announced: both announcements are out before the node stops.
    REQUIRE(eventually([&] { return holder.dead_letters().size() == 2 && announced == 2; }, 20s));
    before = holder.dead_letters();
  }  // a clean stop: the log continues the node's epoch, so its "$dlq" history is served again

  Node again(durable_options(cluster, "holder", dir.path));
  auto after = again.dead_letters();
  REQUIRE(after.size() == 2);
  for (std::size_t i = 0; i < 2; ++i) {
    const auto& b = before[i];
    const auto& a = after[i];
    INFO("dead letter " << b.id);
    CHECK(a.id == b.id);
    CHECK(a.topic == b.topic);
    CHECK(a.payload == b.payload);
    CHECK(a.publisher == b.publisher);
    CHECK(a.epoch == b.epoch);
    CHECK(a.sequence == b.sequence);
    CHECK(a.event_id == b.event_id);
    CHECK(a.type_name == b.type_name);
    CHECK(a.type_version == b.type_version);
    CHECK(a.correlation_id == b.correlation_id);
    CHECK(a.causation_id == b.causation_id);
    CHECK(a.content_type == b.content_type);
    CHECK(a.headers == b.headers);
    CHECK(a.pattern == "orders.*");
    CHECK(a.reason == "database down");
    CHECK(a.attempts == 2);
    CHECK(a.failed_at == b.failed_at);
  }
  CHECK(after[0].event_id == "order-1");
  CHECK(after[0].headers == std::vector<std::pair<std::string, std::string>>{{"tenant", "acme"}});

  // No subscription of that pattern in this run yet: nothing to replay to, the letter stays.
  CHECK_FALSE(again.replay_dead_letter(after[0].id));
  CHECK(again.dead_letters().size() == 2);
  std::mutex mu;
  std::vector<std::string> handled;
  again.subscribe(
      "orders.*",
      [&](const Event& e) {
        if (e.text() == "poison") throw std::runtime_error("still bad");
        std::lock_guard lock(mu);
        handled.push_back(std::string(e.text()) + " " + std::string(e.correlation_id()));
      },
      giving_up_after(1));
  REQUIRE(again.replay_dead_letter(after[0].id));
  REQUIRE(eventually([&] { return again.dead_letters().size() == 1; }, 10s));
  {
    std::lock_guard lock(mu);
    CHECK(handled == std::vector<std::string>{"order\t1 flow-1"});
  }
  // Ids go on after those of the earlier run.
  REQUIRE(publisher.wait_for_subscribers("orders.placed", 1, 20s));
  REQUIRE(publisher.publish("orders.placed", "poison") == PublishResult::ok);
  REQUIRE(eventually([&] { return again.dead_letters().size() == 2; }, 20s));
  CHECK(ids_of(again.dead_letters()) == std::set<std::uint64_t>{after[1].id, after[1].id + 1});

  if (std::string_view(MESHBUS_TOOL).empty()) return;  // the tool is not built
  // `meshbus dlq` against the restarted node: its earlier run's letters are listed from its
  // log's history, and one of them is replayed by request.
  const auto second = std::to_string(after[1].id);
  child_process list(fast_tool(cluster, {"dlq", "list", "--json"}));
  REQUIRE(list.wait(30s) == 0);
  INFO("dlq list: " << list.out() << list.err());
  CHECK_THAT(list.out(), Catch::Contains("\"node\":\"" + again.id().to_string() + "\"") &&
                             Catch::Contains("\"id\":" + second + ",\"topic\":\"orders.placed\",\"attempts\":2") &&
                             Catch::Contains("\"payload\":\"order 2\""));
  child_process replay(fast_tool(cluster, {"dlq", "replay", again.id().short_string(), second}));
  const auto code = replay.wait(30s);
  INFO("dlq replay: " << replay.out() << replay.err());
  CHECK(code == 0);
  CHECK_THAT(replay.out(), Catch::Contains("replayed dead letter " + second));
  CHECK(eventually([&] { return ids_of(again.dead_letters()) == std::set<std::uint64_t>{after[1].id + 1}; }, 10s));
  std::lock_guard lock(mu);
  CHECK(handled.back() == "order 2 " + std::string(after[1].correlation_id));
}

TEST_CASE("a replayed or evicted dead letter is gone from the log too, and ids are never given twice",
          "[integration][durable][dlq]") {
  temp_dir dir;
  const auto cluster = unique_cluster("dlqevict");
  Node publisher(fast_options(cluster, "publisher"));
  std::atomic<bool> healed{false};
  auto subscribe = [&](Node& n) {
    n.subscribe(
        "jobs.run",
        [&](const Event&) {
          if (!healed) throw std::runtime_error("broken");
        },
        giving_up_after(1));
  };
  {
    auto o = durable_options(cluster, "holder", dir.path);
    o.dead_letter_capacity = 2;
    Node holder(o);
    subscribe(holder);
    REQUIRE(publisher.wait_for_subscribers("jobs.run", 1, 20s));
    for (const auto* job : {"a", "b", "c"}) REQUIRE(publisher.publish("jobs.run", job) == PublishResult::ok);
    // "a" makes room for "c", counted.
    REQUIRE(eventually([&] { return ids_of(holder.dead_letters()) == std::set<std::uint64_t>{2, 3}; }, 20s));
    CHECK(eventually([&] { return holder.stats().dead_letters_dropped == 1; }, 10s));
    healed = true;
    REQUIRE(holder.replay_dead_letter(3));
    REQUIRE(eventually([&] { return holder.dead_letters().size() == 1; }, 10s));
  }
  {
    auto o = durable_options(cluster, "holder", dir.path);
    o.dead_letter_capacity = 2;
    Node holder(o);
    const auto left = holder.dead_letters();
    REQUIRE(left.size() == 1);
    CHECK(left[0].id == 2);
    CHECK(left[0].payload == "b");
    subscribe(holder);
    REQUIRE(holder.replay_dead_letter(2));  // found by its pattern in this run
    REQUIRE(eventually([&] { return holder.dead_letters().empty(); }, 10s));
  }
  // Every letter is gone; the next one still gets a new id.
  auto o = durable_options(cluster, "holder", dir.path);
  Node holder(o);
  CHECK(holder.dead_letters().empty());
  healed = false;
  subscribe(holder);
  REQUIRE(publisher.wait_for_subscribers("jobs.run", 1, 20s));
  REQUIRE(publisher.publish("jobs.run", "d") == PublishResult::ok);
  REQUIRE(eventually([&] { return holder.dead_letters().size() == 1; }, 20s));
  CHECK(holder.dead_letters()[0].id == 4);
}

TEST_CASE("a damaged dead-letter record is reported, counted and skipped when the node starts",
          "[integration][durable][dlq]") {
  temp_dir dir;
  const auto cluster = unique_cluster("dlqdamage");
  const std::string marker = "damage-me-";
  {
    Node publisher(fast_options(cluster, "publisher"));
    Node holder(durable_options(cluster, "holder", dir.path));
    holder.subscribe(
        "jobs.run", [](const Event&) { throw std::runtime_error("broken"); }, giving_up_after(1));
    REQUIRE(publisher.wait_for_subscribers("jobs.run", 1, 20s));
    REQUIRE(publisher.publish("jobs.run", marker + std::string(200, 'x')) == PublishResult::ok);
    REQUIRE(publisher.publish("jobs.run", "intact") == PublishResult::ok);
    REQUIRE(eventually([&] { return holder.dead_letters().size() == 2; }, 20s));
  }
  // One byte of the first letter flipped. Earlier copies of rewritten pages may hold the
  // marker too (and the "$dlq" announcement in the history does): flipping each damages
  // the live record, and free pages are never read.
  const auto file = (dir.path / "log.mdb").string();
  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    std::string bytes(static_cast<std::size_t>(fs::file_size(file)), '\0');
    REQUIRE(f.read(bytes.data(), static_cast<std::streamsize>(bytes.size())));
    std::size_t flipped = 0;
    for (auto at = bytes.find(marker); at != std::string::npos; at = bytes.find(marker, at + 1), ++flipped) {
      f.seekp(static_cast<std::streamoff>(at));
      f.put(static_cast<char>(bytes[at] ^ 0x20));
    }
    REQUIRE(flipped > 0);
    REQUIRE(f.flush());
  }
  std::mutex mu;
  std::vector<std::string> faults;
  auto o = durable_options(cluster, "holder", dir.path);
  o.on_error = [&](std::error_code, const std::string& what) {
    std::lock_guard lock(mu);
    faults.push_back(what);
  };
  Node again(o);
  const auto left = again.dead_letters();
  REQUIRE(left.size() == 1);
  CHECK(left[0].payload == "intact");
  CHECK(left[0].id == 2);
  CHECK(again.stats().store_damaged == 1);
  std::lock_guard lock(mu);
  INFO("faults reported: " << faults.size());
  const auto reported = std::count_if(faults.begin(), faults.end(), [&](const std::string& f) {
    return f.find("1 damaged dead-letter record in " + file) != std::string::npos &&
           f.find("dead letter 1 failed its CRC32C check") != std::string::npos;
  });
  CHECK(reported == 1);
}
