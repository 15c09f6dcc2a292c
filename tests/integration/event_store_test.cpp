// meshbus::EventStore on a real node and real files: optimistic concurrency (two
// writers racing on one stream: exactly one wins), reads forward, backward and by
// position across pages, events published with their stream and version, the flow of
// the handler an append is made from, persistence across a restart, and the clear
// errors for bad stream names and types.
#include <catch2/catch.hpp>

#include <meshbus/event_store.hpp>

#include <atomic>
#include <barrier>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include <fmt/format.h>

#include "tests/support/node_helpers.hpp"

using namespace meshbus;
using namespace meshbus::test;
using namespace std::chrono_literals;

namespace {

struct ItemAdded {
  static constexpr std::string_view event_name = "es.item_added";
  static constexpr std::uint32_t event_version = 1;
  std::string sku;
  int quantity = 0;
  MSGPACK_DEFINE_MAP(sku, quantity)
};

struct CartClosed {
  static constexpr std::string_view event_name = "es.cart_closed";
  static constexpr std::uint32_t event_version = 1;
  std::string reason;
  MSGPACK_DEFINE_MAP(reason)
};

Options store_options(const std::string& cluster, const std::string& name, const temp_dir& dir) {
  auto o = fast_options(cluster, name);
  o.data_dir = dir.str();
  return o;
}

NewEvent raw(std::string type, std::string payload) {
  NewEvent e;
  e.type_name = std::move(type);
  e.payload = std::move(payload);
  return e;
}

}  // namespace

TEST_CASE("an event store appends with expected versions and refuses the wrong one with the actual version",
          "[integration][event_store]") {
  temp_dir dir("meshbus-es");
  Node node(store_options(unique_cluster("es-ev"), "a", dir));
  EventStore store(node);

  CHECK(store.version("cart-1") == 0);
  CHECK(store.append("cart-1", ExpectedVersion::no_stream(), ItemAdded{"apple", 2}) == 1);
  CHECK(store.append("cart-1", ExpectedVersion::exactly(1), ItemAdded{"pear", 1}, ItemAdded{"fig", 3}) == 3);
  CHECK(store.append("cart-1", ExpectedVersion::stream_exists(), CartClosed{"paid"}) == 4);
  CHECK(store.append("cart-1", ExpectedVersion::any(), CartClosed{"again"}) == 5);
  CHECK(store.version("cart-1") == 5);

  // Every refusal names the actual version and appends nothing.
  const auto refused = [&](ExpectedVersion expected, std::string_view stream) {
    try {
      store.append(stream, expected, ItemAdded{"x", 1});
    } catch (const wrong_expected_version& e) {
      CHECK(e.code_value() == errc::wrong_expected_version);
      CHECK(e.stream() == stream);
      return e.actual_version();
    }
    FAIL("the append was not refused");
    return std::uint64_t{999};
  };
  CHECK(refused(ExpectedVersion::exactly(3), "cart-1") == 5);
  CHECK(refused(ExpectedVersion::no_stream(), "cart-1") == 5);
  CHECK(refused(ExpectedVersion::stream_exists(), "cart-2") == 0);
  CHECK(refused(ExpectedVersion::exactly(1), "cart-2") == 0);
  CHECK(store.version("cart-1") == 5);
  CHECK(store.version("cart-2") == 0);
  CHECK(store.stats().wrong_expected_version == 4);

  try {
    store.append("cart-1", ExpectedVersion::exactly(2), CartClosed{"late"});
    FAIL("not refused");
  } catch (const wrong_expected_version& e) {
    const std::string what = e.what();
    CHECK(what.find("'cart-1' is at version 5, not at version 2") != std::string::npos);
  }

  const auto events = store.read("cart-1");
  REQUIRE(events.size() == 5);
  for (std::uint64_t i = 0; i < 5; ++i) {
    CHECK(events[i].stream == "cart-1");
    CHECK(events[i].version == i + 1);
    CHECK(events[i].position == i + 1);
    CHECK(events[i].event_id == "cart-1@" + std::to_string(i + 1));
  }
  CHECK(events[1].as<ItemAdded>().sku == "pear");
  CHECK(events[2].as<ItemAdded>().quantity == 3);
  CHECK(events[3].is<CartClosed>());
  CHECK(events[3].as<CartClosed>().reason == "paid");
  CHECK_THROWS_AS(events[3].as<ItemAdded>(), poison_event);
}

