// The durable log through the Node API, on real files: a publisher keeps its id, epoch
// and sequence numbers across a restart, late joiners get its history from disk (also
// what memory let go of), StartFrom::time, and the clear errors for a data directory in
// use or not a log.
#include <unistd.h>

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>

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

std::string unique_cluster(const char* what) {
  std::random_device rd;
  return std::string(what) + "-" + std::to_string(::getpid()) + "-" + std::to_string(rd() % 100000);
}

// Checks each stream arrives complete, in order, without duplicates; payloads are the sequence.
class order_check {
 public:
  Handler handler() {
    return [this](const Event& e) {
      std::lock_guard lock(mu_);
      auto& last = last_[std::string(e.topic())];
      if (e.sequence() != last + 1 || std::to_string(e.sequence()) != e.text()) ++bad_;
      last = e.sequence();
      ++total_;
    };
  }
  std::uint64_t total() const {
    std::lock_guard lock(mu_);
    return total_;
  }
  std::uint64_t bad() const {
    std::lock_guard lock(mu_);
    return bad_;
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::uint64_t> last_;
  std::uint64_t total_ = 0;
  std::uint64_t bad_ = 0;
};

void publish_numbered(Node& node, const std::string& topic, std::uint64_t from, std::uint64_t to) {
  for (auto i = from; i <= to; ++i) REQUIRE(node.publish(topic, std::to_string(i)) == PublishResult::ok);
}

}  // namespace

TEST_CASE("a publisher with a data directory keeps its id, epoch and sequence numbers across a restart",
          "[integration][durable]") {
  temp_dir dir;
  const auto cluster = unique_cluster("durable-restart");
  NodeId id;
  std::uint64_t epoch = 0;
  {
    Node pub(durable_options(cluster, "pub", dir.path));
    id = pub.id();
    epoch = pub.epoch();
    publish_numbered(pub, "dur.x", 1, 1000);
    REQUIRE(pub.flush(10s));
    CHECK(pub.stats().store_events_written == 1000);
  }
  Node pub(durable_options(cluster, "pub", dir.path));
  CHECK(pub.id() == id);
  CHECK(pub.epoch() == epoch);
  CHECK(pub.stats().history_events == 0);  // nothing in memory: the history is on disk
  publish_numbered(pub, "dur.x", 1001, 1500);
  REQUIRE(pub.flush(10s));

  Node sub(fast_options(cluster, "sub"));
  order_check check;
  SubscribeOptions o;
  o.start = StartFrom::earliest();
  sub.subscribe("dur.*", check.handler(), o);
  REQUIRE(eventually([&] { return check.total() == 1500; }, 20s));
  CHECK(check.bad() == 0);
  CHECK(sub.stats().events_lost == 0);
  CHECK(pub.stats().repairs_from_disk > 0);
  // Live events follow the history without a seam.
  publish_numbered(pub, "dur.x", 1501, 1600);
  REQUIRE(eventually([&] { return check.total() == 1600; }, 10s));
  CHECK(check.bad() == 0);
}

TEST_CASE("what the memory history let go of is served from the durable log", "[integration][durable]") {
  temp_dir dir;
  const auto cluster = unique_cluster("durable-evicted");
  auto o = durable_options(cluster, "pub", dir.path);
  o.history_events = 64;
  o.window_events = 64;
  Node pub(o);
  publish_numbered(pub, "evict.a", 1, 5000);
  REQUIRE(pub.flush(10s));
  CHECK(pub.stats().history_events <= 64 + 4096);

  Node sub(fast_options(cluster, "sub"));
  order_check check;
  SubscribeOptions so;
  so.start = StartFrom::at(10);
  sub.subscribe("evict.a", check.handler(), so);
  REQUIRE(eventually([&] { return check.total() == 4991; }, 20s));
  CHECK(sub.stats().events_lost == 0);
  CHECK(pub.stats().repairs_from_disk > 0);
}

