// inventory: reserves stock by request/reply (a command: all items or none), takes
// releases as event commands (a compensation; idempotent per order, since a command
// event can be delivered again), and answers the stock-levels query the final check
// uses.
#include <map>
#include <mutex>
#include <set>

#include <fmt/format.h>

#include "demo.hpp"
#include "events.hpp"

namespace orders_demo {
namespace {

// Lamps are short: a few orders get them, the later ones are refused.
const std::map<std::string, int> initial_stock{{"mug", 100}, {"tee", 100}, {"poster", 100}, {"lamp", 6},
                                               {"watch", 20}};

class stock {
 public:
  StockReservation reserve(const ReserveStock& r) {
    std::lock_guard lock(mu_);
    if (reservations_.contains(r.order_id)) return {r.order_id, true, ""};  // asked again: same answer
    for (const auto& item : r.items) {
      const auto it = available_.find(item.sku);
      if (it == available_.end()) return {r.order_id, false, fmt::format("unknown product '{}'", item.sku)};
      if (it->second < item.quantity) {
        return {r.order_id, false, fmt::format("{} {} wanted, {} left", item.quantity, item.sku, it->second)};
      }
    }
    for (const auto& item : r.items) available_[item.sku] -= item.quantity;
    reservations_[r.order_id] = r.items;
    return {r.order_id, true, ""};
  }

  /// False when the order holds no reservation (never made, or released already).
  bool release(const std::string& order_id) {
    std::lock_guard lock(mu_);
    const auto it = reservations_.find(order_id);
    if (it == reservations_.end()) return false;
    for (const auto& item : it->second) available_[item.sku] += item.quantity;
    reservations_.erase(it);
    return true;
  }

  StockLevels levels() const {
    std::lock_guard lock(mu_);
    return {initial_stock, available_};
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, int> available_ = initial_stock;
  std::map<std::string, std::vector<LineItem>> reservations_;
};

}  // namespace

int run_inventory(const demo_config& cfg) {
  const console out(cfg.name, cfg.color, cfg.quiet);
  meshbus::Node node(node_options(cfg));
  stock store;

  (void)node.serve<ReserveStock, StockReservation>([&](const ReserveStock& r, const meshbus::Event& e) {
    auto answer = store.reserve(r);
    out.print(flow_line(e.correlation_id(), r.order_id,
                        answer.reserved ? fmt::format("reserved {}", describe(r.items))
                                        : fmt::format("refused: {}", answer.reason)));
    return answer;
  });
  meshbus::SubscribeOptions acknowledged;
  acknowledged.delivery = meshbus::Delivery::acknowledged;
  (void)node.subscribe<ReleaseStock>(
      [&](const ReleaseStock& r, const meshbus::Event& e) {
        const bool released = store.release(r.order_id);
        out.print(flow_line(e.correlation_id(), r.order_id,
                            released ? fmt::format("released {}", describe(r.items))
                                     : std::string("release: nothing held (already released)")));
      },
      acknowledged);
  (void)node.serve<GetStockLevels, StockLevels>([&](const GetStockLevels&) { return store.levels(); });
  out.print("serving reservations, releases and stock levels");
  wait_for_stop();
  node.stop();
  return 0;
}

}  // namespace orders_demo