TEST_CASE("two writers racing on one stream with the version they loaded: exactly one wins each round",
          "[integration][event_store]") {
  temp_dir dir("meshbus-es");
  Node node(store_options(unique_cluster("es-race"), "a", dir));
  EventStore store(node);
  constexpr int rounds = 200;
  std::atomic<int> wins[2] = {0, 0}, conflicts[2] = {0, 0};
  std::barrier sync(2);
  auto writer = [&](int who) {
    for (int r = 0; r < rounds; ++r) {
      sync.arrive_and_wait();
      const auto loaded = static_cast<std::uint64_t>(r);  // both load the version the last round left
      sync.arrive_and_wait();
      try {
        store.append("race-1", ExpectedVersion::exactly(loaded), ItemAdded{"w" + std::to_string(who), r});
        ++wins[who];
      } catch (const wrong_expected_version& e) {
        CHECK(e.actual_version() == loaded + 1);
        ++conflicts[who];
      }
      sync.arrive_and_wait();  // the round is decided before the next load
    }
  };
  std::thread a(writer, 0), b(writer, 1);
  a.join();
  b.join();
  CHECK(wins[0] + wins[1] == rounds);
  CHECK(conflicts[0] + conflicts[1] == rounds);
  CHECK(store.version("race-1") == rounds);
  const auto events = store.read("race-1");
  REQUIRE(events.size() == rounds);
  for (std::size_t r = 0; r < events.size(); ++r) {
    CHECK(events[r].version == r + 1);
    CHECK(events[r].as<ItemAdded>().quantity == static_cast<int>(r));
  }
}

TEST_CASE("an event store reads forward, backward and by position across pages, and keeps it all across a restart",
          "[integration][event_store]") {
  temp_dir dir("meshbus-es");
  const auto cluster = unique_cluster("es-read");
  constexpr std::uint64_t n = 6200;  // "log-a" gets 2067: more than two pages of 1024
  {
    Node node(store_options(cluster, "a", dir));
    EventStore store(node);
    std::vector<std::future<std::uint64_t>> pending;
    for (std::uint64_t i = 1; i <= n; ++i) {
      // Two streams interleaved, and a third stream whose name extends the first's.
      const auto stream = i % 3 == 0 ? std::string("log-a1") : i % 2 == 0 ? std::string("log-a") : std::string("log-b");
      pending.push_back(store.append_async(stream, {raw("es.line", std::to_string(i))}));
    }
    for (auto& f : pending) f.get();
    CHECK(store.last_position() == n);
    CHECK(store.stats().events_appended == n);
    CHECK(store.stats().commits < n);  // appends in flight together share commits
  }
  Node node(store_options(cluster, "a", dir));
  EventStore store(node);
  CHECK(store.last_position() == n);

  const auto a = store.read("log-a");
  std::uint64_t expected_a = 0;
  for (std::uint64_t i = 1; i <= n; ++i) expected_a += (i % 3 != 0 && i % 2 == 0);
  REQUIRE(a.size() == expected_a);
  for (std::size_t i = 0; i < a.size(); ++i) {
    CHECK(a[i].stream == "log-a");
    CHECK(a[i].version == i + 1);
    if (i > 0) CHECK(std::stoull(a[i].payload) > std::stoull(a[i - 1].payload));
  }
  const auto back = store.read_backward("log-a");
  REQUIRE(back.size() == a.size());
  for (std::size_t i = 0; i < back.size(); ++i) CHECK(back[i].version == a.size() - i);

  const auto middle = store.read("log-a", 500, 1100);
  REQUIRE(middle.size() == std::min<std::size_t>(1100, a.size() - 499));
  CHECK(middle.front().version == 500);
  const auto down = store.read_backward("log-a", 1030, 1500);
  REQUIRE(down.size() == 1030);
  CHECK(down.front().version == 1030);
  CHECK(down.back().version == 1);
  CHECK(store.read("log-a", a.size() + 1).empty());
  CHECK(store.read("log-zzz").empty());
  CHECK(store.read_backward("log-zzz").empty());

  std::uint64_t position = 1, seen = 0;
  for (;;) {
    const auto page = store.read_all(position, 700);
    if (page.empty()) break;
    for (const auto& e : page) {
      CHECK(e.position == position);
      CHECK(e.payload == std::to_string(position));
      ++position;
      ++seen;
    }
  }
  CHECK(seen == n);

  // Appending goes on from where the log left off.
  CHECK(store.append("log-a", std::vector<NewEvent>{raw("es.line", "next")}, ExpectedVersion::exactly(a.size())) ==
        a.size() + 1);
  CHECK(store.last_position() == n + 1);
}

