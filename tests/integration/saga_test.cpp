// Sagas on real nodes: state per correlation id, commands by request/reply and by
// event, compensation newest first, time-outs on a hand-driven clock, roll-back of a
// step that throws, late and unknown flows, the instance bound, and API misuse.
#include <catch2/catch.hpp>

#include <meshbus/saga.hpp>

#include <atomic>
#include <map>
#include <set>

#include "tests/support/node_helpers.hpp"

using namespace meshbus;
using namespace meshbus::test;
using namespace std::chrono_literals;

namespace {

struct OrderPlaced {
  static constexpr std::string_view event_name = "sagatest.order.placed";
  static constexpr std::uint32_t event_version = 1;
  std::string order;
  int cents = 0;
  MSGPACK_DEFINE_MAP(order, cents)
};

struct ReserveStock {  // a command, by request/reply
  static constexpr std::string_view event_name = "sagatest.stock.reserve";
  static constexpr std::uint32_t event_version = 1;
  std::string order;
  MSGPACK_DEFINE_MAP(order)
};

struct StockReserved {
  static constexpr std::string_view event_name = "sagatest.stock.reserved";
  static constexpr std::uint32_t event_version = 1;
  std::string order;
  MSGPACK_DEFINE_MAP(order)
};

struct ReleaseStock {  // a compensating command, as an event
  static constexpr std::string_view event_name = "sagatest.stock.release";
  static constexpr std::uint32_t event_version = 1;
  std::string order;
  MSGPACK_DEFINE_MAP(order)
};

struct ChargePayment {  // a command, as an event
  static constexpr std::string_view event_name = "sagatest.payment.charge";
  static constexpr std::uint32_t event_version = 1;
  std::string order;
  int cents = 0;
  MSGPACK_DEFINE_MAP(order, cents)
};

struct PaymentResult {
  static constexpr std::string_view event_name = "sagatest.payment.result";
  static constexpr std::uint32_t event_version = 1;
  std::string order;
  bool captured = false;
  std::string reason;
  MSGPACK_DEFINE_MAP(order, captured, reason)
};

struct Order {
  std::string id;
  int cents = 0;
  bool reserved = false;
  std::vector<std::string> steps;
};
using Flow = Saga<Order>::Context;

/// A clock the test moves by hand.
struct manual_clock {
  std::shared_ptr<std::atomic<std::int64_t>> ms = std::make_shared<std::atomic<std::int64_t>>(0);
  std::function<std::chrono::steady_clock::time_point()> fn() const {
    return [ms = ms] { return std::chrono::steady_clock::time_point(std::chrono::milliseconds(ms->load())); };
  }
  void advance(std::chrono::milliseconds d) const { ms->fetch_add(d.count()); }
};

/// The other services of the flow: stock by request/reply, payments by events
/// (declining more than 100.00), and a record of what they were asked, with the
/// correlation ids they saw.
struct services {
  explicit services(Node& n) : node(n) {
    (void)node.serve<ReserveStock, StockReserved>([this](const ReserveStock& r, const Event& e) {
      std::lock_guard lock(mu);
      seen.push_back("reserve " + r.order);
      correlation[r.order].insert(std::string(e.correlation_id()));
      return StockReserved{r.order};
    });
    (void)node.subscribe<ChargePayment>([this](const ChargePayment& c, const Event& e) {
      {
        std::lock_guard lock(mu);
        seen.push_back("charge " + c.order);
        correlation[c.order].insert(std::string(e.correlation_id()));
      }
      const bool ok = c.cents <= 10000;
      (void)node.publish(PaymentResult{c.order, ok, ok ? "" : "card declined"});
    });
    (void)node.subscribe<ReleaseStock>([this](const ReleaseStock& r, const Event& e) {
      std::lock_guard lock(mu);
      seen.push_back("release " + r.order);
      correlation[r.order].insert(std::string(e.correlation_id()));
    });
  }
  std::size_t count(const std::string& what) const {
    std::lock_guard lock(mu);
    return static_cast<std::size_t>(std::count(seen.begin(), seen.end(), what));
  }

