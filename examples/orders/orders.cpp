// orders: the order-fulfilment saga (a process manager) and the order query. For
// every order placed it reserves stock (request/reply to inventory), has the payments
// group charge the card, has shipping ship it, and compensates in reverse when a step
// fails: a declined payment releases the stock; a failed shipment refunds and releases.
// At the end it checks that every order reached a final state, that each final state
// is consistent with what was done, and that the inventory's stock adds up.
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include <fmt/format.h>

#include <meshbus/saga.hpp>

#include "demo.hpp"
#include "events.hpp"

namespace orders_demo {
namespace {

using namespace std::chrono_literals;

struct order_state {
  OrderPlaced order;
  std::uint32_t placed_version = 0;  ///< as the storefront sent it
  bool reserved = false;
  std::string payment_id;
  std::string tracking;
};
using order_saga = meshbus::Saga<order_state>;
using Flow = order_saga::Context;

/// Order id -> correlation id of its flow, for the query by order id.
class order_index {
 public:
  void add(const std::string& order_id, const std::string& correlation_id) {
    std::lock_guard lock(mu_);
    flows_.emplace(order_id, correlation_id);
  }
  std::optional<std::string> flow_of(const std::string& order_id) const {
    std::lock_guard lock(mu_);
    const auto it = flows_.find(order_id);
    if (it == flows_.end()) return std::nullopt;
    return it->second;
  }
  std::map<std::string, std::string> all() const {
    std::lock_guard lock(mu_);
    return flows_;
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::string> flows_;
};

void declare_steps(order_saga& saga, const console& out, order_index& index) {
  auto say = [&out](const Flow& flow, std::string_view text) {
    out.print(flow_line(flow.correlation_id(), flow.state().order.order_id, text));
  };

  saga.start_on<OrderPlaced>([&, say](Flow& flow, const OrderPlaced& placed) {
    auto& s = flow.state();
    s.order = placed;
    s.placed_version = flow.event()->type_version();
    index.add(placed.order_id, flow.correlation_id());
    say(flow, s.placed_version == OrderPlaced::event_version
                  ? fmt::format("saga started: {} for {}", describe(placed.items), money(placed.total_cents))
                  : fmt::format("saga started: {} for {} (upcast from v{})", describe(placed.items),
                                money(placed.total_cents, placed.currency), s.placed_version));
    flow.request<ReserveStock, StockReservation>(
        ReserveStock{placed.order_id, placed.items}, [say](Flow& f, meshbus::RequestResult<StockReservation> r) {
          if (!r) return f.fail("inventory did not answer: " + r.message());
          if (!r->reserved) return f.fail("out of stock: " + r->reason);
          f.state().reserved = true;
          f.compensate("release stock", [](Flow& g) {
            (void)g.publish(ReleaseStock{g.state().order.order_id, g.state().order.items});
          });
          const auto& o = f.state().order;
          (void)f.publish(ChargePayment{o.order_id, o.customer, o.total_cents, o.currency});
          say(f, "stock reserved; payment requested");
        });
  });

  saga.on<PaymentCaptured>([say](Flow& flow, const PaymentCaptured& paid) {
    auto& s = flow.state();
    if (!s.payment_id.empty()) {
      // A charge handed to another group member after its first handler died unacknowledged:
      // the card was charged twice. The saga keeps the first and refunds this one.
      (void)flow.publish(RefundPayment{paid.order_id, paid.payment_id, paid.total_cents});
      say(flow, fmt::format("duplicate charge {} (redelivered after a crash): refund requested", paid.payment_id));
      return;
    }
    s.payment_id = paid.payment_id;
    flow.compensate("refund payment", [](Flow& g) {
      const auto& st = g.state();
      (void)g.publish(RefundPayment{st.order.order_id, st.payment_id, st.order.total_cents});
    });
    (void)flow.publish(ShipOrder{s.order.order_id});
    say(flow, fmt::format("paid ({}); shipment requested", paid.payment_id));
  });
  saga.on<PaymentDeclined>([](Flow& flow, const PaymentDeclined& d) { flow.fail("payment declined: " + d.reason); });
  saga.on<OrderShipped>([](Flow& flow, const OrderShipped& shipped) {
    flow.state().tracking = shipped.tracking;
    flow.complete();
  });
  saga.on<ShipmentFailed>([](Flow& flow, const ShipmentFailed& f) { flow.fail("shipment failed: " + f.reason); });
  saga.on_timeout([say](Flow& flow) { say(flow, "timed out: compensating"); });
}

/// Waits until `names` are all peers of `node`. False after `timeout`.
bool wait_for_services(meshbus::Node& node, const std::vector<std::string>& names, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    std::size_t found = 0;
    for (const auto& p : node.peers()) {
      if (std::find(names.begin(), names.end(), p.name) != names.end()) ++found;
    }
    if (found == names.size()) return true;
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

/// The final table and checks. Returns the exit code.
int summarize(const demo_config& cfg, meshbus::Node& node, const order_saga& saga, const order_index& index) {
  std::vector<std::string> problems;
  std::map<std::string, int> shipped_units;
  std::map<meshbus::SagaStatus, int> by_status;
  int upcast = 0;
  std::string table = fmt::format("{:<14} {:<6} {:<3} {:>11}  {:<12} {}\n", "correlation", "order", "v", "total",
                                  "final state", "detail");
  const auto flows = index.all();
  for (int n = 1; n <= cfg.orders; ++n) {
    const auto order_id = fmt::format("A{}", 1000 + n);
    const auto flow = flows.find(order_id);
    const auto record = flow == flows.end() ? std::nullopt : saga.find(flow->second);
    if (!record) {
      problems.push_back(order_id + " never reached the saga");
      continue;
    }
    const auto& s = record->state;
    ++by_status[record->status];
    if (s.placed_version != OrderPlaced::event_version) ++upcast;
    std::string detail;
    switch (record->status) {
      case meshbus::SagaStatus::running: problems.push_back(order_id + " is still running"); break;
      case meshbus::SagaStatus::completed:
        detail = fmt::format("shipped, tracking {}, paid {}", s.tracking, s.payment_id);
        if (s.tracking.empty() || s.payment_id.empty() || !s.reserved) {
          problems.push_back(order_id + " completed without stock, payment or tracking");
        }
        for (const auto& item : s.order.items) shipped_units[item.sku] += item.quantity;
        break;
      case meshbus::SagaStatus::compensated:
      case meshbus::SagaStatus::timed_out: {
        detail = record->reason;
        if (!record->compensations_run.empty()) {
          detail += fmt::format("; undone: {}", fmt::join(record->compensations_run, ", "));
        }
        const auto ran = [&](std::string_view name) {
          return std::find(record->compensations_run.begin(), record->compensations_run.end(), name) !=
                 record->compensations_run.end();
        };
        if (s.reserved && !ran("release stock")) problems.push_back(order_id + ": stock reserved but not released");
        if (!s.payment_id.empty() && !ran("refund payment")) problems.push_back(order_id + ": paid but not refunded");
        break;
      }
    }
    for (const auto& note : record->notes) problems.push_back(order_id + ": " + note);
    table += fmt::format("{:<14} {:<6} {:<3} {:>11}  {:<12} {}\n", record->correlation_id, order_id,
                         s.placed_version, money(s.order.total_cents, s.order.currency), to_string(record->status),
                         detail);
  }

  // Stock: what left the shelves is exactly what was shipped.
  if (!node.flush(10s)) problems.push_back("the releases were not all acknowledged within 10 s");
  try {
    const auto levels = node.request<GetStockLevels, StockLevels>(GetStockLevels{}, {.timeout = 5s}).get();
    for (const auto& [sku, initial] : levels.initial) {
      const auto available = levels.available.count(sku) != 0 ? levels.available.at(sku) : 0;
      const auto gone = initial - available;
      const auto shipped = shipped_units.count(sku) != 0 ? shipped_units.at(sku) : 0;
      if (gone != shipped) {
        problems.push_back(fmt::format("stock of {}: {} gone from the shelves, {} shipped", sku, gone, shipped));
      }
    }
  } catch (const std::exception& e) {
    problems.push_back(std::string("the stock levels query failed: ") + e.what());
  }

  const auto stats = saga.stats();
  table += fmt::format(
      "\n{} orders: {} completed, {} compensated, {} timed out, {} still running; {} placed as v1 and upcast\n"
      "saga: {} started, {} steps, {} step errors, {} late events ignored\n",
      cfg.orders, by_status[meshbus::SagaStatus::completed], by_status[meshbus::SagaStatus::compensated],
      by_status[meshbus::SagaStatus::timed_out], by_status[meshbus::SagaStatus::running], upcast, stats.started,
      stats.steps, stats.step_errors, stats.late);
  const bool ok = problems.empty();
  table += ok ? "OK: every order reached a final state, compensations match what was done, stock adds up\n"
              : fmt::format("FAILED: {}\n", fmt::join(problems, "; "));
  meshbus_examples::write_all(STDOUT_FILENO, "\n" + table);
  return ok ? 0 : 1;
}

}  // namespace

int run_orders(const demo_config& cfg) {
  const console out(cfg.name, cfg.color, cfg.quiet);
  register_order_upcaster();
  meshbus::Node node(node_options(cfg));
  order_index index;

  meshbus::SagaOptions options;
  options.timeout = saga_timeout;
  std::mutex finished_mu;
  std::condition_variable finished_cv;
  int finished = 0;
  std::optional<order_saga> saga;
  options.on_finished = [&](const std::string& correlation_id, meshbus::SagaStatus status, const std::string& why) {
    const auto record = saga->find(correlation_id);
    const auto order_id = record ? record->state.order.order_id : std::string("?");
    std::string text = fmt::format("saga {}", to_string(status));
    if (status == meshbus::SagaStatus::completed) {
      text += fmt::format(": shipped, tracking {}", record ? record->state.tracking : "?");
    } else {
      text += ": " + why;
      if (record && !record->compensations_run.empty()) {
        text += fmt::format("; undone: {}", fmt::join(record->compensations_run, ", "));
      }
    }
    out.print(flow_line(correlation_id, order_id, text));
    std::lock_guard lock(finished_mu);
    ++finished;
    finished_cv.notify_all();
  };
  saga.emplace(node, "order-fulfilment", options);
  declare_steps(*saga, out, index);

  // The query shipping asks: where does this order go?
  (void)node.serve<GetOrder, OrderDetails>([&](const GetOrder& q) {
    OrderDetails d;
    d.order_id = q.order_id;
    const auto flow = index.flow_of(q.order_id);
    const auto record = flow ? saga->find(*flow) : std::nullopt;
    if (record) {
      d.found = true;
      d.customer = record->state.order.customer;
      d.country = record->state.order.country;
      d.items = record->state.order.items;
    }
    return d;
  });

  // Start taking orders only once every service is there (both payments group
  // members included), so that the first orders do not meet an empty mesh.
  if (!wait_for_services(node, {"inventory", "shipping", "payments-1", "payments-2"}, 15s)) {
    out.error("not every service joined within 15 s");
    return 1;
  }
  if (!node.wait_for_subscribers(ReleaseStock::event_name, 1, 10s) ||
      !node.wait_for_subscribers(ShipOrder::event_name, 1, 10s)) {
    out.error("inventory or shipping did not subscribe within 10 s");
    return 1;
  }
  saga->start();
  out.print("order-fulfilment saga running; serving the order query");

  bool settled = false;
  {
    std::unique_lock lock(finished_mu);
    settled = finished_cv.wait_for(lock, settle_deadline(cfg), [&] { return finished >= cfg.orders; });
  }
  if (!settled) out.error("not every order reached a final state in time");
  const auto code = summarize(cfg, node, *saga, index);
  saga->stop();
  node.stop();
  return code;
}

}  // namespace orders_demo
