// Durable sagas. Across real processes: tests/procs/saga_node runs an order saga on a
// data directory; each test drives flows to their middle (state set, a compensation
// registered, waiting for an event or for a request's result), kills the process with
// SIGKILL, starts it again on the same directory, and checks that the flows go on
// from where they stood: completed, compensated on a failure, timed out at a deadline
// that passed meanwhile, a pending request sent again. In one process: what a durable
// saga refuses (closures it cannot store, a State without MessagePack), and its
// finished records, bounded on disk as in memory.
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <meshbus/saga.hpp>

#include <condition_variable>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>

#include "tests/procs/saga_node_events.hpp"
#include "tests/support/node_helpers.hpp"

using namespace meshbus;
using namespace meshbus::test;
using namespace meshbus::test::saga_node;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

/// The "stats" line saga_node printed last.
std::string last_stats(const std::string& out) {
  std::string last;
  for (const auto& line : lines_of(out)) {
    if (line.rfind("stats ", 0) == 0) last = line;
  }
  return last;
}

/// Waits until saga_node's counters include every "name=value" of `values`.
bool counted(child_process& p, const std::vector<std::string>& values) {
  const bool reached = p.wait_output(
      [&](const std::string& out) {
        const auto line = last_stats(out) + " ";
        return std::all_of(values.begin(), values.end(),
                           [&](const std::string& v) { return line.find(" " + v + " ") != std::string::npos; });
      },
      10s);
  UNSCOPED_INFO("last counters: " << last_stats(p.out()));
  return reached;
}

/// What the services around the saga saw: "<order> <correlation id>" per request or
/// event, and the steps each release carried.
struct seen {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> reserves, charges, releases;
  std::size_t count(const std::vector<std::string>& list, const std::string& entry) {
    std::lock_guard lock(mu);
    return static_cast<std::size_t>(std::count(list.begin(), list.end(), entry));
  }
  void add(std::vector<std::string>& list, std::string entry) {
    std::lock_guard lock(mu);
    list.push_back(std::move(entry));
    cv.notify_all();
  }
};

/// The saga's surroundings in this process: a driver node that places orders, answers
/// payments and records charges and releases, and a stock node that serves
/// reservations, holding them while `hold` is set.
class world {
 public:
  explicit world(const std::string& prefix)
      : cluster_(unique_cluster(prefix)),
        driver_(fast_options(cluster_, "driver")),
        stock_(fast_options(cluster_, "stock")) {
    (void)stock_.serve<ReserveStock, StockReserved>([this](const ReserveStock& r, const Event& e) {
      seen_.add(seen_.reserves, r.order + " " + std::string(e.correlation_id()));
      std::unique_lock lock(hold_mu_);
      hold_cv_.wait_for(lock, 30s, [&] { return !hold_; });
      return StockReserved{r.order};
    });
    // Acknowledged: an event the saga's outbox publishes again after a crash (it had
    // gone out, the process died before the outbox forgot it) has the same event id and
    // is dropped as the duplicate it is. From the earliest: a restarted saga may publish
    // (a compensation at a deadline that passed) before this node is connected to it
    // again, and a subscription in effect only from then on would miss that.
    SubscribeOptions once;
    once.delivery = Delivery::acknowledged;
    once.start = StartFrom::earliest();
    (void)driver_.subscribe<ChargePayment>(
        [this](const ChargePayment& c, const Event& e) {
          seen_.add(seen_.charges, c.order + " " + std::string(e.correlation_id()));
        },
        once);
    (void)driver_.subscribe<ReleaseStock>(
        [this](const ReleaseStock& r, const Event& e) {
          seen_.add(seen_.releases, r.order + " " + std::string(e.correlation_id()) + " " + r.steps);
        },
        once);
  }
  ~world() { release_hold(); }

  void hold() {
    std::lock_guard lock(hold_mu_);
    hold_ = true;
  }
  void release_hold() {
    std::lock_guard lock(hold_mu_);
    hold_ = false;
    hold_cv_.notify_all();
  }

