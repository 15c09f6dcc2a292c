// What the two subscriber processes (dashboard, alerting) share: waiting for the sensors
// to finish, and ending the run with a verdict line, a report to the launcher and a
// clean stop of the node.
#pragma once

#include <functional>

#include <meshbus/node.hpp>

#include "config.hpp"
#include "console.hpp"
#include "delivery_check.hpp"

namespace sensors_demo {

/// Waits (on main) until `check` is complete or subscriber_deadline(cfg) has passed,
/// calling `every_half_second` meanwhile when it is set. True when complete.
bool wait_for_sensors(const demo_config& cfg, delivery_check& check,
                      const std::function<void()>& every_half_second = {});

/// Prints the verdict, stops `node` (goodbye to the peers), reports to the launcher.
/// Returns the process's exit code.
int finish_subscriber(const demo_config& cfg, const console& out, meshbus::Node& node,
                      const delivery_check& check, bool complete);

}  // namespace sensors_demo
