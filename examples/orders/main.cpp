// meshbus-orders: the order-flow demo in one command. Run plainly it is the launcher;
// the launcher re-executes it with a hidden --role for each service process.
#include <exception>

#include <fmt/format.h>

#include "demo.hpp"

int main(int argc, char** argv) {
  using namespace orders_demo;
  demo_config cfg;
  if (const auto code = parse_command_line(argc, argv, cfg)) return *code;
  // Before any thread starts: the services take SIGTERM with sigwait (wait_for_stop).
  if (cfg.process_role != role::launcher) block_stop_signals();
  try {
    switch (cfg.process_role) {
      case role::launcher: return run_launcher(cfg);
      case role::orders: return run_orders(cfg);
      case role::checkout: return run_checkout(cfg);
      case role::payments: return run_payments(cfg);
      case role::inventory: return run_inventory(cfg);
      case role::shipping: return run_shipping(cfg);
    }
  } catch (const std::exception& e) {
    console(cfg.name, cfg.color, cfg.quiet).error(fmt::format("failed: {}", e.what()));
  }
  return 1;
}
