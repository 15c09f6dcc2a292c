// checkout: the storefront. Places the run's orders at a steady rate, each with a
// correlation id of its own (as an HTTP edge would set one per request). Every fourth
// order comes through the legacy storefront, which still publishes OrderPlaced
// version 1; the orders service upcasts it. The mix of orders is fixed by their
// number, so every run takes every path: normal, out of stock, declined, undeliverable.
#include <unistd.h>

#include <array>
#include <thread>

#include <fmt/format.h>

#include "demo.hpp"
#include "events.hpp"

namespace orders_demo {
namespace {

using namespace std::chrono_literals;

struct product {
  std::string_view sku;
  std::int64_t cents;
};
// "lamp" is short in stock (see inventory.cpp); "watch" is above the card limit.
constexpr std::array<product, 5> catalogue{{
    {"mug", 1250}, {"tee", 1990}, {"poster", 900}, {"lamp", 7900}, {"watch", 54900}}};
constexpr std::array<std::string_view, 6> customers{"ada", "grace", "linus", "barbara", "ken", "margaret"};
constexpr std::array<std::string_view, 5> countries{"France", "Germany", "Spain", "Norway", "Italy"};

std::int64_t price_of(std::string_view sku) {
  for (const auto& p : catalogue) {
    if (p.sku == sku) return p.cents;
  }
  return 0;
}

/// Order number n (from 1): what it holds is a fixed function of n.
OrderPlaced make_order(int n) {
  OrderPlaced o;
  o.order_id = fmt::format("A{}", 1000 + n);
  o.customer = std::string(customers[static_cast<std::size_t>(n) % customers.size()]);
  o.currency = "EUR";
  static constexpr std::array<std::string_view, 3> basics{"mug", "tee", "poster"};
  o.items.push_back({std::string(basics[static_cast<std::size_t>(n) % basics.size()]), 1 + n % 2});
  if (n % 5 == 3) o.items.push_back({"lamp", 2});  // the lamps run out after a few orders
  if (n % 7 == 0) o.items.push_back({"watch", 1});  // over the card limit: declined
  o.country = n % 11 == 5 ? std::string(unreachable_country)
                          : std::string(countries[static_cast<std::size_t>(n) % countries.size()]);
  for (const auto& i : o.items) o.total_cents += price_of(i.sku) * i.quantity;
  return o;
}

}  // namespace

int run_checkout(const demo_config& cfg) {
  const console out(cfg.name, cfg.color, cfg.quiet);
  meshbus::Node node(node_options(cfg));
  // Nothing is placed before every orders instance serves and the group "orders" listens.
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (node.instances("orders.command").size() < static_cast<std::size_t>(cfg.instances) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(50ms);
  }
  if (node.instances("orders.command").size() < static_cast<std::size_t>(cfg.instances) ||
      !node.wait_for_subscribers(OrderPlaced::event_name, 1, 10s)) {
    out.error(fmt::format("the {} orders instances did not all start within 30 s", cfg.instances));
    return 1;
  }
  out.print(fmt::format("placing {} orders at {} per second", cfg.orders, cfg.rate_hz));
  const auto run_tag = static_cast<unsigned>(::getpid()) & 0xffffu;
  const auto interval = std::chrono::duration<double>(1.0 / cfg.rate_hz);
  const auto start = std::chrono::steady_clock::now();
  for (int n = 1; n <= cfg.orders; ++n) {
    std::this_thread::sleep_until(start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(interval * (n - 1)));
    const auto order = make_order(n);
    const auto correlation = fmt::format("web-{:04x}-{:03}", run_tag, n);
    meshbus::PublishOptions po;
    po.correlation_id = correlation;
    const bool legacy = n % 4 == 1;
    meshbus::PublishResult result{};
    if (legacy) {
      OrderPlacedV1 v1{order.order_id, order.customer, static_cast<double>(order.total_cents) / 100.0, order.items,
                       order.country};
      result = node.publish(v1, po);
    } else {
      result = node.publish(order, po);
    }
    if (result != meshbus::PublishResult::ok) {
      out.error(fmt::format("order {} could not be placed: the send queue stayed full", order.order_id));
      return 1;
    }
    out.print(flow_line(correlation, order.order_id,
                        fmt::format("placed{}: {} for {}, {} to {}", legacy ? " by the legacy storefront (v1)" : " (v2)",
                                    describe(order.items), money(order.total_cents), order.customer, order.country)));
  }
  if (!node.flush(30s)) {
    out.error("the orders service did not acknowledge every order within 30 s");
    return 1;
  }
  out.print(fmt::format("all {} orders placed and acknowledged", cfg.orders));
  return check_orders(cfg, node, out);
}

}  // namespace orders_demo