TEST_CASE("StartFrom::time starts at the first event published at or after the time", "[integration][durable]") {
  temp_dir dir;
  const auto cluster = unique_cluster("durable-time");
  Node pub(durable_options(cluster, "pub", dir.path));
  publish_numbered(pub, "timed.x", 1, 100);
  REQUIRE(pub.flush(10s));
  std::this_thread::sleep_for(20ms);  // the batches' timestamps must differ from the mark
  const auto mark = std::chrono::system_clock::now();
  std::this_thread::sleep_for(20ms);
  publish_numbered(pub, "timed.x", 101, 200);
  REQUIRE(pub.flush(10s));

  Node sub(fast_options(cluster, "sub"));
  std::mutex mu;
  std::vector<std::uint64_t> seqs;
  SubscribeOptions so;
  so.start = StartFrom::time(mark);
  sub.subscribe("timed.x", [&](const Event& e) {
    std::lock_guard lock(mu);
    seqs.push_back(e.sequence());
  }, so);
  const bool got = eventually([&] { std::lock_guard lock(mu); return seqs.size() == 100; }, 10s);
  INFO(nonzero_stats(sub) << " received " << seqs.size());
  REQUIRE(got);
  std::lock_guard lock(mu);
  CHECK(seqs.front() == 101);
  CHECK(seqs.back() == 200);
  CHECK(sub.stats().events_before_start == 100);
  CHECK(sub.stats().events_lost == 0);
}

TEST_CASE("a second node on one data directory gets a clear error", "[integration][durable]") {
  temp_dir dir;
  const auto cluster = unique_cluster("durable-lock");
  Node first(durable_options(cluster, "first", dir.path));
  try {
    Node second(durable_options(cluster, "second", dir.path));
    FAIL("a second node opened the same data directory");
  } catch (const error& e) {
    CHECK(e.code_value() == errc::storage);
    CHECK_THAT(e.what(), Catch::Contains("in use by another process") && Catch::Contains(dir.path.string()));
  }
}

TEST_CASE("a data directory that is not a meshbus log gets a clear error naming the file", "[integration][durable]") {
  temp_dir dir;
  {
    std::ofstream f(dir.path / "log.mdb");
    f << "this is not a log";
  }
  try {
    Node node(durable_options(unique_cluster("durable-bad"), "n", dir.path));
    FAIL("opened a file that is not a log");
  } catch (const error& e) {
    CHECK(e.code_value() == errc::storage);
    CHECK_THAT(e.what(), Catch::Contains("not a meshbus log") && Catch::Contains("log.mdb"));
  }
  // A path that is a file, not a directory.
  const auto file = dir.path / "plain-file";
  { std::ofstream f(file); }
  REQUIRE_THROWS_WITH(Node(durable_options(unique_cluster("durable-bad"), "n", file)),
                      Catch::Contains("is not a directory"));
}

TEST_CASE("a durable subscription resumes after a restart of its node at the next event", "[integration][durable]") {
  temp_dir dir;
  const auto cluster = unique_cluster("durable-sub");
  Node pub(fast_options(cluster, "pub"));
  SubscribeOptions so;
  so.durable_name = "audit";  // start: now, the default
  std::mutex mu;
  std::vector<std::uint64_t> seqs;
  auto record = [&](const Event& e) {
    std::lock_guard lock(mu);
    seqs.push_back(e.sequence());
  };
  {
    Node sub(durable_options(cluster, "sub", dir.path));
    sub.subscribe("audit.*", record, so);
    REQUIRE(pub.wait_for_subscribers("audit.x", 1, 10s));
    publish_numbered(pub, "audit.x", 1, 500);
    REQUIRE(pub.flush(10s));
    REQUIRE(eventually([&] { std::lock_guard lock(mu); return seqs.size() == 500; }, 10s));
    CHECK(sub.stats().durable_commits > 0);
  }
  // Published while the subscriber is down: a durable subscription gets them.
  publish_numbered(pub, "audit.x", 501, 800);
  Node sub(durable_options(cluster, "sub", dir.path));
  sub.subscribe("audit.*", record, so);
  REQUIRE(eventually([&] { std::lock_guard lock(mu); return seqs.size() == 800; }, 20s));
  std::lock_guard lock(mu);
  for (std::size_t i = 0; i < seqs.size(); ++i) REQUIRE(seqs[i] == i + 1);
  CHECK(sub.stats().durable_redeliveries == 0);  // a clean stop committed everything
  CHECK(sub.stats().events_lost == 0);
}

