// The demo's command line and the settings derived from it; see config.hpp. Role
// processes get the same public options as the launcher, plus hidden ones.
#include "config.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>

#include <fmt/format.h>

#include "common/command_line.hpp"

namespace sensors_demo {

using meshbus_examples::usage_error;

using namespace std::chrono_literals;

const char* to_string(role r) noexcept {
  switch (r) {
    case role::launcher: return "launcher";
    case role::sensor: return "sensor";
    case role::dashboard: return "dashboard";
    case role::alerting: return "alerting";
  }
  return "?";
}

namespace {

constexpr const char* description =
    "The meshbus sensors demo: starts a dashboard, an alerting service and N sensors as\n"
    "separate processes. They find each other by UDP beacon on loopback (no broker),\n"
    "exchange readings over ZeroMQ, and the demo ends with a table of what was sent and\n"
    "received. Exit code 0 when every event arrived once and in order, 1 otherwise.";

// The hidden options (--role, --name, --cluster, --report-fd, --color) are how the
// launcher tells a re-executed copy of itself what to be.
void add_hidden_options(CLI::App& app, demo_config& cfg) {
  const std::map<std::string, role> roles{
      {"sensor", role::sensor}, {"dashboard", role::dashboard}, {"alerting", role::alerting}};
  app.add_option("--role", cfg.process_role)->transform(CLI::CheckedTransformer(roles))->group("");
  app.add_option("--name", cfg.name)->group("");
  app.add_option("--cluster", cfg.cluster)->group("");
  app.add_option("--report-fd", cfg.report_fd)->check(CLI::Range(0, 1 << 20))->group("");
  app.add_flag("--color", cfg.color)->group("");
}

}  // namespace

std::optional<int> parse_command_line(int argc, char** argv, demo_config& cfg) {
  CLI::App app{description, "meshbus-demo"};
  app.add_option("--sensors", cfg.sensors, "sensor processes, 1-20 (default 3)")
      ->type_name("N")
      ->check(CLI::Range(1, 20));
  app.add_option("--readings", cfg.readings, "readings per topic and sensor, 1-100000 (default 60)")
      ->type_name("N")
      ->check(CLI::Range(1, 100000));
  app.add_option("--rate", cfg.rate_hz, "readings per second and topic, 0.1-1000 (default 25)")
      ->type_name("HZ")
      ->check(CLI::Range(0.1, 1000.0));
  app.add_flag("--quiet", cfg.quiet, "print only the final summary");
  add_hidden_options(app, cfg);
  return meshbus_examples::parse_command_line(app, argc, argv, [&cfg] {
    if (cfg.process_role == role::sensor && !sensor_index(cfg.name)) {
      throw usage_error(fmt::format("a sensor's --name must be s1, s2, ... (got '{}')", cfg.name));
    }
    if (cfg.process_role != role::launcher && (cfg.cluster.empty() || cfg.report_fd < 0)) {
      throw usage_error("role processes are started by the launcher; run meshbus-demo without --role");
    }
  });
}

std::vector<std::string> role_arguments(const demo_config& cfg, role r, const std::string& name,
                                        int report_fd) {
  std::vector<std::string> args{"--role",      to_string(r),
                                "--name",      name,
                                "--cluster",   cfg.cluster,
                                "--report-fd", std::to_string(report_fd),
                                "--sensors",   std::to_string(cfg.sensors),
                                "--readings",  std::to_string(cfg.readings),
                                "--rate",      fmt::format("{}", cfg.rate_hz)};
  if (cfg.quiet) args.emplace_back("--quiet");
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

std::vector<std::string_view> reading_kinds(role r) {
  switch (r) {
    case role::sensor:
    case role::dashboard: return {temperature, humidity};
    case role::alerting: return {temperature};
    case role::launcher: break;
  }
  return {};
}

std::size_t subscribers_of(std::string_view kind) {
  std::size_t n = 0;
  for (const auto r : {role::dashboard, role::alerting}) {
    const auto kinds = reading_kinds(r);
    if (kind == done || std::find(kinds.begin(), kinds.end(), kind) != kinds.end()) ++n;
  }
  return n;
}

std::string sensor_name(int index) {
  return fmt::format("s{}", index);
}

std::optional<int> sensor_index(std::string_view name) {
  if (name.size() < 2 || name.front() != 's') return std::nullopt;
  int index = 0;
  const auto* end = name.data() + name.size();
  const auto [p, ec] = std::from_chars(name.data() + 1, end, index);
  if (ec != std::errc{} || p != end || index < 1) return std::nullopt;
  return index;
}

std::string sensor_topic(std::string_view sensor, std::string_view kind) {
  return fmt::format("sensors.{}.{}", sensor, kind);
}

std::chrono::milliseconds discovery_timeout() {
  return 10s;
}

std::chrono::milliseconds publishing_time(const demo_config& cfg) {
  return std::chrono::milliseconds(static_cast<long>(std::ceil(1000.0 * cfg.readings / cfg.rate_hz)));
}

std::chrono::milliseconds subscriber_deadline(const demo_config& cfg) {
  return discovery_timeout() + publishing_time(cfg) + 5s;
}

std::chrono::milliseconds launcher_deadline(const demo_config& cfg) {
  return subscriber_deadline(cfg) + 5s;
}

}  // namespace sensors_demo
