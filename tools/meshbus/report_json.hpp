// A node's report (meshbus/report.hpp) as JSON: what `meshbus stats --json` prints for
// each node and what the dashboard's /api/mesh carries (stats.cpp).
#pragma once

#include "meshbus/meshbus.hpp"
#include "output.hpp"

namespace meshbus_tool {

json report_json(const meshbus::NodeReport& r);
/// {"nodes": [report_json...], "unanswered": [{"id", "name"}...]}: stats --json's document,
/// and the base of the dashboard's /api/mesh.
json mesh_report_json(const meshbus::MeshReport& mesh);

/// The statistics shown as faults (top, the dashboard): bad input, handler failures,
/// dead letters, lost events. Beacons of other clusters or networks are not faults:
/// clusters share a beacon port by design.
bool is_fault(const meshbus::StatInfo& info);

}  // namespace meshbus_tool
