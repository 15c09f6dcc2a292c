// A node's report (meshbus/report.hpp) as JSON: what `meshbus stats --json` prints for
// each node and what the dashboard's /api/mesh carries (stats.cpp).
#pragma once

#include "meshbus/meshbus.hpp"
#include "output.hpp"

namespace meshbus_tool {

json report_json(const meshbus::NodeReport& r);

/// The statistics shown as faults (top, the dashboard): bad input, handler failures,
/// dead letters, lost events. Beacons of other clusters or networks are not faults:
/// clusters share a beacon port by design.
bool is_fault(const meshbus::StatInfo& info);

}  // namespace meshbus_tool
