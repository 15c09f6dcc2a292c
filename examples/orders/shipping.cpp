// shipping: takes ShipOrder commands, asks the orders service where the parcel goes
// (a query to the order's owner, request/reply), and reports the shipment or why it
// failed. A query that fails throws, so the acknowledged command is retried and never
// lost. An order asked to ship again (its owner took the step again) gets the same
// answer: one parcel per order.
#include <map>
#include <mutex>

#include <fmt/format.h>

#include "demo.hpp"
#include "events.hpp"

namespace orders_demo {

int run_shipping(const demo_config& cfg) {
  using namespace std::chrono_literals;
  const console out(cfg.name, cfg.color, cfg.quiet);
  meshbus::Node node(node_options(cfg));
  std::mutex mu;
  std::map<std::string, std::string> tracking_of;  // shipped already
  meshbus::SubscribeOptions acknowledged;
  acknowledged.delivery = meshbus::Delivery::acknowledged;

  (void)node.subscribe<ShipOrder>(
      [&](const ShipOrder& ship, const meshbus::Event& e) {
        {
          std::lock_guard lock(mu);
          if (const auto it = tracking_of.find(ship.order_id); it != tracking_of.end()) {
            (void)node.publish(OrderShipped{ship.order_id, it->second});
            out.print(flow_line(e.correlation_id(), ship.order_id, "shipped already, tracking " + it->second));
            return;
          }
        }
        // Blocking here is fine: the reply completes on the I/O thread, not this one.
        const auto order =
            node.request<GetOrder, OrderDetails>("orders.command", GetOrder{ship.order_id}, {.timeout = 10s}).get();
        if (!order.found) throw std::runtime_error("the orders service does not know " + ship.order_id);
        if (order.country == unreachable_country) {
          const auto reason = fmt::format("no carrier delivers to {}", order.country);
          (void)node.publish(ShipmentFailed{ship.order_id, reason});
          out.print(flow_line(e.correlation_id(), ship.order_id, "cannot ship: " + reason));
          return;
        }
        std::string tracking;
        {
          std::lock_guard lock(mu);
          tracking = fmt::format("TRK{:05}", tracking_of.size() + 1);
          tracking_of[ship.order_id] = tracking;
        }
        (void)node.publish(OrderShipped{ship.order_id, tracking});
        out.print(flow_line(e.correlation_id(), ship.order_id,
                            fmt::format("shipped {} to {} in {}, tracking {}", describe(order.items), order.customer,
                                        order.country, tracking)));
      },
      acknowledged);
  out.print("shipping orders");
  wait_for_stop();
  node.stop();
  return 0;
}

}  // namespace orders_demo