TEST_CASE("a transactional handler's writes and published events commit with its position, once per event",
          "[integration][durable]") {
  temp_dir dir;
  const auto cluster = unique_cluster("durable-inbox");
  Node pub(fast_options(cluster, "pub"));
  Node watcher(fast_options(cluster, "watcher"));
  std::mutex mu;
  std::vector<std::string> derived;
  SubscribeOptions ack;
  ack.delivery = Delivery::acknowledged;
  watcher.subscribe("totals.*", [&](const Event& e) {
    std::lock_guard lock(mu);
    derived.emplace_back(e.text());
  }, ack);
  SubscribeOptions so;
  so.durable_name = "ledger";
  so.delivery = Delivery::acknowledged;
  std::atomic<int> failures_left{3};
  {
    Node sub(durable_options(cluster, "sub", dir.path));
    sub.subscribe("pay.*", [&](const Event& e, Transaction& tx) {
      const auto before = tx.get("sum");
      const auto sum = (before ? std::stoull(*before) : 0) + std::stoull(std::string(e.text()));
      tx.put("sum", std::to_string(sum));
      tx.publish("totals.sum", std::to_string(sum));
      // A handler that throws commits nothing: its retry starts from the stored sum.
      if (e.sequence() == 50 && failures_left-- > 0) throw std::runtime_error("not yet");
    }, so);
    REQUIRE(pub.wait_for_subscribers("pay.x", 1, 10s));
    REQUIRE(sub.wait_for_subscribers("totals.sum", 1, 10s));
    for (int i = 1; i <= 100; ++i) REQUIRE(pub.publish("pay.x", std::to_string(i)) == PublishResult::ok);
    REQUIRE(pub.flush(20s));
    REQUIRE(eventually([&] { return sub.stored("sum") == std::optional<std::string>("5050"); }, 10s));
    REQUIRE(sub.flush(10s));
  }
  {
    // The store outlives the node.
    Node sub(durable_options(cluster, "sub", dir.path));
    CHECK(sub.stored("sum") == std::optional<std::string>("5050"));
    sub.transact([](Transaction& tx) { tx.put("note", "checked"); });
    CHECK(sub.stored_range("") ==
          std::vector<std::pair<std::string, std::string>>{{"note", "checked"}, {"sum", "5050"}});
  }
  REQUIRE(eventually([&] { std::lock_guard lock(mu); return derived.size() >= 100; }, 10s));
  std::lock_guard lock(mu);
  CHECK(derived.size() == 100);  // one per event: the failed attempts published nothing
  CHECK(derived.back() == "5050");
}

TEST_CASE("durable subscriptions and the store refuse wrong use with clear errors", "[integration][durable]") {
  temp_dir dir;
  const auto cluster = unique_cluster("durable-misuse");
  Node plain(fast_options(cluster, "plain"));
  SubscribeOptions so;
  so.durable_name = "d";
  CHECK_THROWS_WITH(plain.subscribe("a.b", [](const Event&) {}, so), Catch::Contains("needs a durable log"));
  CHECK_THROWS_WITH(plain.stored("k"), Catch::Contains("Options::data_dir"));
  CHECK_FALSE(plain.durable());
  Node node(durable_options(cluster, "durable", dir.path));
  CHECK(node.durable());
  node.subscribe("a.b", [](const Event&) {}, so);
  CHECK_THROWS_WITH(node.subscribe("a.c", [](const Event&) {}, so), Catch::Contains("already has a durable"));
  SubscribeOptions best = so;
  best.durable_name = "e";
  best.delivery = Delivery::best_effort;
  CHECK_THROWS_WITH(node.subscribe("a.b", [](const Event&) {}, best), Catch::Contains("reliable or acknowledged"));
  SubscribeOptions grouped = so;
  grouped.durable_name = "f";
  grouped.group = "workers";
  CHECK_THROWS_WITH(node.subscribe("a.b", [](const Event&) {}, grouped), Catch::Contains("service group"));
  CHECK_THROWS_WITH(node.subscribe("a.b", TransactionalHandler([](const Event&, Transaction&) {}), SubscribeOptions{}),
                    Catch::Contains("durable_name"));
}
