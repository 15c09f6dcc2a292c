// meshbus::Projection on a real node's log: catch-up then live with every event applied
// exactly once (also when the process is killed with SIGKILL mid-way), rebuild equal to
// the live model while the old one serves, a throwing handler retried then stopping the
// projection visibly, lag in stats, and queries answered by request/reply.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <meshbus/aggregate.hpp>
#include <meshbus/projection.hpp>

#include <atomic>
#include <map>
#include <thread>

#include "tests/support/node_helpers.hpp"

using namespace meshbus;
using namespace meshbus::test;
using namespace std::chrono_literals;

namespace {

struct Placed {
  static constexpr std::string_view event_name = "proj.placed";
  static constexpr std::uint32_t event_version = 1;
  int items = 0;
  MSGPACK_DEFINE_MAP(items)
};
struct Shipped {
  static constexpr std::string_view event_name = "proj.shipped";
  static constexpr std::uint32_t event_version = 1;
  std::string carrier;
  MSGPACK_DEFINE_MAP(carrier)
};
struct CountByStatus {
  static constexpr std::string_view event_name = "proj.count_by_status";
  static constexpr std::uint32_t event_version = 1;
  std::string status;
  MSGPACK_DEFINE_MAP(status)
};
struct StatusCount {
  static constexpr std::string_view event_name = "proj.status_count";
  static constexpr std::uint32_t event_version = 1;
  std::uint64_t count = 0;
  MSGPACK_DEFINE_MAP(count)
};

struct Row {
  std::string status;
  int items = 0;
  std::uint64_t events = 0;  // how many events this row has seen: exactly once means == version
  MSGPACK_DEFINE_MAP(status, items, events)
  bool operator==(const Row&) const = default;
};

void define(Projection<Row>& p, std::atomic<bool>* fail_on_dhl = nullptr) {
  p.on<Placed>([](const Placed& e, const RecordedEvent& r, auto& docs) {
    auto row = docs.get(r.stream).value_or(Row{});
    row.status = "placed";
    row.items += e.items;
    ++row.events;
    docs.put(r.stream, row);
  });
  p.on<Shipped>([fail_on_dhl](const Shipped& e, const RecordedEvent& r, auto& docs) {
    if (fail_on_dhl != nullptr && *fail_on_dhl && e.carrier == "dhl") throw std::runtime_error("no DHL contract");
    auto row = docs.get(r.stream).value_or(Row{});
    row.status = "shipped";
    ++row.events;
    docs.put(r.stream, row);
  });
}

/// The rows the events in the store make, folded directly.
std::map<std::string, Row> expected_rows(const EventStore& store, std::string_view category) {
  std::map<std::string, Row> rows;
  for (std::uint64_t from = 1;;) {
    const auto page = store.read_all(from, 1000);
    if (page.empty()) break;
    for (const auto& e : page) {
      from = e.position + 1;
      if (EventStore::category_of(e.stream) != category) continue;
      auto& row = rows[e.stream];
      if (e.is<Placed>()) {
        row.status = "placed";
        row.items += e.as<Placed>().items;
      } else {
        row.status = "shipped";
      }
      ++row.events;
    }
  }
  return rows;
}

std::map<std::string, Row> rows_of(const Projection<Row>& p) {
  std::map<std::string, Row> rows;
  for (auto& [k, v] : p.list()) rows[k] = v;
  return rows;
}

Options store_options(const std::string& cluster, const std::string& name, const temp_dir& dir) {
  auto o = fast_options(cluster, name);
  o.data_dir = dir.str();
  return o;
}

void place_and_ship(EventStore& store, const std::string& category, int orders, int from = 0) {
  std::vector<std::future<std::uint64_t>> pending;
  for (int i = from; i < from + orders; ++i) {
    const auto stream = category + "-" + std::to_string(i);
    pending.push_back(store.append_async(stream, {NewEvent::of(Placed{i % 5 + 1})}));
    if (i % 2 == 0) pending.push_back(store.append_async(stream, {NewEvent::of(Shipped{i % 10 == 0 ? "dhl" : "ups"})}));
  }
  for (auto& f : pending) f.get();
}

}  // namespace

