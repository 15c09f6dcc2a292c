// Settings and helpers every process of the order-flow demo shares: the command line
// (public options, and the hidden ones the launcher passes to the service processes),
// node options, the business rules the services apply, and waiting for SIGTERM.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <meshbus/node.hpp>
#include <meshbus/options.hpp>

#include "common/console.hpp"

namespace orders_demo {

using meshbus_examples::console;

/// What one process of the demo does. Only the launcher is started by the user.
enum class role { launcher, orders, checkout, payments, inventory, shipping };

const char* to_string(role r) noexcept;

struct demo_config {
  role process_role = role::launcher;
  std::string name = "launcher";  ///< node name and output tag
  std::string cluster;            ///< unique per run, chosen by the launcher
  int orders = 30;
  double rate_hz = 10.0;
  int kill_after = 3;  ///< the launcher SIGKILLs payments-2 after it handled this many payments; 0: never
  int instances = 3;   ///< of the orders service: orders-1 ... orders-N
  /// An orders instance the launcher SIGKILLs when half the orders are placed ("orders":
  /// the one owning most orders then), restarting it `restart_after` later. Empty: none.
  std::string kill;
  double restart_after = 3.0;
  std::string data_dir;  ///< an orders instance's durable log (chosen by the launcher)
  bool quiet = false;
  bool color = false;  ///< the launcher's stdout is a terminal
};

/// Parses the command line into `cfg`. Returns an exit code when the process should end
/// at once (--help, bad arguments), nullopt when it should run.
std::optional<int> parse_command_line(int argc, char** argv, demo_config& cfg);

/// The arguments (without argv[0]) that make a re-executed demo binary play `r` as `name`.
std::vector<std::string> role_arguments(const demo_config& cfg, role r, const std::string& name);

/// Node options for every process: the run's cluster, the process name as node name, a
/// quick beacon and a 2 s peer expiry, so that a killed process's work moves on quickly.
/// Loopback discovery (the default).
meshbus::Options node_options(const demo_config& cfg);

/// The service group the payment instances share.
inline constexpr std::string_view payments_group = "payments";
/// Payments decline anything above this (500.00 EUR).
inline constexpr std::int64_t card_limit_cents = 50000;
/// No carrier delivers there: shipping fails, the saga compensates.
inline constexpr std::string_view unreachable_country = "Atlantis";

/// How long checkout takes to place every order.
std::chrono::milliseconds placing_time(const demo_config& cfg);
/// How long the check waits for every order to reach a final state.
std::chrono::milliseconds settle_deadline(const demo_config& cfg);
/// How long the launcher lets the whole run take before it kills its children.
std::chrono::milliseconds launcher_deadline(const demo_config& cfg);

/// Blocks SIGTERM and SIGINT in this thread and every thread started afterwards, so
/// that wait_for_stop() can take them. Call first in main().
void block_stop_signals();
/// Waits for SIGTERM or SIGINT (the launcher ends the services with SIGTERM).
void wait_for_stop();

/// One line of a flow: the correlation id (read from the event envelope) first.
std::string flow_line(std::string_view correlation_id, std::string_view order_id, std::string_view text);

/// The final check (checkout runs it once every order is placed); the exit code.
int check_orders(const demo_config& cfg, meshbus::Node& node, const console& out);

int run_launcher(demo_config cfg);
int run_orders(const demo_config& cfg);
int run_checkout(const demo_config& cfg);
int run_payments(const demo_config& cfg);
int run_inventory(const demo_config& cfg);
int run_shipping(const demo_config& cfg);

}  // namespace orders_demo
