// The launcher: picks a cluster name unique to this run, starts the role processes
// (subscribers first, then sensors), forwards their output, waits for them within a
// deadline (killing only its own children, by pid, when it passes) and prints the table.
//
// The role processes are this same binary, re-executed through /proc/self/exe with a
// hidden --role. One binary means `./run demo` has one thing to find and build, and the
// launcher and its children can never come from different builds.
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "common/children.hpp"
#include "console.hpp"
#include "report.hpp"
#include "roles.hpp"

namespace sensors_demo {
namespace {

using meshbus_examples::child_process;
using meshbus_examples::line_reader;
using std::chrono::steady_clock;

// What the launcher knows of a role process besides the process itself (same index).
struct child {
  role process_role = role::sensor;
  std::optional<process_report> report;
};

// Forwards the children's output and takes their reports until all are gone or the
// deadline passes (false).
bool supervise(std::vector<child_process>& processes, std::vector<child>& children, line_reader& reports,
               const console& out, steady_clock::time_point deadline) {
  meshbus_examples::supervision what;
  what.on_out = [](child_process&, std::string_view line) { write_all(STDOUT_FILENO, fmt::format("{}\n", line)); };
  what.on_err = [&out](child_process& c, std::string_view line) {
    // The child tags its own error lines; library log lines get its tag here.
    const console tag(c.name, out.color(), false);
    write_all(STDERR_FILENO, tag.has_tag(line) ? fmt::format("{}\n", line) : tag.tagged(line));
  };
  what.extra = &reports;
  what.on_extra = [&](std::string_view line) {
    auto r = decode_report(line);
    if (!r) {
      out.error(fmt::format("ignored a malformed report: {}", line));
      return;
    }
    for (std::size_t i = 0; i < processes.size(); ++i) {
      if (processes[i].name == r->name) children[i].report = std::move(*r);
    }
  };
  return meshbus_examples::supervise(processes, what, deadline);
}

// What went wrong with one process as a whole, if anything.
std::optional<std::string> process_problem(const child_process& p, const child& c) {
  if (p.killed) return fmt::format("{} was still running at the deadline and was killed", p.name);
  if (!c.report) return fmt::format("{} sent no report (exit {})", p.name, p.exit_text());
  if (!c.report->ok) return fmt::format("{}: {}", p.name, c.report->note);
  if (p.exit_code() != 0) return fmt::format("{} exited with {}", p.name, p.exit_text());
  return std::nullopt;
}

// The final table and verdict. A subscriber's expected count comes from what the
// sensors say they sent (the configured count for a sensor that did not report), so
// the launcher checks the subscribers' own bookkeeping too. Returns the exit code.
int summarize(const demo_config& cfg, const std::vector<child_process>& processes,
              const std::vector<child>& children) {
  const auto kinds_per_sensor = reading_kinds(role::sensor).size();
  std::uint64_t per_topic = 0;  // readings per topic, summed over the sensors
  for (const auto& c : children) {
    if (c.process_role != role::sensor) continue;
    per_topic += c.report ? c.report->sent / kinds_per_sensor : static_cast<std::uint64_t>(cfg.readings);
  }

  constexpr std::string_view row = "{:<10} {:<10} {:>6} {:>9} {:>5} {:>13}  {}\n";
  std::string table =
      fmt::format(fmt::runtime(row), "process", "role", "sent", "received", "lost", "out of order", "exit");
  std::vector<std::string> problems;
  for (std::size_t i = 0; i < children.size(); ++i) {
    const auto& p = processes[i];
    const auto& c = children[i];
    std::string sent = "-", received = "-", lost = "-", disorder = "-";
    if (const auto* r = c.report ? &*c.report : nullptr; r != nullptr && c.process_role == role::sensor) {
      sent = std::to_string(r->sent);
      const auto wanted = static_cast<std::uint64_t>(cfg.readings) * kinds_per_sensor;
      if (r->sent != wanted)
        problems.push_back(fmt::format("{} sent {} of {} readings", p.name, r->sent, wanted));
    } else if (r != nullptr) {
      const auto expected = per_topic * reading_kinds(c.process_role).size();
      const auto missing = expected > r->received ? expected - r->received : 0;
      received = std::to_string(r->received);
      lost = std::to_string(missing);
      disorder = std::to_string(r->out_of_order);
      if (missing != 0)
        problems.push_back(fmt::format("{} lost {} of {} readings", p.name, missing, expected));
      if (r->out_of_order != 0) {
        problems.push_back(fmt::format("{} saw {} readings out of order", p.name, r->out_of_order));
      }
    }
    if (auto problem = process_problem(p, c)) problems.push_back(std::move(*problem));
    table += fmt::format(fmt::runtime(row), p.name, to_string(c.process_role), sent, received, lost, disorder,
                         p.exit_text());
  }
  const bool ok = problems.empty();
  table += ok ? "OK: every event arrived once and in order\n"
              : fmt::format("FAILED: {}\n", fmt::join(problems, "; "));
  write_all(STDOUT_FILENO, cfg.quiet ? table : "\n" + table);
  return ok ? 0 : 1;
}

}  // namespace

int run_launcher(demo_config cfg) {
  cfg.cluster = fmt::format("demo-{}", ::getpid());
  cfg.color = ::isatty(STDOUT_FILENO) == 1;
  const console out(cfg.name, cfg.color, cfg.quiet);

  std::vector<child_process> processes;
  std::vector<child> children;
  auto add = [&](std::string name, role r) {
    processes.emplace_back().name = std::move(name);
    children.emplace_back().process_role = r;
  };
  add("dashboard", role::dashboard);
  add("alerting", role::alerting);
  for (int i = 1; i <= cfg.sensors; ++i) add(sensor_name(i), role::sensor);

  out.print(fmt::format("cluster '{}': {} processes find each other by UDP beacon on loopback - no broker",
                        cfg.cluster, children.size()));
  out.print(fmt::format("each sensor sends {} temperature and {} humidity readings at {} Hz, then 'done'",
                        cfg.readings, cfg.readings, cfg.rate_hz));

  auto reports = meshbus::support::make_pipe();
  line_reader report_reader(std::move(reports.read));
  const auto deadline = steady_clock::now() + launcher_deadline(cfg);
  // Subscribers first, then sensors (which also wait for the subscribers to be ready).
  for (std::size_t i = 0; i < processes.size(); ++i) {
    auto& p = processes[i];
    meshbus_examples::spawn(p, "meshbus-demo", role_arguments(cfg, children[i].process_role, p.name, reports.write.get()),
                            reports.write.get());
    out.print(fmt::format("started {:<9} pid {}", p.name, p.pid()));
  }
  reports.write.reset();  // the children hold the only write ends: EOF when all are gone

  if (!supervise(processes, children, report_reader, out, deadline)) {
    meshbus_examples::kill_remaining(processes, [&out](const child_process& p) {
      out.error(fmt::format("deadline passed: killing {} (pid {})", p.name, p.pid()));
    });
    // Whatever the killed children left in their pipes (they are closed now).
    supervise(processes, children, report_reader, out, steady_clock::now() + std::chrono::seconds(1));
  }
  return summarize(cfg, processes, children);
}

}  // namespace sensors_demo