TEST_CASE("a projection catches up, then follows live appends, applying each event of its categories once",
          "[integration][projection]") {
  temp_dir dir("meshbus-proj");
  Node node(store_options(unique_cluster("proj"), "a", dir));
  EventStore store(node);
  place_and_ship(store, "order", 300);
  place_and_ship(store, "invoice", 50);  // another category: passed over

  Projection<Row> rows(store, "orders-by-status", {.categories = {"order"}, .batch = 64});
  define(rows);
  CHECK(rows.stats().lag_events == store.last_position());
  rows.start();
  // Live appends from two threads while it catches up.
  std::thread a([&] { place_and_ship(store, "order", 200, 300); });
  std::thread b([&] { place_and_ship(store, "order", 200, 500); });
  a.join();
  b.join();
  REQUIRE(rows.wait_caught_up(30s));
  const auto got = rows_of(rows);
  CHECK(got.size() == 700);
  CHECK(got == expected_rows(store, "order"));
  const auto s = rows.stats();
  CHECK(s.lag_events == 0);
  CHECK(s.lag_ms == 0);
  CHECK(s.checkpoint == store.last_position());
  CHECK(s.applied == 700 + 350);  // every order placed, every other one shipped
  CHECK(s.generation == 1);
  CHECK_FALSE(s.stopped);
  CHECK(rows.get("invoice-1") == std::nullopt);
  CHECK(rows.get("order-4")->status == "shipped");
}

TEST_CASE("a projection killed with SIGKILL mid-way resumes at its checkpoint: every event applied exactly once",
          "[integration][projection][multiprocess]") {
  temp_dir dir("meshbus-proj");
  const auto cluster = unique_cluster("proj-kill");
  {
    Node node(store_options(cluster, "a", dir));
    EventStore store(node);
    place_and_ship(store, "order", 3000);
  }
  for (int round = 0; round < 3; ++round) {
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      // The child follows with a slow handler until it is killed.
      try {
        Node node(store_options(cluster, "a", dir));
        EventStore store(node);
        Projection<Row> rows(store, "rows", {.categories = {"order"}, .batch = 16});
        define(rows);
        rows.on<Shipped>([](const Shipped&, const RecordedEvent& r, auto& docs) {
          std::this_thread::sleep_for(1ms);
          auto row = docs.get(r.stream).value_or(Row{});
          row.status = "shipped";
          ++row.events;
          docs.put(r.stream, row);
        });
        rows.start();
        std::this_thread::sleep_for(60s);
      } catch (...) {
      }
      ::_exit(3);
    }
    // Kill it at a different moment each round, while it is applying.
    std::this_thread::sleep_for(std::chrono::milliseconds(300 + 250 * round));
    ::kill(child, SIGKILL);
    int status = 0;
    ::waitpid(child, &status, 0);
    REQUIRE(WIFSIGNALED(status));
  }
  Node node(store_options(cluster, "a", dir));
  EventStore store(node);
  Projection<Row> rows(store, "rows", {.categories = {"order"}});
  define(rows);
  const auto before = rows.stats().checkpoint;
  INFO("checkpoint after the kills: " << before);
  CHECK(before > 0);  // the killed runs got somewhere
  rows.start();
  REQUIRE(rows.wait_caught_up(60s));
  CHECK(rows_of(rows) == expected_rows(store, "order"));  // events counts: each applied once
}

TEST_CASE("a rebuild replays into a new generation while the old one serves, then equals it",
          "[integration][projection]") {
  temp_dir dir("meshbus-proj");
  Node node(store_options(unique_cluster("proj-rebuild"), "a", dir));
  EventStore store(node);
  place_and_ship(store, "order", 2000);
  Projection<Row> rows(store, "rows", {.categories = {"order"}});
  define(rows);
  rows.start();
  REQUIRE(rows.wait_caught_up(30s));
  const auto live = rows_of(rows);

  auto rebuilt = rows.rebuild();
  CHECK_THROWS_AS(rows.rebuild(), error);  // one at a time
  // While it builds, the old generation answers, whole.
  std::size_t checks = 0;
  while (rebuilt.wait_for(0ms) != std::future_status::ready) {
    const auto row = rows.get("order-1998");
    REQUIRE(row.has_value());
    CHECK(*row == live.at("order-1998"));
    ++checks;
    std::this_thread::sleep_for(1ms);
  }
  rebuilt.get();
  INFO("queries answered during the rebuild: " << checks);
  place_and_ship(store, "order", 10, 2000);  // and it follows live appends after the swap
  REQUIRE(rows.wait_caught_up(30s));
  const auto s = rows.stats();
  CHECK(s.generation == 2);
  CHECK(s.rebuilds == 1);
  CHECK_FALSE(s.rebuilding);
  CHECK(rows_of(rows) == expected_rows(store, "order"));
  // The old generation's documents go.
  CHECK(eventually([&] { return node.stored_range("$proj/rows/g1/").empty(); }, 20s));

  // Reopened, it serves generation 2 where it stood.
  rows.stop();
  Projection<Row> again(store, "rows", {.categories = {"order"}});
  define(again);
  CHECK(again.stats().generation == 2);
  CHECK(again.stats().lag_events == 0);
  CHECK(rows_of(again) == expected_rows(store, "order"));
}

