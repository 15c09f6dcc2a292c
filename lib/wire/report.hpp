// Node reports (docs/protocol.md §11): what a node sends back for a STATUS request,
// and what `meshbus stats`, `meshbus top` and the metrics endpoint read. The report
// is a MessagePack map with string keys, so a reader skips keys it does not know and
// takes defaults for keys that are missing; lists and strings are bounded.
//
// The report's fields are the public value types of meshbus/report.hpp (data only):
// one definition serves the API, the codec and the tools.
#pragma once

#include "lib/wire/common.hpp"
#include "meshbus/report.hpp"

namespace meshbus::wire {

/// Entries of each list of a report, at most (more are cut when encoding).
inline constexpr std::uint32_t max_report_entries = 1000;
/// Peers listed, at most.
inline constexpr std::uint32_t max_report_peers = 4096;

bytes encode_report(const NodeReport& r);
/// ok, or malformed (anything out of bounds, a wrong type, trailing bytes).
decode_status decode_report(byte_view in, NodeReport& out);

}  // namespace meshbus::wire
