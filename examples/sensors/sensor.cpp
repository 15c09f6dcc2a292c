// A sensor process: waits until its subscribers are listening, publishes a temperature
// and a humidity reading per tick (slowly drifting random walks; s2 runs hot and crosses
// the alert threshold a few times), announces `done` with its count, flushes and leaves.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <numbers>
#include <random>
#include <span>
#include <thread>

#include <fmt/format.h>
#include <meshbus/node.hpp>
#include <nlohmann/json.hpp>

#include "console.hpp"
#include "report.hpp"
#include "roles.hpp"

namespace sensors_demo {
namespace {

using std::chrono::steady_clock;

// Mean-reverting random walks around a per-sensor base. The hot sensor (s2) adds a slow
// swing of +-1.8 °C around 29.0 °C, three periods per run, so it crosses 30 °C about
// three times whatever --readings is.
class reading_generator {
 public:
  reading_generator(int index, int readings)
      : rng_(std::random_device{}()),
        hot_(index == 2),
        base_temperature_(hot_ ? 29.0 : 19.5 + ((index * 37) % 60) / 10.0),
        base_humidity_(40.0 + (index * 7) % 30),
        swing_period_(std::max(readings / 3, 4)) {}

  /// The next reading of `kind` (temperature or humidity).
  double next(std::string_view kind) {
    if (kind == temperature) {
      walk_temperature_ = 0.9 * walk_temperature_ + 0.08 * step_(rng_);
      const double swing = hot_ ? 1.8 * std::sin(2 * std::numbers::pi * n_ / swing_period_) : 0.0;
      return base_temperature_ + swing + walk_temperature_;
    }
    walk_humidity_ = 0.98 * walk_humidity_ + 0.3 * step_(rng_);
    return std::clamp(base_humidity_ + walk_humidity_, 0.0, 100.0);
  }
  void advance() { ++n_; }

 private:
  std::mt19937 rng_;
  std::normal_distribution<double> step_{0.0, 1.0};
  bool hot_;
  double base_temperature_;
  double base_humidity_;
  int swing_period_;
  int n_ = 1;
  double walk_temperature_ = 0.0;
  double walk_humidity_ = 0.0;
};

struct stream {
  std::string_view kind;  ///< temperature, humidity or done
  std::string topic;
};

// Waits until every stream has all its subscribers. Empty when they have; otherwise
// says which did not show up.
std::string wait_for_listeners(meshbus::Node& node, const std::vector<stream>& streams) {
  const auto deadline = steady_clock::now() + discovery_timeout();
  for (const auto& s : streams) {
    const auto wanted = subscribers_of(s.kind);
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady_clock::now());
    if (!node.wait_for_subscribers(s.topic, wanted, std::max(left, std::chrono::milliseconds(0)))) {
      return fmt::format("{} had fewer than {} subscriber(s) after {} s", s.topic, wanted,
                         std::chrono::duration_cast<std::chrono::seconds>(discovery_timeout()).count());
    }
  }
  return {};
}

// Publishes every reading at the configured rate, counting what went out in `report`.
// Returns how many publishes were refused (the send queue stayed full).
std::uint64_t publish_readings(const demo_config& cfg, const console& out, meshbus::Node& node,
                               std::span<const stream> streams, process_report& report) {
  reading_generator generator(*sensor_index(cfg.name), cfg.readings);
  const auto period = std::chrono::duration<double>(1.0 / cfg.rate_hz);
  const auto progress_every = std::max(1, static_cast<int>(std::lround(cfg.rate_hz)));  // about 1 s
  const auto start = steady_clock::now();
  std::uint64_t refused = 0;
  for (int n = 1; n <= cfg.readings; ++n) {
    std::this_thread::sleep_until(start +
                                  std::chrono::duration_cast<steady_clock::duration>(period * (n - 1)));
    std::string progress;
    for (const auto& s : streams) {
      const double value = generator.next(s.kind);
      // {"sensor":"s1","value":21.5,"n":7}; readings are tenths of a degree or percent.
      const auto payload =
          nlohmann::ordered_json{{"sensor", cfg.name}, {"value", std::round(value * 10) / 10}, {"n", n}}.dump();
      if (node.publish(s.topic, payload) == meshbus::PublishResult::ok) {
        ++report.sent;
      } else {
        ++refused;
      }
      progress += fmt::format("  {} {:.1f}", s.kind, value);
    }
    generator.advance();
    if (n % progress_every == 0 || n == cfg.readings) {
      out.print(fmt::format("sent {:>3}/{}{}", n, cfg.readings, progress));
    }
  }
  return refused;
}

}  // namespace

int run_sensor(const demo_config& cfg) {
  const console out(cfg.name, cfg.color, cfg.quiet);
  process_report report{cfg.name, to_string(role::sensor), 0, 0, 0, false, ""};
  meshbus::Node node(node_options(cfg));

  std::vector<stream> streams;  // the readings' streams, then `done`
  for (const auto kind : reading_kinds(role::sensor)) streams.push_back({kind, sensor_topic(cfg.name, kind)});
  streams.push_back({done, sensor_topic(cfg.name, done)});
  const std::span<const stream> reading_streams(streams.data(), streams.size() - 1);

  report.note = wait_for_listeners(node, streams);
  if (!report.note.empty()) {
    out.error(report.note);
    node.stop();
    send_report(cfg.report_fd, report);
    return 1;
  }
  out.print(fmt::format("dashboard and alerting are listening: publishing {} readings per topic at {} Hz",
                        cfg.readings, cfg.rate_hz));
  const auto refused = publish_readings(cfg, out, node, reading_streams, report);

  // `done` carries how many readings went out on each topic.
  const auto per_topic = report.sent / reading_streams.size();
  const auto done_result = node.publish(streams.back().topic, std::to_string(per_topic));
  const auto flushed = node.flush(std::chrono::seconds(5));
  if (refused != 0) report.note = fmt::format("{} readings refused (send queue full)", refused);
  if (done_result != meshbus::PublishResult::ok) report.note = "the done event was refused (send queue full)";
  if (!flushed) report.note = "flush(): " + flushed.describe();
  report.ok = report.note.empty();
  if (report.ok) {
    out.print(fmt::format("sent done ({} readings per topic)", per_topic));
  } else {
    out.error(report.note);
  }
  node.stop();  // hands anything left to ZeroMQ; subscribers keep reading after the goodbye
  out.print("left the mesh");
  send_report(cfg.report_fd, report);
  return report.ok ? 0 : 1;
}

}  // namespace sensors_demo