  /// Starts saga_node on the data directory; returns once its saga runs and it knows the
  /// stock service and the driver's subscriptions are in effect.
  std::unique_ptr<child_process> start_saga(const std::string& restored) {
    auto p = std::make_unique<child_process>(std::vector<std::string>{
        MESHBUS_TEST_SAGA_NODE, "--cluster", cluster_, "--name", "saga", "--data-dir", dir_.path.string(),
        "--beacon-ms", "100", "--expiry-ms", "1000"});
    const bool started = printed(*p, "started restored=" + restored, 20s) && counted(*p, {"stock=1"});
    INFO("saga_node: " << p->out() << p->err());
    REQUIRE(started);
    REQUIRE(driver_.wait_for_subscribers(OrderPlaced::event_name, 1, 20s));
    REQUIRE(driver_.wait_for_subscribers(PaymentResult::event_name, 1, 20s));
    return p;
  }
  /// Lets the saga's payment subscription see the driver's payment stream (a result of
  /// no flow), so that it has a position to resume from after a restart.
  void prime(child_process& saga) {
    PublishOptions o;
    o.correlation_id = "flow-nobody";
    REQUIRE(driver_.publish(PaymentResult{"nobody", true, ""}, o) == PublishResult::ok);
    REQUIRE(printed(saga, "unknown_flow=1", 20s));
  }
  void place(const std::string& order, std::int64_t timeout_ms = 0) {
    const auto id = "flow-" + order;
    PublishOptions o;
    o.event_id = id;
    REQUIRE(driver_.publish(OrderPlaced{order, 4200, timeout_ms}, o) == PublishResult::ok);
  }
  void pay(const std::string& order, bool captured, const std::string& reason = "") {
    const auto id = "flow-" + order;
    PublishOptions o;
    o.correlation_id = id;
    REQUIRE(driver_.publish(PaymentResult{order, captured, reason}, o) == PublishResult::ok);
  }
  /// Waits until `entry` is in `list` (one of seen()'s).
  bool saw(std::vector<std::string> seen::*list, const std::string& entry, std::chrono::milliseconds timeout = 20s) {
    std::unique_lock lock(seen_.mu);
    return seen_.cv.wait_for(lock, timeout, [&] {
      const auto& l = seen_.*list;
      return std::find(l.begin(), l.end(), entry) != l.end();
    });
  }
  static void kill(child_process& p) {
    p.signal(SIGKILL);
    REQUIRE(p.wait(10s).has_value());
  }
  static void stop(child_process& p) {
    p.signal(SIGTERM);
    const auto code = p.wait(20s);
    INFO("saga_node: " << p.out() << p.err());
    CHECK(code == 0);
  }
  seen& log() { return seen_; }

 private:
  temp_dir dir_;
  std::string cluster_;
  Node driver_;
  Node stock_;
  seen seen_;
  std::mutex hold_mu_;
  std::condition_variable hold_cv_;
  bool hold_ = false;
};

}  // namespace

TEST_CASE("a saga killed with SIGKILL mid-flow completes the flow after a restart, on an event published while it "
          "was down",
          "[multiprocess][saga]") {
  world w("sagakill");
  auto first = w.start_saga("0");
  w.prime(*first);
  w.place("o1");
  // The charge goes out of the step's outbox once its record is written: the flow is in
  // its middle, stock reserved, "release stock" registered, waiting for the payment.
  REQUIRE(w.saw(&seen::charges, "o1 flow-o1"));
  world::kill(*first);
  w.pay("o1", true);  // nobody subscribes now: the saga's durable subscription resumes at it

  auto second = w.start_saga("1");
  const bool finished = printed(*second, "finished flow-o1 completed steps=placed,reserved,paid undone= reason=", 20s);
  INFO("first: " << first->out() << first->err() << "\nsecond: " << second->out() << second->err());
  REQUIRE(finished);
  CHECK(w.log().count(w.log().reserves, "o1 flow-o1") == 1);  // its result had run: not sent again
  CHECK(w.log().count(w.log().charges, "o1 flow-o1") == 1);
  CHECK(w.log().releases.empty());
  CHECK(counted(*second, {"restored=1", "completed=1", "running=0", "step_errors=0"}));
  world::stop(*second);
}

