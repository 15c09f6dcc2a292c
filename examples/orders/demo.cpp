// The demo's command line, timing, node options and the event helpers; see demo.hpp
// and events.hpp.
#include "demo.hpp"

#include <signal.h>

#include <cmath>
#include <cstdlib>
#include <map>

#include <fmt/format.h>

#include "common/command_line.hpp"
#include "events.hpp"

namespace orders_demo {

using namespace std::chrono_literals;
using meshbus_examples::usage_error;

const char* to_string(role r) noexcept {
  switch (r) {
    case role::launcher: return "launcher";
    case role::orders: return "orders";
    case role::checkout: return "checkout";
    case role::payments: return "payments";
    case role::inventory: return "inventory";
    case role::shipping: return "shipping";
  }
  return "?";
}

namespace {

constexpr const char* description =
    "The meshbus order-flow demo: checkout, three orders instances, inventory, shipping\n"
    "and two payment instances run as processes that find each other by UDP beacon on\n"
    "loopback (no broker). Checkout places orders (every fourth through a legacy\n"
    "storefront that still sends version 1 events). Orders are event-sourced aggregates\n"
    "in the orders instances' event stores, replicated to one other instance at least;\n"
    "each order's owner reserves stock by request/reply, has the payments service group\n"
    "charge the card, has shipping ship it, and compensates (refund, release stock) when\n"
    "a payment is declined or a shipment fails. The read model \"orders by status\" is\n"
    "answered by query. Midway, the launcher kills payments-2 with SIGKILL (its work goes\n"
    "to payments-1) and, with --kill, an orders instance, restarted a few seconds later\n"
    "(the others take its orders over). Every line shows the flow's correlation id; the\n"
    "summary checks that every order reached a final state, that every order's events\n"
    "are contiguous and the same on every instance, that the read models match the\n"
    "aggregates and that stock adds up. Exit code 0 when all checks pass, 1 otherwise.";

// The hidden options (--role, --name, --cluster, --color) are how the launcher tells a
// re-executed copy of itself what to be.
void add_hidden_options(CLI::App& app, demo_config& cfg) {
  const std::map<std::string, role> roles{{"orders", role::orders},
                                          {"checkout", role::checkout},
                                          {"payments", role::payments},
                                          {"inventory", role::inventory},
                                          {"shipping", role::shipping}};
  app.add_option("--role", cfg.process_role)->transform(CLI::CheckedTransformer(roles))->group("");
  app.add_option("--name", cfg.name)->group("");
  app.add_option("--cluster", cfg.cluster)->group("");
  app.add_flag("--color", cfg.color)->group("");
  app.add_option("--data-dir", cfg.data_dir)->group("");
}

}  // namespace

std::optional<int> parse_command_line(int argc, char** argv, demo_config& cfg) {
  CLI::App app{description, "meshbus-orders"};
  app.add_option("--orders", cfg.orders, "orders to place, 1-2000 (default 30)")
      ->type_name("N")
      ->check(CLI::Range(1, 2000));
  app.add_option("--rate", cfg.rate_hz, "orders per second, 0.5-500 (default 10)")
      ->type_name("HZ")
      ->check(CLI::Range(0.5, 500.0));
  app.add_option("--kill-after", cfg.kill_after, "kill payments-2 after it handled N payments, 0 = never (default 3)")
      ->type_name("N")
      ->check(CLI::Range(0, 100000));
  app.add_option("--instances", cfg.instances, "orders service instances, 2-5 (default 3; see --kill)")
      ->type_name("N")
      ->check(CLI::Range(2, 5));
  app.add_option("--kill", cfg.kill,
                 "SIGKILL this orders instance (orders-1 ...) when half the orders are placed, or with 'orders' "
                 "the instance owning most orders then; it is restarted --restart-after seconds later")
      ->type_name("INSTANCE");
  app.add_option("--restart-after", cfg.restart_after, "seconds before the killed orders instance restarts (default 3)")
      ->type_name("S")
      ->check(CLI::Range(0.5, 60.0));
  app.add_flag("--quiet", cfg.quiet, "print only the final summary");
  add_hidden_options(app, cfg);
  return meshbus_examples::parse_command_line(app, argc, argv, [&cfg] {
    if (cfg.process_role != role::launcher && cfg.cluster.empty()) {
      throw usage_error("service processes are started by the launcher; run meshbus-orders without --role");
    }
    if (!cfg.kill.empty() && cfg.kill != "orders") {
      const auto n = cfg.kill.starts_with("orders-") ? std::atoi(cfg.kill.c_str() + 7) : 0;
      if (n < 1 || n > cfg.instances || cfg.kill != fmt::format("orders-{}", n)) {
        throw usage_error(fmt::format("--kill {}: name an orders instance, orders-1 to orders-{}, or 'orders'",
                                      cfg.kill, cfg.instances));
      }
    }
  });
}

std::vector<std::string> role_arguments(const demo_config& cfg, role r, const std::string& name) {
  std::vector<std::string> args{"--role",    to_string(r),
                                "--name",    name,
                                "--cluster", cfg.cluster,
                                "--orders",  std::to_string(cfg.orders),
                                "--rate",    fmt::format("{}", cfg.rate_hz),
                                "--instances", std::to_string(cfg.instances)};
  // Never --quiet: the launcher reads the services' lines (it kills by them) and
  // forwards only the summary when it is quiet itself.
  if (cfg.color) args.emplace_back("--color");
  return args;
}

meshbus::Options node_options(const demo_config& cfg) {
  meshbus::Options o;
  o.name = cfg.name;
  o.cluster = cfg.cluster;
  o.beacon_interval = 250ms;
  o.peer_expiry = 2000ms;
  return o;
}

std::chrono::milliseconds placing_time(const demo_config& cfg) {
  return std::chrono::milliseconds(static_cast<long>(std::ceil(1000.0 * cfg.orders / cfg.rate_hz)));
}

std::chrono::milliseconds settle_deadline(const demo_config& cfg) {
  // Discovery, placing, a killed instance's restart, and steps taken again (5 s each).
  return 15s + placing_time(cfg) + std::chrono::milliseconds(static_cast<long>(cfg.restart_after * 1000)) + 30s;
}

std::chrono::milliseconds launcher_deadline(const demo_config& cfg) {
  return settle_deadline(cfg) + 40s;  // and the audit
}

void block_stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

void wait_for_stop() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  int sig = 0;
  while (sigwait(&set, &sig) != 0) {
  }
}

std::string flow_line(std::string_view correlation_id, std::string_view order_id, std::string_view text) {
  return fmt::format("{:<14} {:<6} {}", correlation_id, order_id, text);
}

// --- events.hpp ----------------------------------------------------------------------

void register_order_upcaster() {
  meshbus::register_upcaster<OrderPlacedV1, OrderPlaced>([](const OrderPlacedV1& v1) {
    OrderPlaced v2;
    v2.order_id = v1.order_id;
    v2.customer = v1.customer;
    v2.total_cents = std::llround(v1.total * 100.0);
    v2.currency = "EUR";  // the legacy storefront only ever sold in euros
    v2.items = v1.items;
    v2.country = v1.country;
    return v2;
  });
}

std::string money(std::int64_t cents, std::string_view currency) {
  return fmt::format("{}.{:02} {}", cents / 100, cents % 100, currency);
}

std::string describe(const std::vector<LineItem>& items) {
  std::string text;
  for (const auto& i : items) text += fmt::format("{}{} x{}", text.empty() ? "" : ", ", i.sku, i.quantity);
  return text;
}

}  // namespace orders_demo
