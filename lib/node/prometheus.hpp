// A node's report in the Prometheus text exposition format (version 0.0.4), for the
// metrics endpoint (Options::metrics_address). Every statistic of Stats, by its name:
// counters as meshbus_<name>_total, gauges as meshbus_<name>; then per stream, per
// lagging subscriber and per peer, with labels; then the two latency histograms in
// seconds. Every family has its HELP and TYPE lines; every sample carries the node's
// name and id as labels.
#pragma once

#include <string>

#include "meshbus/report.hpp"

namespace meshbus::detail {

std::string prometheus_text(const NodeReport& r);

}  // namespace meshbus::detail
