// Typed events between real nodes: publish and subscribe by type with the event's
// context, dead letters for what cannot be decoded, and correlation that follows a
// flow from handler to handler.
#include <catch2/catch.hpp>

#include <meshbus/typed.hpp>

#include "tests/support/node_helpers.hpp"

using namespace meshbus;
using namespace meshbus::test;
using namespace std::chrono_literals;

namespace {

struct PaymentRequested {
  static constexpr std::string_view event_name = "it.payment.requested";
  static constexpr std::uint32_t event_version = 1;
  std::string order_id;
  double amount = 0;
  MSGPACK_DEFINE_MAP(order_id, amount)
};

struct PaymentDone {
  static constexpr std::string_view event_name = "it.payment.done";
  static constexpr std::uint32_t event_version = 1;
  std::string order_id;
  bool accepted = false;
  MSGPACK_DEFINE_MAP(order_id, accepted)
};

struct Shipped {
  static constexpr std::string_view event_name = "it.shipped";
  static constexpr std::uint32_t event_version = 1;
  std::string order_id;
  MSGPACK_DEFINE_MAP(order_id)
};

}  // namespace

TEST_CASE("typed events are published and received with their context", "[integration][typed]") {
  const auto cluster = unique_cluster("typed");
  Node a(fast_options(cluster, "a"));
  Node b(fast_options(cluster, "b"));
  std::mutex mu;
  std::vector<std::string> got;
  b.subscribe<PaymentRequested>([&](const PaymentRequested& p, const Event& e) {
    std::lock_guard lock(mu);
    got.push_back(p.order_id + "/" + std::to_string(p.amount) + "/" + std::string(e.topic()) + "/" +
                  std::string(e.type_name()) + "/" + std::to_string(e.type_version()) + "/" +
                  std::string(e.content_type()));
  });
  REQUIRE(a.wait_for_subscribers("it.payment.requested", 1, 10s));
  REQUIRE(a.publish(PaymentRequested{"o-1", 9.5}) == PublishResult::ok);
  REQUIRE(eventually([&] { std::lock_guard lock(mu); return !got.empty(); }, 5s));
  std::lock_guard lock(mu);
  CHECK(got[0] == "o-1/9.500000/it.payment.requested/it.payment.requested/1/application/msgpack");
}

TEST_CASE("a typed event that does not decode is dead-lettered with a reason naming the field",
          "[integration][typed]") {
  const auto cluster = unique_cluster("typed-dlq");
  Node a(fast_options(cluster, "a"));
  Node b(fast_options(cluster, "b"));
  std::atomic<int> handled{0};
  b.subscribe<PaymentRequested>([&](const PaymentRequested&) { ++handled; });  // reliable, not acknowledged
  REQUIRE(a.wait_for_subscribers("it.payment.requested", 1, 10s));
  // Same type name, but "amount" is a string: a publisher that got the schema wrong.
  msgpack::sbuffer buf;
  msgpack::pack(buf, std::map<std::string, std::string>{{"order_id", "o-2"}, {"amount", "lots"}});
  PublishOptions po;
  po.type_name = "it.payment.requested";
  po.type_version = 1;
  REQUIRE(a.publish("it.payment.requested", std::string_view(buf.data(), buf.size()), po) == PublishResult::ok);
  REQUIRE(a.publish(PaymentRequested{"o-3", 1}) == PublishResult::ok);  // the next one still flows
  REQUIRE(eventually([&] { return handled == 1 && b.dead_letters().size() == 1; }, 5s));
  const auto d = b.dead_letters()[0];
  CHECK_THAT(d.reason, Catch::Contains("field 'amount' has the wrong type"));
  CHECK(d.attempts == 1);  // never retried: it can never decode
  CHECK(d.type_name == "it.payment.requested");
  // A newer version than this program knows is refused the same way.
  po.type_version = 7;
  REQUIRE(a.publish("it.payment.requested", std::string_view(buf.data(), buf.size()), po) == PublishResult::ok);
  REQUIRE(eventually([&] { return b.dead_letters().size() == 2; }, 5s));
  CHECK_THAT(b.dead_letters()[1].reason, Catch::Contains("newer than this program knows"));
}

TEST_CASE("events published in handlers carry the flow's correlation and their cause", "[integration][typed]") {
  const auto cluster = unique_cluster("correlation");
  Node orders(fast_options(cluster, "orders"));
  Node payments(fast_options(cluster, "payments"));
  Node shipping(fast_options(cluster, "shipping"));
  payments.subscribe<PaymentRequested>([&](const PaymentRequested& p) {
    REQUIRE(payments.publish(PaymentDone{p.order_id, true}) == PublishResult::ok);
  });
  shipping.subscribe<PaymentDone>([&](const PaymentDone& p) {
    REQUIRE(shipping.publish(Shipped{p.order_id}) == PublishResult::ok);
  });
  std::mutex mu;
  std::string root_id;
  std::vector<std::tuple<std::string, std::string, std::string>> trail;  // type, correlation, causation
  auto record = [&](const Event& e) {
    std::lock_guard lock(mu);
    trail.emplace_back(std::string(e.type_name()), std::string(e.correlation_id()), std::string(e.causation_id()));
  };
  orders.subscribe("it.**", record);
  REQUIRE(orders.wait_for_subscribers("it.payment.requested", 1, 10s));
  REQUIRE(payments.wait_for_subscribers("it.payment.done", 2, 10s));
  REQUIRE(shipping.wait_for_subscribers("it.shipped", 1, 10s));
  REQUIRE(orders.publish(PaymentRequested{"o-9", 5}) == PublishResult::ok);
  REQUIRE(eventually([&] { std::lock_guard lock(mu); return trail.size() == 3; }, 10s));
  std::lock_guard lock(mu);
  // The root: no correlation of its own. Its id is "<orders id>-<epoch>-1".
  const auto root = orders.id().to_string() + "-" + std::to_string(orders.epoch()) + "-1";
  CHECK(trail[0] == std::make_tuple(std::string("it.payment.requested"), std::string(), std::string()));
  CHECK(std::get<1>(trail[1]) == root);  // PaymentDone: correlated to the root, caused by it
  CHECK(std::get<2>(trail[1]) == root);
  CHECK(std::get<1>(trail[2]) == root);  // Shipped: same flow, caused by PaymentDone
  CHECK(std::get<2>(trail[2]) == payments.id().to_string() + "-" + std::to_string(payments.epoch()) + "-1");
}
