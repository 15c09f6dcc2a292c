// Request/reply between real nodes: replies, distinct errors (timeout, no service,
// handler failure, rejection, instance gone), spreading over instances, typed
// requests (commands and queries: services named after their type), and
// correlation into handlers.
#include <catch2/catch.hpp>

#include <meshbus/typed.hpp>

#include <set>

#include "tests/support/node_helpers.hpp"

using namespace meshbus;
using namespace meshbus::test;
using namespace std::chrono_literals;

namespace {

errc code_of(std::future<Reply>& f) {
  try {
    f.get();
  } catch (const error& e) {
    return e.code_value();
  }
  return errc{};
}

struct StockQuery {
  static constexpr std::string_view event_name = "inventory.stock";
  static constexpr std::uint32_t event_version = 1;
  std::string sku;
  MSGPACK_DEFINE_MAP(sku)
};

struct StockLevel {
  static constexpr std::string_view event_name = "inventory.level";
  static constexpr std::uint32_t event_version = 1;
  std::string sku;
  int available = 0;
  MSGPACK_DEFINE_MAP(sku, available)
};

struct ReserveStock {
  static constexpr std::string_view event_name = "inventory.reserve";
  static constexpr std::uint32_t event_version = 1;
  std::string sku;
  int quantity = 0;
  MSGPACK_DEFINE_MAP(sku, quantity)
};

struct Reserved {
  static constexpr std::string_view event_name = "inventory.reserved";
  static constexpr std::uint32_t event_version = 1;
  bool ok = false;
  int left = 0;
  MSGPACK_DEFINE_MAP(ok, left)
};

}  // namespace

TEST_CASE("a request reaches a service on another node and its reply comes back", "[integration][request]") {
  const auto cluster = unique_cluster("req");
  Node client(fast_options(cluster, "client"));
  Node server(fast_options(cluster, "server"));
  server.serve("echo.upper", [](const Event& r) {
    std::string text(r.text());
    for (auto& c : text) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return Reply{text};
  });
  REQUIRE(eventually([&] { return client.instances("echo.upper").size() == 1; }, 10s));
  auto reply = client.request("echo.upper", "hello").get();
  CHECK(reply.payload == "HELLO");
  CHECK(reply.responder == server.id());
  CHECK(client.stats().requests_sent == 1);
  CHECK(server.stats().requests_served == 1);
}

TEST_CASE("request failures are distinct errors", "[integration][request]") {
  const auto cluster = unique_cluster("reqerr");
  Node client(fast_options(cluster, "client"));
  auto so = fast_options(cluster, "server");
  so.linger = 100ms;  // stop() waits this long for handlers; the slow one takes 500 ms
  Node server(so);
  server.serve("fail.throw", [](const Event&) -> Reply { throw std::runtime_error("database is down"); });
  server.serve("fail.poison", [](const Event&) -> Reply { throw poison_event("cannot parse the order"); });
  server.serve("fail.slow", [](const Event&) {
    std::this_thread::sleep_for(500ms);
    return Reply{"late"};
  });
  REQUIRE(eventually([&] { return client.instances("fail.slow").size() == 1; }, 10s));

  SECTION("no live instance fails at once, not after the timeout") {
    const auto start = std::chrono::steady_clock::now();
    RequestOptions o;
    o.timeout = 10s;
    auto f = client.request("nobody.serves.this", "x", o);
    CHECK(code_of(f) == errc::no_service);
    CHECK(std::chrono::steady_clock::now() - start < 1s);
  }
  SECTION("the handler threw") {
    auto f = client.request("fail.throw", "x");
    try {
      f.get();
      FAIL("expected an error");
    } catch (const error& e) {
      CHECK(e.code_value() == errc::remote_failure);
      CHECK_THAT(e.what(), Catch::Contains("database is down"));
    }
  }
  SECTION("the request can never be handled") {
    auto f = client.request("fail.poison", "x");
    CHECK(code_of(f) == errc::request_rejected);
  }
  SECTION("the reply takes too long; the late reply is counted, not delivered") {
    RequestOptions o;
    o.timeout = 100ms;
    auto f = client.request("fail.slow", "x", o);
    CHECK(code_of(f) == errc::timeout);
    REQUIRE(eventually([&] { return client.stats().late_replies == 1; }, 5s));
  }
  SECTION("the instance leaves before replying (its handler outlasts its linger)") {
    RequestOptions o;
    o.timeout = 10s;
    auto f = client.request("fail.slow", "x", o);
    server.stop();
    CHECK(code_of(f) == errc::peer_gone);
  }
}

TEST_CASE("requests are spread over the live instances", "[integration][request]") {
  const auto cluster = unique_cluster("spread");
  Node client(fast_options(cluster, "client"));
  Node s1(fast_options(cluster, "s1"));
  Node s2(fast_options(cluster, "s2"));
  Node s3(fast_options(cluster, "s3"));
  for (auto* s : {&s1, &s2, &s3}) s->serve("work.do", [s](const Event&) { return Reply{s->name()}; });
  REQUIRE(eventually([&] { return client.instances("work.do").size() == 3; }, 10s));
  std::map<std::string, int> by_instance;
  for (int i = 0; i < 30; ++i) ++by_instance[client.request("work.do", "x").get().payload];
  CHECK(by_instance == std::map<std::string, int>{{"s1", 10}, {"s2", 10}, {"s3", 10}});
  s2.stop();
  REQUIRE(eventually([&] { return client.instances("work.do").size() == 2; }, 10s));
  for (int i = 0; i < 10; ++i) CHECK(client.request("work.do", "x").get().payload != "s2");
}