TEST_CASE("a saga killed with SIGKILL mid-flow compensates after a restart: on a failure, and at a deadline that "
          "passed while it was down",
          "[multiprocess][saga]") {
  world w("sagacompensate");
  auto first = w.start_saga("0");
  w.prime(*first);
  const auto placed_at = std::chrono::steady_clock::now();
  w.place("o2");
  w.place("o3", 3000);  // its deadline passes while the process is down
  REQUIRE(w.saw(&seen::charges, "o2 flow-o2"));
  REQUIRE(w.saw(&seen::charges, "o3 flow-o3"));
  world::kill(*first);
  // A deadline is a time: waiting for it is waiting for the condition.
  std::this_thread::sleep_until(placed_at + 3500ms);

  auto second = w.start_saga("2");
  INFO("first: " << first->out() << first->err());
  // The deadline that passed fires at once; its compensation runs with the state of before.
  const bool timed_out =
      printed(*second, "finished flow-o3 timed_out steps=placed,reserved undone=release stock reason=timed out", 5s);
  INFO("second: " << second->out() << second->err());
  REQUIRE(timed_out);
  REQUIRE(w.saw(&seen::releases, "o3 flow-o3 placed,reserved"));

  w.pay("o2", false, "card declined");
  REQUIRE(printed(*second,
                  "finished flow-o2 compensated steps=placed,reserved,declined undone=release stock "
                  "reason=payment: card declined",
                  20s));
  REQUIRE(w.saw(&seen::releases, "o2 flow-o2 placed,reserved,declined"));
  CHECK(w.log().count(w.log().releases, "o3 flow-o3 placed,reserved") == 1);
  CHECK(w.log().count(w.log().releases, "o2 flow-o2 placed,reserved,declined") == 1);
  CHECK(w.log().count(w.log().charges, "o2 flow-o2") == 1);
  CHECK(counted(*second, {"restored=2", "compensated=1", "timed_out=1", "running=0", "step_errors=0"}));
  world::stop(*second);
}

TEST_CASE("a request a saga was waiting for when it was killed is sent again after the restart",
          "[multiprocess][saga]") {
  world w("sagaresend");
  auto first = w.start_saga("0");
  w.hold();  // the stock service takes the request but does not answer yet
  w.place("o4");
  REQUIRE(w.saw(&seen::reserves, "o4 flow-o4"));
  world::kill(*first);
  w.release_hold();  // its answer goes to a process that is gone

  auto second = w.start_saga("1");
  INFO("first: " << first->out() << first->err());
  const bool resent = eventually([&] { return w.log().count(w.log().reserves, "o4 flow-o4") == 2; }, 20s);
  INFO("second: " << second->out() << second->err());
  REQUIRE(resent);  // at least once, with the flow's correlation id
  REQUIRE(w.saw(&seen::charges, "o4 flow-o4"));
  w.pay("o4", true);
  REQUIRE(printed(*second, "finished flow-o4 completed steps=placed,reserved,paid undone= reason=", 20s));
  world::stop(*second);
}

// --- in one process ------------------------------------------------------------------

namespace {

struct Plain {  // no MessagePack
  std::string id;
};
struct Stored {
  std::string id;
  int steps = 0;
  MSGPACK_DEFINE_MAP(id, steps)
};

errc code_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const error& e) {
    return e.code_value();
  }
  return errc{};
}

}  // namespace