TEST_CASE("a projection handler that keeps throwing stops the projection at that event, visibly, until resumed",
          "[integration][projection]") {
  temp_dir dir("meshbus-proj");
  Node node(store_options(unique_cluster("proj-fail"), "a", dir));
  EventStore store(node);
  place_and_ship(store, "order", 20);  // order-0 and order-10 ship with dhl
  std::atomic<bool> refuse_dhl{true};
  std::mutex mu;
  std::vector<std::string> reported;
  Projection<Row> rows(store, "rows", {.retry_backoff = 5ms, .on_error = [&](const std::string& why) {
                                         std::lock_guard lock(mu);
                                         reported.push_back(why);
                                       }});
  define(rows, &refuse_dhl);
  rows.start();
  REQUIRE(eventually([&] { return rows.stats().stopped; }, 20s));
  const auto s = rows.stats();
  const auto failing = store.read("order-0", 2, 1).at(0);  // Shipped{"dhl"}
  CHECK(s.checkpoint == failing.position - 1);
  CHECK_THAT(s.failure, Catch::Contains("position " + std::to_string(failing.position)) &&
                            Catch::Contains("stream 'order-0'") && Catch::Contains("proj.shipped") &&
                            Catch::Contains("failed 5 times") && Catch::Contains("no DHL contract"));
  CHECK(s.retries == 4);
  CHECK_FALSE(rows.wait_caught_up(200ms));
  {
    std::lock_guard lock(mu);
    REQUIRE(reported.size() == 1);
    CHECK(reported[0] == s.failure);
  }
  CHECK(node.stored("$proj/rows/failed") == s.failure);  // kept in the log
  CHECK(rows.get("order-0")->status == "placed");         // nothing after it applied

  refuse_dhl = false;  // the fix
  rows.resume();
  REQUIRE(rows.wait_caught_up(20s));
  CHECK(rows_of(rows) == expected_rows(store, "order"));
  CHECK_FALSE(rows.stats().stopped);
  CHECK_FALSE(node.stored("$proj/rows/failed").has_value());
}

TEST_CASE("a projection answers queries from another node and refuses bad names", "[integration][projection]") {
  temp_dir dir("meshbus-proj");
  const auto cluster = unique_cluster("proj-query");
  Node node(store_options(cluster, "read-side", dir));
  Node client(fast_options(cluster, "client"));
  EventStore store(node);
  place_and_ship(store, "order", 40);
  Projection<Row> rows(store, "rows", {.categories = {"order"}});
  define(rows);
  rows.on_query<CountByStatus, StatusCount>([](const CountByStatus& q, const auto& view) {
    StatusCount c;
    for (const auto& [key, row] : view.list()) c.count += row.status == q.status;
    return c;
  });
  rows.start();
  REQUIRE(rows.wait_caught_up(20s));
  REQUIRE(eventually([&] { return !client.instances("proj.count_by_status").empty(); }, 10s));
  CHECK(client.request<CountByStatus, StatusCount>(CountByStatus{"shipped"}).get().count == 20);
  CHECK(client.request<CountByStatus, StatusCount>(CountByStatus{"placed"}).get().count == 20);

  CHECK_THROWS_AS(Projection<Row>(store, "bad name"), error);
  CHECK_THROWS_AS(Projection<Row>(store, "a/b"), error);
  CHECK_THROWS_AS(Projection<Row>(store, "rows2", {.categories = {"bad-category"}}), error);
}
