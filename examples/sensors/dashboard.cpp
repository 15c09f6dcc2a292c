// The dashboard process: subscribes to everything the sensors publish (sensors.**),
// shows the latest temperature and humidity per sensor twice a second, and reports
// peers joining and leaving the mesh.
#include <map>
#include <mutex>

#include <fmt/format.h>
#include <meshbus/node.hpp>

#include "roles.hpp"
#include "subscriber.hpp"

namespace sensors_demo {
namespace {

// Latest values per sensor, written by the handler thread, rendered by main.
class latest_readings {
 public:
  explicit latest_readings(int sensors) : sensors_(sensors) {}

  void update(const reading& r) {
    std::lock_guard lock(mutex_);
    auto& v = values_[r.sensor];
    (r.kind == temperature ? v.temperature : v.humidity) = r.value;
    ++updates_;
  }

  // One line such as "s1 21.4 °C 45 %  s2 ...  (214 readings)"; empty when nothing
  // changed since the last call.
  std::string render_if_changed() {
    std::lock_guard lock(mutex_);
    if (updates_ == rendered_) return {};
    rendered_ = updates_;
    std::string line;
    for (int i = 1; i <= sensors_; ++i) {
      const auto name = sensor_name(i);
      const auto it = values_.find(name);
      if (it == values_.end()) {
        line += fmt::format("{:<3}   --.- °C --.- %  ", name);
      } else {
        line +=
            fmt::format("{:<3} {:5.1f} °C {:4.1f} %  ", name, it->second.temperature, it->second.humidity);
      }
    }
    return line + fmt::format("({} readings)", updates_);
  }

 private:
  struct values {
    double temperature = 0.0;
    double humidity = 0.0;
  };
  const int sensors_;
  std::mutex mutex_;
  std::map<std::string, values, std::less<>> values_;
  std::uint64_t updates_ = 0;
  std::uint64_t rendered_ = 0;
};

void show_peer(const console& out, const meshbus::PeerEvent& e) {
  switch (e.kind) {
    case meshbus::PeerEvent::Kind::joined:
      out.print(fmt::format("peer joined: {} (node {}, {})", e.peer.name, e.peer.id.short_string(),
                            e.peer.address));
      break;
    case meshbus::PeerEvent::Kind::suspect: out.print(fmt::format("peer silent: {}", e.peer.name)); break;
    case meshbus::PeerEvent::Kind::alive_again: out.print(fmt::format("peer back: {}", e.peer.name)); break;
    case meshbus::PeerEvent::Kind::left: out.print(fmt::format("peer left: {}", e.peer.name)); break;
  }
}

}  // namespace

int run_dashboard(const demo_config& cfg) {
  const console out(cfg.name, cfg.color, cfg.quiet);
  delivery_check check(cfg.sensors, reading_kinds(role::dashboard));
  latest_readings latest(cfg.sensors);
  // Declared last: the node stops (and its handlers end) before what they use goes away.
  meshbus::Node node(node_options(cfg));
  node.on_peer([&out](const meshbus::PeerEvent& e) { show_peer(out, e); });
  node.subscribe("sensors.**", [&](const meshbus::Event& e) {
    if (auto r = check.on_event(e)) latest.update(*r);
  });
  out.print(fmt::format("node {} in cluster '{}', subscribed to sensors.** - waiting for sensors",
                        node.id().short_string(), node.cluster()));

  auto show_table = [&] {
    if (auto line = latest.render_if_changed(); !line.empty()) out.print(line);
  };
  const bool complete = wait_for_sensors(cfg, check, show_table);
  show_table();
  return finish_subscriber(cfg, out, node, check, complete);
}

}  // namespace sensors_demo
