// meshbus-demo: one command that starts the sensors demo. Run plainly it is the launcher;
// the launcher re-executes it with a hidden --role for each role process.
#include <exception>

#include <fmt/format.h>

#include "console.hpp"
#include "report.hpp"
#include "roles.hpp"

int main(int argc, char** argv) {
  using namespace sensors_demo;
  demo_config cfg;
  if (const auto code = parse_command_line(argc, argv, cfg)) return *code;
  try {
    switch (cfg.process_role) {
      case role::launcher: return run_launcher(cfg);
      case role::sensor: return run_sensor(cfg);
      case role::dashboard: return run_dashboard(cfg);
      case role::alerting: return run_alerting(cfg);
    }
  } catch (const std::exception& e) {
    console(cfg.name, cfg.color, cfg.quiet).error(fmt::format("failed: {}", e.what()));
    if (cfg.process_role != role::launcher) {
      send_report(cfg.report_fd, {cfg.name, to_string(cfg.process_role), 0, 0, 0, false, e.what()});
    }
  }
  return 1;
}
