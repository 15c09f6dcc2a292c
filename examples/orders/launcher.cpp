// The launcher: picks a cluster name unique to this run, starts the services and then
// checkout, forwards their output, kills payments-2 with SIGKILL once it has handled a
// few payments (its unacknowledged work goes to payments-1), waits for the orders
// service's verdict, then ends the others with SIGTERM. It only ever signals its own
// children, by pid, and kills what is left when the deadline passes.
#include <unistd.h>

#include <csignal>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "common/children.hpp"
#include "demo.hpp"

namespace orders_demo {
namespace {

using meshbus_examples::child_process;
using std::chrono::steady_clock;

struct service {
  role process_role;
  std::string name;
};

bool is_payment_line(std::string_view line) {
  return line.find(" captured ") != std::string_view::npos || line.find(" declined ") != std::string_view::npos;
}

}  // namespace

int run_launcher(demo_config cfg) {
  cfg.cluster = fmt::format("orders-{}", ::getpid());
  cfg.color = ::isatty(STDOUT_FILENO) == 1;
  const console out(cfg.name, cfg.color, cfg.quiet);

  // Services first; checkout waits for the orders saga's subscription by itself.
  const std::vector<service> services{{role::inventory, "inventory"}, {role::payments, "payments-1"},
                                      {role::payments, "payments-2"}, {role::shipping, "shipping"},
                                      {role::orders, "orders"},       {role::checkout, "checkout"}};
  constexpr std::size_t orders_index = 4;
  constexpr std::size_t victim_index = 2;  // payments-2

  out.print(fmt::format("cluster '{}': {} processes find each other by UDP beacon on loopback - no broker",
                        cfg.cluster, services.size()));
  out.print(fmt::format("{} orders at {} per second; every line starts with the flow's correlation id", cfg.orders,
                        cfg.rate_hz));
  std::vector<child_process> children(services.size());
  for (std::size_t i = 0; i < services.size(); ++i) {
    children[i].name = services[i].name;
    meshbus_examples::spawn(children[i], "meshbus-orders",
                            role_arguments(cfg, services[i].process_role, services[i].name));
    out.print(fmt::format("started {:<10} pid {}", children[i].name, children[i].pid()));
  }

  int payments_by_victim = 0;
  bool victim_killed = false;
  meshbus_examples::supervision what;
  what.on_out = [&](child_process& c, std::string_view line) {
    meshbus_examples::write_all(STDOUT_FILENO, fmt::format("{}\n", line));
    if (&c != &children[victim_index] || cfg.kill_after == 0 || victim_killed || !is_payment_line(line)) return;
    if (++payments_by_victim < cfg.kill_after) return;
    out.print(fmt::format("killing {} (pid {}) with SIGKILL mid-flow: what it has not acknowledged goes to payments-1",
                          c.name, c.pid()));
    meshbus_examples::kill_child(c, SIGKILL);
    victim_killed = true;
  };
  what.on_err = [&](child_process& c, std::string_view line) {
    const console tag(c.name, out.color(), false);
    meshbus_examples::write_all(STDERR_FILENO, tag.has_tag(line) ? fmt::format("{}\n", line) : tag.tagged(line));
  };
  what.done = [&] { return !children[orders_index].running() && !children[orders_index].out.open(); };

  const auto deadline = steady_clock::now() + launcher_deadline(cfg);
  auto kill_late = [&](const child_process& c) {
    out.error(fmt::format("deadline passed: killing {} (pid {})", c.name, c.pid()));
  };
  if (!meshbus_examples::supervise(children, what, deadline)) meshbus_examples::kill_remaining(children, kill_late);
  // The orders service has given its verdict: the others end with SIGTERM, cleanly.
  what.done = nullptr;
  for (auto& c : children) meshbus_examples::kill_child(c, SIGTERM);
  if (!meshbus_examples::supervise(children, what, steady_clock::now() + std::chrono::seconds(15))) {
    meshbus_examples::kill_remaining(children, kill_late);
  }

  std::vector<std::string> problems;
  for (std::size_t i = 0; i < children.size(); ++i) {
    const auto& c = children[i];
    if (i == victim_index && victim_killed) continue;
    if (c.exit_code() != 0) problems.push_back(fmt::format("{} exited with {}", c.name, c.exit_text()));
  }
  if (cfg.kill_after > 0 && !victim_killed) {
    out.print(fmt::format("payments-2 handled fewer than {} payments and was not killed", cfg.kill_after));
  }
  if (!problems.empty()) {
    out.error(fmt::format("FAILED: {}", fmt::join(problems, "; ")));
    return 1;
  }
  out.print(victim_killed ? "every process ended cleanly (payments-2 was killed on purpose)"
                          : "every process ended cleanly");
  return 0;
}

}  // namespace orders_demo
