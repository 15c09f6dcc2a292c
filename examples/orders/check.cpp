// The final check, made by checkout once it placed every order: it waits until the
// read model says every order is final, then asks every orders instance for what it
// holds (an audit) and checks the aggregates, their events on every instance, the
// read models and the stock. Prints the table and the verdict; returns the exit code.
#include <unistd.h>

#include <algorithm>
#include <map>
#include <set>
#include <thread>

#include <fmt/format.h>

#include "demo.hpp"
#include "events.hpp"

namespace orders_demo {
namespace {

using namespace std::chrono_literals;

std::string order_id_of(int n) { return fmt::format("A{}", 1000 + n); }

/// Every problem of the instances' audits (empty: all consistent).
std::vector<std::string> compare(const std::vector<AuditReport>& reports, const std::vector<std::string>& ids) {
  std::vector<std::string> problems;
  const auto& first = reports.front();
  for (const auto& r : reports) {
    if (!r.read_model_failure.empty()) problems.push_back(r.instance + ": the read model stopped: " + r.read_model_failure);
    for (const auto& id : ids) {
      const auto it = r.orders.find(id);
      if (it == r.orders.end()) {
        problems.push_back(fmt::format("{}: no audit of {}", r.instance, id));
        continue;
      }
      const auto& a = it->second;
      const auto& ref = first.orders.at(id);
      if (a.versions.empty()) {
        problems.push_back(fmt::format("{}: {} has no events", r.instance, id));
        continue;
      }
      for (std::size_t i = 0; i < a.versions.size(); ++i) {
        if (a.versions[i] != i + 1) {
          problems.push_back(fmt::format("{}: {}'s versions are not contiguous: {}", r.instance, id, fmt::join(a.versions, ",")));
          break;
        }
      }
      if (std::set<std::string>(a.event_ids.begin(), a.event_ids.end()).size() != a.event_ids.size()) {
        problems.push_back(fmt::format("{}: {} holds an event twice", r.instance, id));
      }
      if (a.types.front() != OrderPlaced::event_name ||
          std::count(a.types.begin(), a.types.end(), std::string(OrderPlaced::event_name)) != 1 ||
          std::count(a.types.begin(), a.types.end(), std::string(ShipmentRecorded::event_name)) > 1) {
        problems.push_back(fmt::format("{}: {}'s events are not one order's: {}", r.instance, id, fmt::join(a.types, ", ")));
      }
      if (a.event_ids != ref.event_ids) {
        problems.push_back(fmt::format("{}: {} holds {} events, {} holds {} (or others)", r.instance, id,
                                       a.event_ids.size(), first.instance, ref.event_ids.size()));
      }
      if (!a.load_error.empty()) problems.push_back(fmt::format("{}: {} does not load: {}", r.instance, id, a.load_error));
      if (!a.in_read_model) {
        problems.push_back(fmt::format("{}: {} is not in the read model", r.instance, id));
      } else if (a.row.version != a.versions.back() || a.row.order.status != a.state.status ||
                 a.row.order.sent != a.state.sent) {
        problems.push_back(fmt::format("{}: the read model has {} at version {} '{}', the aggregate at {} '{}'",
                                       r.instance, id, a.row.version, a.row.order.status, a.versions.back(),
                                       a.state.status));
      }
    }
  }
  return problems;
}

}  // namespace

int check_orders(const demo_config& cfg, meshbus::Node& node, const console& out) {
  std::vector<std::string> ids;
  for (int n = 1; n <= cfg.orders; ++n) ids.push_back(order_id_of(n));
  std::vector<std::string> problems;

  // 1. Every order final, as the read model (any instance) says.
  const auto deadline = std::chrono::steady_clock::now() + settle_deadline(cfg) - placing_time(cfg);
  std::size_t final_count = 0;
  for (;;) {
    try {
      const auto list = node.request<OrdersByStatus, OrderList>(OrdersByStatus{}, {.timeout = 5s}).get();
      final_count = static_cast<std::size_t>(std::count_if(
          ids.begin(), ids.end(), [&](const auto& id) { return list.orders.contains(id) && list.orders.at(id).order.final(); }));
    } catch (const std::exception& e) {
      out.error(fmt::format("the read model did not answer: {}", e.what()));
    }
    if (final_count == ids.size()) break;
    if (std::chrono::steady_clock::now() > deadline) {
      problems.push_back(fmt::format("only {} of {} orders reached a final state in time", final_count, ids.size()));
      break;
    }
    std::this_thread::sleep_for(250ms);
  }
  out.print(fmt::format("{} of {} orders final in the read model; auditing every orders instance", final_count, ids.size()));

  // 2. What every instance holds. An instance that was restarted may still be catching
  // up: asked again for up to 20 s until all agree.
  std::vector<AuditReport> reports;
  std::vector<std::string> audit_problems;
  const auto audit_deadline = std::chrono::steady_clock::now() + 20s;
  do {
    reports.clear();
    audit_problems.clear();
    for (int i = 1; i <= cfg.instances; ++i) {
      const auto name = fmt::format("orders-{}", i);
      try {
        reports.push_back(node.request<AuditOrders, AuditReport>("shop.orders.audit." + name, AuditOrders{ids},
                                                                 {.timeout = 10s})
                              .get());
      } catch (const std::exception& e) {
        audit_problems.push_back(fmt::format("{} did not answer the audit: {}", name, e.what()));
      }
    }
    if (audit_problems.empty()) audit_problems = compare(reports, ids);
    if (audit_problems.empty()) break;
    std::this_thread::sleep_for(500ms);
  } while (std::chrono::steady_clock::now() < audit_deadline);
  problems.insert(problems.end(), audit_problems.begin(), audit_problems.end());
  if (reports.empty()) {
    problems.emplace_back("no orders instance answered the audit");
    meshbus_examples::write_all(STDOUT_FILENO, fmt::format("\nFAILED: {}\n", fmt::join(problems, "; ")));
    return 1;
  }

  // 3. The orders themselves (as the first instance's aggregates have them) and the stock.
  std::map<std::string, int> shipped_units, by_status;
  int upcast = 0;
  std::string table = fmt::format("{:<14} {:<6} {:<3} {:>11}  {:<10} {:>2}  {}\n", "correlation", "order", "v", "total",
                                  "status", "ev", "detail");
  const auto& ref = reports.front();
  for (const auto& id : ids) {
    const auto& a = ref.orders.at(id);
    const auto& o = a.state;
    ++by_status[o.status];
    if (a.placed_version != OrderPlaced::event_version) ++upcast;
    std::string detail;
    if (!o.final()) problems.push_back(id + " is not final: " + o.status);
    if (o.status == "completed") {
      detail = fmt::format("shipped, tracking {}, paid {}", o.tracking, o.payment_id);
      if (o.tracking.empty() || o.payment_id.empty()) problems.push_back(id + " completed without payment or tracking");
      for (const auto& item : o.placed.items) shipped_units[item.sku] += item.quantity;
    } else {
      detail = o.reason;
      if (o.status == "cancelled") {
        if (std::find(o.sent.begin(), o.sent.end(), "release stock") == o.sent.end()) {
          problems.push_back(id + ": cancelled without releasing its stock");
        }
        if (!o.payment_id.empty() && std::find(o.sent.begin(), o.sent.end(), "refund " + o.payment_id) == o.sent.end()) {
          problems.push_back(id + ": paid, cancelled, not refunded");
        }
      }
    }
    const auto extra_refunds = std::count_if(o.sent.begin(), o.sent.end(), [&](const std::string& s) {
      return s.starts_with("refund ") && s != "refund " + o.payment_id;
    });
    if (!o.sent.empty()) detail += fmt::format("; sent: {}", fmt::join(o.sent, ", "));
    if (extra_refunds > 0) detail += " (a duplicate charge refunded)";
    table += fmt::format("{:<14} {:<6} {:<3} {:>11}  {:<10} {:>2}  {}\n", a.correlation_id, id, a.placed_version,
                         money(o.placed.total_cents, o.placed.currency), o.status, a.versions.size(), detail);
  }
  if (!node.flush(10s)) problems.emplace_back("the checkout's messages were not all acknowledged within 10 s");
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

  table += fmt::format("\n{} orders: {} completed, {} cancelled, {} rejected, {} not final; {} placed as v1 (kept as "
                       "sent, upcast on load)\n",
                       cfg.orders, by_status["completed"], by_status["cancelled"], by_status["rejected"],
                       cfg.orders - by_status["completed"] - by_status["cancelled"] - by_status["rejected"], upcast);
  for (const auto& r : reports) {
    table += fmt::format("{}: read model lag {} events; {} streams claimed (new ones and takeovers), {} events "
                         "replicated in, {} caught up on rejoining\n",
                         r.instance, r.read_model_lag, r.takeovers, r.replicated_in, r.synced_in);
  }
  const bool ok = problems.empty();
  table += ok ? fmt::format("OK: every order reached a final state; every order's events are contiguous, none lost "
                            "or twice, the same on all {} instances; the read models match the aggregates; "
                            "compensations match what was done; stock adds up\n",
                            reports.size())
              : fmt::format("FAILED: {}\n", fmt::join(problems, "; "));
  meshbus_examples::write_all(STDOUT_FILENO, "\n" + table);
  return ok ? 0 : 1;
}

}  // namespace orders_demo
