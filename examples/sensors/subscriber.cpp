// The end of a subscriber's run, shared by dashboard and alerting; see subscriber.hpp.
// Only main calls these; handlers talk to main through delivery_check alone.
#include "subscriber.hpp"

#include <algorithm>
#include <chrono>

#include <fmt/format.h>

#include "report.hpp"

namespace sensors_demo {

using std::chrono::steady_clock;

bool wait_for_sensors(const demo_config& cfg, delivery_check& check,
                      const std::function<void()>& every_half_second) {
  constexpr auto tick = std::chrono::milliseconds(500);
  const auto deadline = steady_clock::now() + subscriber_deadline(cfg);
  auto next_tick = steady_clock::now() + tick;
  for (;;) {
    if (check.wait_complete(every_half_second ? std::min(deadline, next_tick) : deadline)) return true;
    if (steady_clock::now() >= deadline) return false;
    every_half_second();
    next_tick += tick;
  }
}

int finish_subscriber(const demo_config& cfg, const console& out, meshbus::Node& node,
                      const delivery_check& check, bool complete) {
  const auto totals = check.sum();
  process_report report{cfg.name,
                        to_string(cfg.process_role),
                        0,
                        totals.received,
                        totals.out_of_order,
                        complete && totals.out_of_order == 0,
                        ""};
  if (report.ok) {
    out.print(fmt::format("all {} readings from {} sensors arrived, each once and in order", totals.received,
                          cfg.sensors));
  } else {
    if (!complete) report.note = fmt::format("gave up waiting: {}", check.missing());
    if (totals.out_of_order != 0) {
      report.note +=
          fmt::format("{}{} readings out of order", report.note.empty() ? "" : "; ", totals.out_of_order);
    }
    out.error(report.note);
  }
  node.stop();
  if (!send_report(cfg.report_fd, report)) out.error("cannot reach the launcher to report");
  return report.ok ? 0 : 1;
}

}  // namespace sensors_demo
