// The alerting process: subscribes to every sensor's temperature (sensors.*.temperature)
// and to the end-of-run notices (sensors.*.done), and raises an alert when a temperature
// climbs above the threshold (cleared again, with hysteresis, when it drops back).
#include <map>
#include <mutex>

#include <fmt/format.h>
#include <meshbus/node.hpp>

#include "roles.hpp"
#include "subscriber.hpp"

namespace sensors_demo {
namespace {

// Which sensors are above the threshold now. Called from handler threads.
class alarm_panel {
 public:
  explicit alarm_panel(const console& out) : out_(out) {}

  void check(const reading& r) {
    std::lock_guard lock(mutex_);
    bool& hot = hot_[r.sensor];
    if (!hot && r.value > alert_threshold_c) {
      hot = true;
      ++alerts_;
      out_.print(highlight(
          fmt::format("ALERT {} temperature {:.1f} °C > {:.1f}", r.sensor, r.value, alert_threshold_c),
          out_.color()));
    } else if (hot && r.value < alert_clear_c) {
      hot = false;
      out_.print(
          fmt::format("clear {} temperature {:.1f} °C, back below {:.1f}", r.sensor, r.value, alert_clear_c));
    }
  }

  unsigned alerts() const {
    std::lock_guard lock(mutex_);
    return alerts_;
  }

 private:
  const console& out_;
  mutable std::mutex mutex_;
  std::map<std::string, bool, std::less<>> hot_;
  unsigned alerts_ = 0;
};

}  // namespace

int run_alerting(const demo_config& cfg) {
  const console out(cfg.name, cfg.color, cfg.quiet);
  delivery_check check(cfg.sensors, reading_kinds(role::alerting));
  alarm_panel alarms(out);
  // Declared last: the node stops (and its handlers end) before what they use goes away.
  meshbus::Node node(node_options(cfg));
  auto handler = [&](const meshbus::Event& e) {
    if (auto r = check.on_event(e)) alarms.check(*r);
  };
  node.subscribe("sensors.*.temperature", handler);
  node.subscribe("sensors.*.done", handler);
  out.print(fmt::format("subscribed to sensors.*.temperature and sensors.*.done; alert above {:.1f} °C",
                        alert_threshold_c));

  const bool complete = wait_for_sensors(cfg, check);
  out.print(fmt::format("{} alert(s) raised", alarms.alerts()));
  return finish_subscriber(cfg, out, node, check, complete);
}

}  // namespace sensors_demo
