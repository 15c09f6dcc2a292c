// Settings shared by every process of the sensors demo: the command line (public options
// and the hidden ones the launcher passes to the role processes), topic names, timing
// and the meshbus::Options every process uses alike.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <meshbus/options.hpp>

namespace sensors_demo {

/// What one process of the demo does. Only the launcher is started by the user.
enum class role { launcher, sensor, dashboard, alerting };

const char* to_string(role r) noexcept;

struct demo_config {
  role process_role = role::launcher;
  std::string name = "launcher";  ///< node name and output tag
  std::string cluster;            ///< unique per run, chosen by the launcher
  int sensors = 3;
  int readings = 60;  ///< per topic and sensor
  double rate_hz = 25.0;
  bool quiet = false;
  bool color = false;  ///< the launcher's stdout is a terminal
  int report_fd = -1;  ///< where a role process writes its one-line summary
};

/// Parses the command line into `cfg`. Returns an exit code when the process should end
/// at once (--help, bad arguments), nullopt when it should run.
std::optional<int> parse_command_line(int argc, char** argv, demo_config& cfg);

/// The arguments (without argv[0]) that make a re-executed demo binary play `r` as `name`.
std::vector<std::string> role_arguments(const demo_config& cfg, role r, const std::string& name,
                                        int report_fd);

/// Node options for every process: the run's cluster, the process name as node name, and
/// a quick beacon so discovery takes a fraction of a second. Loopback only (the default).
meshbus::Options node_options(const demo_config& cfg);

inline constexpr std::string_view temperature = "temperature";
inline constexpr std::string_view humidity = "humidity";
inline constexpr std::string_view done = "done";
inline constexpr double alert_threshold_c = 30.0;
inline constexpr double alert_clear_c = 29.5;  ///< hysteresis: below this the alert ends

/// The reading kinds a role deals in: what a sensor publishes, what a subscriber expects
/// from each sensor. Empty for the launcher.
std::vector<std::string_view> reading_kinds(role r);
/// How many subscriber processes listen to a sensor's topic of this kind (or `done`).
std::size_t subscribers_of(std::string_view kind);

/// "s1", "s2", ... for index 1, 2, ...
std::string sensor_name(int index);
/// The index of a sensor name ("s2" -> 2); nullopt for anything else.
std::optional<int> sensor_index(std::string_view name);
/// "sensors.<sensor>.<kind>", kind being temperature, humidity or done.
std::string sensor_topic(std::string_view sensor, std::string_view kind);

/// How long sensors wait for their subscribers to appear.
std::chrono::milliseconds discovery_timeout();
/// How long a sensor takes to publish all its readings.
std::chrono::milliseconds publishing_time(const demo_config& cfg);
/// How long subscribers wait for every `done` and reading before giving up.
std::chrono::milliseconds subscriber_deadline(const demo_config& cfg);
/// How long the launcher lets the whole run take before it kills its children.
std::chrono::milliseconds launcher_deadline(const demo_config& cfg);

}  // namespace sensors_demo
