// The processes of the sensors demo. main() runs the launcher, which starts the others
// by re-executing its own binary with a hidden --role. Each returns its exit code.
#pragma once

#include "config.hpp"

namespace sensors_demo {

int run_launcher(demo_config cfg);
int run_sensor(const demo_config& cfg);
int run_dashboard(const demo_config& cfg);
int run_alerting(const demo_config& cfg);

}  // namespace sensors_demo