  Node& node;
  mutable std::mutex mu;
  std::vector<std::string> seen;
  std::map<std::string, std::set<std::string>> correlation;
};

/// The order saga of these tests.
void declare_order_flow(Saga<Order>& saga) {
  saga.start_on<OrderPlaced>([](Flow& flow, const OrderPlaced& placed) {
    flow.state().id = placed.order;
    flow.state().cents = placed.cents;
    flow.state().steps.push_back("placed");
    flow.request<ReserveStock, StockReserved>(ReserveStock{placed.order},
                                              [](Flow& f, RequestResult<StockReserved> reserved) {
                                                if (!reserved) return f.fail("no stock: " + reserved.message());
                                                f.state().reserved = true;
                                                f.state().steps.push_back("reserved");
                                                f.compensate("release stock", [](Flow& g) {
                                                  (void)g.publish(ReleaseStock{g.state().id});
                                                });
                                                (void)f.publish(ChargePayment{f.state().id, f.state().cents});
                                              });
  });
  saga.on<PaymentResult>([](Flow& flow, const PaymentResult& paid) {
    flow.state().steps.push_back(paid.captured ? "paid" : "declined");
    if (paid.captured) {
      flow.complete();
    } else {
      flow.fail("payment: " + paid.reason);
    }
  });
}

/// The flow key of an order: the event id of its OrderPlaced, which the test sets.
std::string flow_of(const std::string& order) { return "flow-" + order; }

PublishResult place(Node& n, const std::string& order, int cents) {
  const auto id = flow_of(order);
  PublishOptions o;
  o.event_id = id;
  return n.publish(OrderPlaced{order, cents}, o);
}

}  // namespace

TEST_CASE("a saga runs each flow to completion or compensation across nodes", "[integration][saga]") {
  const auto cluster = unique_cluster("saga");
  Node orders(fast_options(cluster, "orders"));
  Node others(fast_options(cluster, "others"));
  services svc(others);
  std::mutex mu;
  std::map<std::string, SagaStatus> finished;
  SagaOptions so;
  so.on_finished = [&](const std::string& key, SagaStatus status, const std::string&) {
    std::lock_guard lock(mu);
    finished[key] = status;
  };
  Saga<Order> saga(orders, "orders", so);
  declare_order_flow(saga);
  saga.start();
  REQUIRE(eventually([&] { return !orders.instances(ReserveStock::event_name).empty(); }, 10s));
  REQUIRE(orders.wait_for_subscribers(ChargePayment::event_name, 1, 10s));
  REQUIRE(others.wait_for_subscribers(PaymentResult::event_name, 1, 10s));

  REQUIRE(place(orders, "o1", 4200) == PublishResult::ok);
  REQUIRE(place(orders, "o2", 25000) == PublishResult::ok);  // declined: compensated
  REQUIRE(place(orders, "o3", 100) == PublishResult::ok);
  REQUIRE(eventually(
      [&] {
        std::lock_guard lock(mu);
        return finished.size() == 3;
      },
      20s));

  const auto o1 = saga.find(flow_of("o1"));
  REQUIRE(o1);
  CHECK(o1->status == SagaStatus::completed);
  CHECK(o1->state.steps == std::vector<std::string>{"placed", "reserved", "paid"});
  CHECK(o1->compensations_run.empty());
  const auto o2 = saga.find(flow_of("o2"));
  REQUIRE(o2);
  CHECK(o2->status == SagaStatus::compensated);
  CHECK(o2->reason == "payment: card declined");
  CHECK(o2->compensations_run == std::vector<std::string>{"release stock"});
  CHECK(saga.find(flow_of("o3"))->status == SagaStatus::completed);
  REQUIRE(eventually([&] { return svc.count("release o2") == 1; }, 10s));
  CHECK(svc.count("release o1") == 0);
  // Every command and event of a flow carried the flow's correlation id.
  for (const auto* order : {"o1", "o2", "o3"}) {
    std::lock_guard lock(svc.mu);
    CHECK(svc.correlation[order] == std::set<std::string>{flow_of(order)});
  }
  const auto s = saga.stats();
  CHECK(s.started == 3);
  CHECK(s.completed == 2);
  CHECK(s.compensated == 1);
  CHECK(s.running == 0);
  CHECK(s.step_errors == 0);
}

TEST_CASE("a command that fails reaches the saga as a typed failure", "[integration][saga]") {
  const auto cluster = unique_cluster("saga-fail");
  Node orders(fast_options(cluster, "orders"));
  Saga<Order> saga(orders, "orders");
  declare_order_flow(saga);  // nobody serves ReserveStock: no_service, at once
  saga.start();
  REQUIRE(place(orders, "o1", 100) == PublishResult::ok);
  REQUIRE(eventually([&] { return saga.stats().compensated == 1; }, 10s));
  const auto r = saga.find(flow_of("o1"));
  REQUIRE(r);
  CHECK(r->status == SagaStatus::compensated);
  CHECK(r->reason.find("no stock: no live instance serves 'sagatest.stock.reserve'") == 0);
  CHECK(r->compensations_run.empty());  // nothing was reserved, nothing to undo
}