TEST_CASE("a durable saga refuses what it could not store: a State without MessagePack, closures by undeclared names",
          "[integration][saga][durable]") {
  temp_dir dir;
  auto o = fast_options(unique_cluster("sagarefuse"), "n");
  o.data_dir = dir.path.string();
  Node node(o);
  CHECK(code_of([&] { Saga<Plain> s(node, "plain"); }) == errc::invalid_argument);
  SagaOptions memory;
  memory.in_memory = true;
  CHECK(code_of([&] { Saga<Plain> s(node, "plain", memory); }) == errc{});

  SagaOptions so;
  so.subscribe.max_deliver = 1;  // a step that throws is dead-lettered at once
  Saga<Stored> saga(node, "refusing", so);
  using Flow = Saga<Stored>::Context;
  saga.compensation("undo", [](Flow&) {});
  saga.start_on<OrderPlaced>([](Flow& flow, const OrderPlaced& placed) {
    flow.state().id = placed.order;
    if (placed.order == "closure") flow.compensate("not declared", [](Flow&) {});
    if (placed.order == "request") {
      flow.request<ReserveStock, StockReserved>(ReserveStock{placed.order}, [](Flow&, RequestResult<StockReserved>) {});
    }
    if (placed.order == "unknown continuation") {
      flow.request<ReserveStock, StockReserved>(ReserveStock{placed.order}, "not declared");
    }
    if (placed.order == "declared") {
      flow.compensate("undo", [](Flow&) {});  // declared: this process runs the closure
      flow.compensate("undo");
    }
  });
  saga.start();
  for (const auto* order : {"closure", "request", "unknown continuation", "declared"}) {
    const auto id = std::string("flow-") + order;
    PublishOptions po;
    po.event_id = id;
    REQUIRE(node.publish(OrderPlaced{order, 1, 0}, po) == PublishResult::ok);
  }
  REQUIRE(eventually([&] { return node.dead_letters().size() == 3 && saga.stats().started == 1; }, 20s));
  std::map<std::string, std::string> reasons;
  for (const auto& d : node.dead_letters()) reasons[d.event_id] = d.reason;
  CHECK_THAT(reasons["flow-closure"], Catch::Contains("declare compensation 'not declared' with Saga::compensation"));
  CHECK_THAT(reasons["flow-request"], Catch::Contains("declare the continuation with Saga::on_result<Rep>"));
  CHECK_THAT(reasons["flow-unknown continuation"], Catch::Contains("has no continuation named 'not declared'"));
  const auto declared = saga.find("flow-declared");
  REQUIRE(declared);
  CHECK(declared->status == SagaStatus::running);
  CHECK(saga.stats().step_errors == 3);
}

TEST_CASE("a durable saga keeps at most finished_capacity finished records, on disk as in memory, apart from the "
          "application's keys",
          "[integration][saga][durable]") {
  temp_dir dir;
  auto o = fast_options(unique_cluster("sagabounded"), "n");
  o.data_dir = dir.path.string();
  SagaOptions so;
  so.finished_capacity = 2;
  using Flow = Saga<Stored>::Context;
  auto declare = [](Saga<Stored>& saga) {
    saga.start_on<OrderPlaced>([](Flow& flow, const OrderPlaced& placed) {
      flow.state().id = placed.order;
      ++flow.state().steps;
      flow.complete();
    });
  };
  {
    Node node(o);
    node.transact([](Transaction& tx) { tx.put("app/key", "value"); });
    Saga<Stored> saga(node, "bounded", so);
    declare(saga);
    saga.start();
    for (const auto* order : {"a", "b", "c"}) {
      const auto id = std::string("flow-") + order;
      PublishOptions po;
      po.event_id = id;
      const auto done = saga.stats().completed + 1;
      REQUIRE(node.publish(OrderPlaced{order, 1, 0}, po) == PublishResult::ok);
      REQUIRE(eventually([&] { return saga.stats().completed == done; }, 20s));
    }
    CHECK(saga.stats().forgotten == 1);
    std::vector<std::string> keys;
    for (const auto& [key, value] : node.stored_range("$saga/bounded/")) keys.push_back(key);
    CHECK(keys == std::vector<std::string>{"$saga/bounded/flow-b", "$saga/bounded/flow-c"});
    const auto app = node.stored_range("");
    REQUIRE(app.size() == 1);
    CHECK(app[0].first == "app/key");
  }
  Node node(o);
  Saga<Stored> saga(node, "bounded", so);
  declare(saga);
  saga.start();
  CHECK_FALSE(saga.find("flow-a"));
  for (const auto* flow : {"flow-b", "flow-c"}) {
    const auto r = saga.find(flow);
    REQUIRE(r);
    CHECK(r->status == SagaStatus::completed);
    CHECK(r->state.id == std::string(flow).substr(5));
    CHECK(r->state.steps == 1);
  }
  CHECK(saga.stats().restored == 0);
  CHECK(saga.stats().running == 0);
}