TEST_CASE("appended events are published on their category's topic with stream, version and position",
          "[integration][event_store]") {
  temp_dir dir("meshbus-es");
  const auto cluster = unique_cluster("es-pub");
  Node writer(store_options(cluster, "writer", dir));
  Node reader(fast_options(cluster, "reader"));
  EventStore store(writer, {.topic_prefix = "shop"});
  CHECK(store.topic_of("cart") == "shop.cart");

  std::mutex mu;
  std::vector<std::string> got;
  reader.subscribe<ItemAdded>("shop.cart", [&](const ItemAdded& item, const Event& e) {
    std::lock_guard lock(mu);
    got.push_back(fmt::format("{} {} {} {} {} {}", item.sku, e.id(), *e.header("es-stream"), *e.header("es-version"),
                              *e.header("es-position"), e.type_name()));
  });
  REQUIRE(writer.wait_for_subscribers("shop.cart", 1, 10s));
  store.append("cart-7", ExpectedVersion::no_stream(), ItemAdded{"plum", 1}, ItemAdded{"kiwi", 2});
  store.append("cart-8", ExpectedVersion::no_stream(), ItemAdded{"lime", 1});
  REQUIRE(eventually([&] { std::lock_guard lock(mu); return got.size() == 3; }, 10s));
  std::lock_guard lock(mu);
  CHECK(got[0] == "plum cart-7@1 cart-7 1 1 es.item_added");
  CHECK(got[1] == "kiwi cart-7@2 cart-7 2 2 es.item_added");
  CHECK(got[2] == "lime cart-8@1 cart-8 1 3 es.item_added");
}

TEST_CASE("an append made in a handler carries the handled event's flow", "[integration][event_store]") {
  temp_dir dir("meshbus-es");
  const auto cluster = unique_cluster("es-flow");
  Node node(store_options(cluster, "a", dir));
  Node sender(fast_options(cluster, "sender"));
  EventStore store(node);
  std::atomic<bool> appended{false};
  node.subscribe("cmd.add", [&](const Event&) {
    store.append("cart-9", ExpectedVersion::any(), ItemAdded{"from-handler", 1});
    appended = true;
  });
  REQUIRE(sender.wait_for_subscribers("cmd.add", 1, 10s));
  PublishOptions o;
  o.event_id = "command-1";
  o.correlation_id = "flow-1";
  REQUIRE(sender.publish("cmd.add", "go", o) == PublishResult::ok);
  REQUIRE(eventually([&] { return appended.load(); }, 10s));
  const auto events = store.read("cart-9");
  REQUIRE(events.size() == 1);
  CHECK(events[0].correlation_id == "flow-1");
  CHECK(events[0].causation_id == "command-1");
}

TEST_CASE("an event store refuses bad stream names, types of another category and a node without a log",
          "[integration][event_store]") {
  temp_dir dir("meshbus-es");
  const auto cluster = unique_cluster("es-bad");
  {
    Node plain(fast_options(cluster, "plain"));
    try {
      EventStore store(plain);
      FAIL("an EventStore on a node without a data directory");
    } catch (const error& e) {
      CHECK(e.code_value() == errc::invalid_argument);
      CHECK(std::string(e.what()).find("data_dir") != std::string::npos);
    }
  }
  Node node(store_options(cluster, "a", dir));
  EventStore store(node);
  const auto invalid = [&](std::string_view stream) {
    try {
      store.append(stream, ExpectedVersion::any(), ItemAdded{"x", 1});
    } catch (const error& e) {
      CHECK(e.code_value() == errc::invalid_argument);
      return std::string(e.what());
    }
    return std::string("not refused");
  };
  CHECK(invalid("cart").find("no category before a '-'") != std::string::npos);
  CHECK(invalid("-42").find("no category before a '-'") != std::string::npos);
  CHECK(invalid("cart-").find("no id after the '-'") != std::string::npos);
  CHECK(invalid(std::string("cart-4\0 2", 8)).find("NUL") != std::string::npos);
  CHECK(invalid("$meshbus-1").find("meshbus's own") != std::string::npos);
  CHECK(invalid("ca rt-1").find("not a topic") != std::string::npos);
  CHECK(invalid("cart-" + std::string(400, 'x')).find("longer than") != std::string::npos);
  CHECK_THROWS_AS(store.append("cart-1", std::span<const NewEvent>{}), error);
  CHECK_THROWS_AS(store.append("cart-1", std::vector<NewEvent>{raw("", "no type")}), error);

  store.declare_category("cart", {std::string(ItemAdded::event_name), std::string(CartClosed::event_name)});
  CHECK(store.append("cart-1", ExpectedVersion::any(), ItemAdded{"ok", 1}) == 1);
  try {
    store.append("cart-1", std::vector<NewEvent>{raw("es.shipment_sent", "x")});
    FAIL("a type of another category was appended");
  } catch (const error& e) {
    CHECK(e.code_value() == errc::invalid_argument);
    CHECK(std::string(e.what()).find("takes events of type es.cart_closed, es.item_added only") != std::string::npos);
  }
  CHECK(store.version("cart-1") == 1);
  CHECK(store.last_position() == 1);
}