TEST_CASE("saga time-outs follow a hand-driven clock and run the compensations newest first",
          "[integration][saga]") {
  const auto cluster = unique_cluster("saga-time");
  Node node(fast_options(cluster, "n"));
  manual_clock clock;
  SagaOptions so;
  so.timeout = 30s;
  so.timer_thread = false;
  so.clock = clock.fn();
  Saga<Order> saga(node, "timed", so);
  std::vector<std::string> undone;  // only touched by saga steps, which run one at a time
  std::atomic<int> timeouts{0};
  saga.start_on<OrderPlaced>([&](Flow& flow, const OrderPlaced& placed) {
    flow.state().id = placed.order;
    flow.compensate("first", [&](Flow&) { undone.push_back("first"); });
    flow.compensate("second", [&](Flow&) { undone.push_back("second"); });
    flow.compensate("third", [&](Flow&) { throw std::runtime_error("cannot undo"); });
  });
  saga.on_timeout([&](Flow& flow) {
    // The first time, the flow gets 10 s more; the second time it is left to time out.
    if (++timeouts == 1) flow.set_timeout(10s);
  });
  saga.start();
  REQUIRE(place(node, "slow", 100) == PublishResult::ok);
  REQUIRE(eventually([&] { return saga.stats().started == 1; }, 10s));

  clock.advance(29s);
  CHECK(saga.run_timeouts() == 0);
  clock.advance(1s);  // 30 s: on_timeout extends
  CHECK(saga.run_timeouts() == 0);
  CHECK(timeouts == 1);
  REQUIRE(saga.find(flow_of("slow"))->status == SagaStatus::running);
  clock.advance(9s);
  CHECK(saga.run_timeouts() == 0);
  clock.advance(1s);  // 40 s
  CHECK(saga.run_timeouts() == 1);
  CHECK(timeouts == 2);
  const auto r = saga.find(flow_of("slow"));
  REQUIRE(r);
  CHECK(r->status == SagaStatus::timed_out);
  CHECK(r->compensations_run == std::vector<std::string>{"second", "first"});
  CHECK(undone == std::vector<std::string>{"second", "first"});
  REQUIRE(r->notes.size() == 1);
  CHECK(r->notes[0] == "compensation 'third' threw: cannot undo");
  CHECK(saga.stats().timed_out == 1);
}

TEST_CASE("a saga step that throws is rolled back and its event retried, and stray events are counted",
          "[integration][saga]") {
  const auto cluster = unique_cluster("saga-retry");
  Node node(fast_options(cluster, "n"));
  Saga<Order> saga(node, "retry");
  std::atomic<int> calls{0};
  saga.start_on<OrderPlaced>([&](Flow& flow, const OrderPlaced& placed) {
    flow.state().id = placed.order;
    flow.state().steps.push_back("placed");
  });
  saga.on<PaymentResult>([&](Flow& flow, const PaymentResult&) {
    flow.state().steps.push_back("attempt");
    flow.compensate("never", [](Flow&) {});
    if (++calls == 1) throw std::runtime_error("transient");
    flow.complete();
  });
  saga.start();
  REQUIRE(place(node, "o1", 1) == PublishResult::ok);
  REQUIRE(eventually([&] { return saga.stats().started == 1; }, 10s));
  const auto o1_flow = flow_of("o1");
  PublishOptions in_flow;
  in_flow.correlation_id = o1_flow;
  REQUIRE(node.publish(PaymentResult{"o1", true, ""}, in_flow) == PublishResult::ok);
  REQUIRE(eventually([&] { return saga.stats().completed == 1; }, 10s));
  const auto r = saga.find(flow_of("o1"));
  REQUIRE(r);
  // The failed attempt left nothing behind: one "attempt", no compensation run.
  CHECK(r->state.steps == std::vector<std::string>{"placed", "attempt"});
  CHECK(r->compensations_run.empty());
  CHECK(calls == 2);
  CHECK(saga.stats().step_errors == 1);

  // Of a finished flow: late. Of no flow at all: unknown.
  REQUIRE(node.publish(PaymentResult{"o1", true, ""}, in_flow) == PublishResult::ok);
  PublishOptions stray;
  stray.correlation_id = "flow-nobody";
  REQUIRE(node.publish(PaymentResult{"x", true, ""}, stray) == PublishResult::ok);
  REQUIRE(eventually([&] { return saga.stats().late == 1 && saga.stats().unknown_flow == 1; }, 10s));
  CHECK(saga.stats().completed == 1);
}