TEST_CASE("typed requests go to the service named after their type, or to the one given",
          "[integration][request][typed]") {
  const auto cluster = unique_cluster("cqrs");
  Node client(fast_options(cluster, "client"));
  Node inventory(fast_options(cluster, "inventory"));
  std::mutex mu;
  std::map<std::string, int> stock{{"apple", 5}};
  inventory.serve<StockQuery, StockLevel>([&](const StockQuery& q) {
    std::lock_guard lock(mu);
    return StockLevel{q.sku, stock[q.sku]};
  });
  inventory.serve<ReserveStock, Reserved>([&](const ReserveStock& c) {
    std::lock_guard lock(mu);
    auto& left = stock[c.sku];
    if (left < c.quantity) return Reserved{false, left};
    left -= c.quantity;
    return Reserved{true, left};
  });
  REQUIRE(eventually([&] { return client.instances("inventory.reserve").size() == 1; }, 10s));
  CHECK(client.request<StockQuery, StockLevel>(StockQuery{"apple"}).get().available == 5);
  const auto r1 = client.request<ReserveStock, Reserved>(ReserveStock{"apple", 3}).get();
  CHECK((r1.ok && r1.left == 2));
  const auto r2 = client.request<ReserveStock, Reserved>(ReserveStock{"apple", 3}).get();
  CHECK((!r2.ok && r2.left == 2));
  // The callback form takes the same options and completes on a handler thread.
  std::promise<std::string> level;
  RequestOptions patient;
  patient.timeout = 10s;
  client.request_async<StockQuery, StockLevel>(
      StockQuery{"apple"},
      [&](std::optional<StockLevel> l, std::exception_ptr failed) {
        level.set_value(l ? l->sku + " " + std::to_string(l->available) : failed ? "failed" : "neither");
      },
      patient);
  CHECK(level.get_future().get() == "apple 2");
  // A typed reply that is not what the caller expects fails with bad_reply.
  auto wrong = client.request<StockQuery, Reserved>("inventory.stock", StockQuery{"apple"});
  CHECK_THROWS_MATCHES(wrong.get(), error, Catch::Matchers::Predicate<error>([](const error& e) {
                         return e.code_value() == errc::bad_reply;
                       }));
  // A request that does not decode as what the handler takes is rejected.
  RequestOptions o;
  o.type_name = "inventory.stock";
  o.type_version = 1;
  auto garbage = client.request("inventory.stock", "\xc1", o);
  CHECK(code_of(garbage) == errc::request_rejected);
}

TEST_CASE("a request from a handler belongs to the handled event's flow", "[integration][request]") {
  const auto cluster = unique_cluster("reqflow");
  Node a(fast_options(cluster, "a"));
  Node b(fast_options(cluster, "b"));
  std::mutex mu;
  std::string seen;
  b.serve("flow.check", [&](const Event& r) {
    std::lock_guard lock(mu);
    seen = std::string(r.correlation_id()) + "|" + std::string(r.causation_id());
    return Reply{"ok"};
  });
  REQUIRE(eventually([&] { return a.instances("flow.check").size() == 1; }, 10s));
  std::promise<std::string> done;
  a.subscribe("flow.start", [&](const Event&) {
    a.request_async("flow.check", "",
                    [&](std::optional<Reply> r, std::exception_ptr) { done.set_value(r ? r->payload : "failed"); });
  });
  REQUIRE(a.publish("flow.start", "go") == PublishResult::ok);
  REQUIRE(done.get_future().get() == "ok");
  const auto root = a.id().to_string() + "-" + std::to_string(a.epoch()) + "-1";
  std::lock_guard lock(mu);
  CHECK(seen == root + "|" + root);
}

TEST_CASE("a handler can wait for a typed query, to another node or to its own", "[integration][request][typed]") {
  const auto cluster = unique_cluster("reqwait");
  auto options = fast_options(cluster, "shop");
  options.handler_threads = 1;  // the one thread that runs the handler must not be needed for the reply
  Node shop(options);
  Node inventory(fast_options(cluster, "inventory"));
  inventory.serve<StockQuery, StockLevel>([](const StockQuery& q) { return StockLevel{q.sku, 7}; });
  shop.serve<ReserveStock, Reserved>([](const ReserveStock& c) { return Reserved{true, c.quantity}; });
  REQUIRE(eventually([&] { return shop.instances("inventory.stock").size() == 1; }, 10s));
  std::promise<std::string> done;
  shop.subscribe("shop.check", [&](const Event&) {
    try {
      const auto remote = shop.request<StockQuery, StockLevel>(StockQuery{"pear"}, {.timeout = 5s}).get();
      const auto local =
          shop.request<ReserveStock, Reserved>("inventory.reserve", ReserveStock{"pear", 2}, {.timeout = 5s}).get();
      done.set_value(remote.sku + " " + std::to_string(remote.available) + " " + std::to_string(local.left));
    } catch (const std::exception& e) {
      done.set_value(std::string("failed: ") + e.what());
    }
  });
  REQUIRE(shop.publish("shop.check", "go") == PublishResult::ok);
  auto result = done.get_future();
  REQUIRE(result.wait_for(20s) == std::future_status::ready);
  CHECK(result.get() == "pear 7 2");
}
