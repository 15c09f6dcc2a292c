// The launcher: picks a cluster name unique to this run and a data directory for each
// orders instance, starts the services and then checkout, forwards their output, kills
// payments-2 with SIGKILL once it has handled a few payments (its unacknowledged work
// goes to payments-1), and with --kill an orders instance once half the orders are
// placed, restarting it a few seconds later on the same data directory. It waits for
// checkout's verdict, then ends the others with SIGTERM. It only ever signals its own
// children, by pid, and kills what is left when the deadline passes.
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <map>
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
/// An orders instance reserving stock for an order (or finding none) owns that order.
bool is_owner_line(std::string_view line) {
  return line.find(" stock reserved") != std::string_view::npos ||
         line.find(" rejected: out of stock") != std::string_view::npos;
}
bool is_placed_line(std::string_view line) { return line.find(" placed") != std::string_view::npos; }

/// The data directories of the run's orders instances, removed at the end.
struct data_root {
  std::filesystem::path path;
  data_root() : path(std::filesystem::temp_directory_path() / fmt::format("meshbus-orders-{}", ::getpid())) {
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~data_root() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  data_root(const data_root&) = delete;
  data_root& operator=(const data_root&) = delete;
};

}  // namespace

int run_launcher(demo_config cfg) {
  cfg.cluster = fmt::format("orders-{}", ::getpid());
  cfg.color = ::isatty(STDOUT_FILENO) == 1;
  const console out(cfg.name, cfg.color, cfg.quiet);
  const data_root data;

  // Services first; checkout waits for every orders instance by itself.
  std::vector<service> services{{role::inventory, "inventory"},
                                {role::payments, "payments-1"},
                                {role::payments, "payments-2"},
                                {role::shipping, "shipping"}};
  const std::size_t first_orders = services.size();
  for (int i = 1; i <= cfg.instances; ++i) services.push_back({role::orders, fmt::format("orders-{}", i)});
  services.push_back({role::checkout, "checkout"});
  const std::size_t checkout_index = services.size() - 1;
  constexpr std::size_t victim_index = 2;  // payments-2

  const auto arguments = [&](std::size_t i) {
    auto args = role_arguments(cfg, services[i].process_role, services[i].name);
    if (services[i].process_role == role::orders) {
      args.emplace_back("--data-dir");
      args.push_back((data.path / services[i].name).string());
    }
    return args;
  };

  out.print(fmt::format("cluster '{}': {} processes find each other by UDP beacon on loopback - no broker",
                        cfg.cluster, services.size()));
  out.print(fmt::format("{} orders at {} per second; {} orders instances, each order replicated to another at least; "
                        "every line starts with the flow's correlation id",
                        cfg.orders, cfg.rate_hz, cfg.instances));
  std::vector<child_process> children(services.size());
  for (std::size_t i = 0; i < services.size(); ++i) {
    children[i].name = services[i].name;
    meshbus_examples::spawn(children[i], "meshbus-orders", arguments(i));
    out.print(fmt::format("started {:<10} pid {}", children[i].name, children[i].pid()));
  }

  int payments_by_victim = 0;
  bool victim_killed = false;
  int placed = 0;
  std::map<std::size_t, int> owned;  // orders instance -> orders it reserved stock for
  std::optional<std::size_t> orders_killed;
  std::optional<steady_clock::time_point> restart_at;
  bool restarted = false;
  const auto restart_delay =
      std::chrono::duration_cast<steady_clock::duration>(std::chrono::duration<double>(cfg.restart_after));

  meshbus_examples::supervision what;
  what.tick = std::chrono::milliseconds(100);
  what.on_out = [&](child_process& c, std::string_view line) {
    if (!cfg.quiet || !console(c.name, out.color(), false).has_tag(line)) {
      meshbus_examples::write_all(STDOUT_FILENO, fmt::format("{}\n", line));
    }
    const auto index = static_cast<std::size_t>(&c - children.data());
    if (index >= first_orders && index < checkout_index && is_owner_line(line)) ++owned[index];
    if (index == checkout_index && is_placed_line(line) && ++placed * 2 >= cfg.orders && !cfg.kill.empty() &&
        !orders_killed) {
      std::size_t target = first_orders;
      if (cfg.kill == "orders") {
        for (const auto& [i, n] : owned) {
          if (n > owned[target]) target = i;
        }
      } else {
        while (children[target].name != cfg.kill) ++target;
      }
      out.print(fmt::format("killing {} (pid {}, it took {} orders so far) with SIGKILL mid-flow; the other instances "
                            "take its orders over; restart in {} s",
                            children[target].name, children[target].pid(), owned[target], cfg.restart_after));
      meshbus_examples::kill_child(children[target], SIGKILL);
      orders_killed = target;
      restart_at = steady_clock::now() + restart_delay;
    }
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
  what.done = [&] {
    if (restart_at && steady_clock::now() >= *restart_at && !children[*orders_killed].running()) {
      auto& c = children[*orders_killed];
      meshbus_examples::spawn(c, "meshbus-orders", arguments(*orders_killed));
      c.killed = false;
      restart_at.reset();
      restarted = true;
      out.print(fmt::format("restarted {} (pid {}) on its data directory", c.name, c.pid()));
    }
    return !children[checkout_index].running() && !children[checkout_index].out.open();
  };

  const auto deadline = steady_clock::now() + launcher_deadline(cfg);
  auto kill_late = [&](const child_process& c) {
    out.error(fmt::format("deadline passed: killing {} (pid {})", c.name, c.pid()));
  };
  if (!meshbus_examples::supervise(children, what, deadline)) meshbus_examples::kill_remaining(children, kill_late);
  // Checkout has given its verdict: the others end with SIGTERM, cleanly.
  what.done = nullptr;
  for (auto& c : children) meshbus_examples::kill_child(c, SIGTERM);
  if (!meshbus_examples::supervise(children, what, steady_clock::now() + std::chrono::seconds(15))) {
    meshbus_examples::kill_remaining(children, kill_late);
  }

  std::vector<std::string> problems;
  for (std::size_t i = 0; i < children.size(); ++i) {
    const auto& c = children[i];
    if (i == victim_index && victim_killed) continue;
    if (orders_killed && i == *orders_killed && !restarted) continue;
    if (c.exit_code() != 0) problems.push_back(fmt::format("{} exited with {}", c.name, c.exit_text()));
  }
  if (cfg.kill_after > 0 && !victim_killed) {
    out.print(fmt::format("payments-2 handled fewer than {} payments and was not killed", cfg.kill_after));
  }
  if (!cfg.kill.empty() && !restarted) problems.push_back(cfg.kill + ": no orders instance was killed and restarted");
  if (!problems.empty()) {
    out.error(fmt::format("FAILED: {}", fmt::join(problems, "; ")));
    return 1;
  }
  out.print(fmt::format("every process ended cleanly{}{}", victim_killed ? " (payments-2 was killed on purpose)" : "",
                        restarted ? fmt::format("; {} was killed and restarted", children[*orders_killed].name) : ""));
  return 0;
}

}  // namespace orders_demo