TEST_CASE("a saga at max_instances refuses new flows with a dead letter", "[integration][saga]") {
  const auto cluster = unique_cluster("saga-full");
  Node node(fast_options(cluster, "n"));
  SagaOptions so;
  so.max_instances = 1;
  Saga<Order> saga(node, "full", so);
  saga.start_on<OrderPlaced>([](Flow& flow, const OrderPlaced& p) { flow.state().id = p.order; });
  saga.start();
  REQUIRE(place(node, "o1", 1) == PublishResult::ok);
  REQUIRE(eventually([&] { return saga.stats().started == 1; }, 10s));
  REQUIRE(place(node, "o2", 1) == PublishResult::ok);
  REQUIRE(eventually([&] { return node.dead_letters().size() == 1; }, 10s));
  const auto dl = node.dead_letters().front();
  CHECK(dl.event_id == flow_of("o2"));
  CHECK(dl.reason.find("SagaOptions::max_instances") != std::string::npos);
  CHECK(dl.attempts == 1);  // refused at once, not retried
  CHECK(saga.stats().refused == 1);
  CHECK(saga.stats().running == 1);
}

TEST_CASE("saga API misuse throws meshbus::error", "[integration][saga]") {
  Node node(fast_options(unique_cluster("saga-misuse"), "n"));
  auto code = [](auto&& f) {
    try {
      f();
    } catch (const error& e) {
      return e.code_value();
    }
    return errc{};
  };
  SagaOptions grouped;
  grouped.subscribe.group = "g";
  CHECK(code([&] { Saga<Order> s(node, "s", grouped); }) == errc::invalid_argument);
  CHECK(code([&] { Saga<Order> s(node, ""); }) == errc::invalid_argument);
  SagaOptions own_clock;
  own_clock.clock = manual_clock{}.fn();
  CHECK(code([&] { Saga<Order> s(node, "s", own_clock); }) == errc::invalid_argument);
  Saga<Order> saga(node, "s");
  CHECK(code([&] { saga.start(); }) == errc::invalid_argument);  // no steps
  saga.start_on<OrderPlaced>([](Flow&, const OrderPlaced&) {});
  CHECK(code([&] { saga.on<OrderPlaced>([](Flow&, const OrderPlaced&) {}); }) == errc::invalid_argument);
  saga.start();
  CHECK(code([&] { saga.start(); }) == errc::invalid_argument);
  CHECK(code([&] { saga.on<PaymentResult>([](Flow&, const PaymentResult&) {}); }) == errc::invalid_argument);
}

TEST_CASE("steps of different saga instances run in parallel, the steps of one instance one at a time",
          "[integration][saga]") {
  Node node(fast_options(unique_cluster("saga-parallel"), "n"));
  SagaOptions so;
  so.timer_thread = false;
  const auto core = std::make_shared<detail::saga_core>(
      node, "parallel", so, [] { return std::make_shared<detail::saga_instance_of<Order>>(); });
  // Events of two flows, as the receive path hands them to a saga's subscription.
  const NodeId publisher;
  auto event_of = [&](Event::fields& f, std::string_view flow, std::uint64_t sequence) {
    f.publisher = &publisher;
    f.correlation_id = flow;
    f.sequence = sequence;
  };
  Event::fields a1;
  Event::fields a2;
  Event::fields b1;
  event_of(a1, "flow-a", 1);
  event_of(a2, "flow-a", 2);
  event_of(b1, "flow-b", 3);

  std::mutex mu;
  std::condition_variable cv;
  bool a_started = false;
  bool b_ran = false;
  bool b_seen_during_a = false;
  int inside_a = 0;
  int most_inside_a = 0;
  auto enter_a = [&] {
    std::lock_guard lock(mu);
    most_inside_a = std::max(most_inside_a, ++inside_a);
    a_started = true;
    cv.notify_all();
  };
  auto leave_a = [&] {
    std::lock_guard lock(mu);
    --inside_a;
  };
  auto wait_for = [&](const bool& flag) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, 10s, [&] { return flag; });
  };

  // Flow a's first step waits for flow b's step: with one lock for all instances it
  // would wait in vain. Flow a's second step must wait for its first.
  std::thread first_a([&] {
    core->on_event(Event(a1), true, [&](detail::saga_step&) {
      enter_a();
      b_seen_during_a = wait_for(b_ran);
      leave_a();
    });
  });
  REQUIRE(wait_for(a_started));
  std::thread second_a([&] {
    core->on_event(Event(a2), false, [&](detail::saga_step&) {
      enter_a();
      leave_a();
    });
  });
  std::thread only_b([&] {
    core->on_event(Event(b1), true, [&](detail::saga_step&) {
      std::lock_guard lock(mu);
      b_ran = true;
      cv.notify_all();
    });
  });
  first_a.join();
  second_a.join();
  only_b.join();
  CHECK(b_seen_during_a);
  CHECK(most_inside_a == 1);
  const auto stats = core->stats();
  CHECK(stats.started == 2);
  CHECK(stats.steps == 3);
  CHECK(stats.running == 2);
}
