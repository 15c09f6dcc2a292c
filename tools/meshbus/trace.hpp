// What `meshbus trace` shares between collecting the answers (trace.cpp) and printing
// them (trace_print.cpp): every node's answer as it arrived. The protocol's names and
// codec come from lib/wire/trace.hpp, where the nodes take them too.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lib/wire/trace.hpp"
#include "meshbus/meshbus.hpp"

namespace meshbus_tool {

/// One node asked, and what it said.
struct trace_answer {
  meshbus::NodeId node;
  std::string name;
  bool done = false;  ///< its "done" arrived: it answered
  std::vector<meshbus::wire::trace_record> records;
  std::uint64_t count = 0;  ///< records its "done" says it sent
  meshbus::wire::trace_status status = meshbus::wire::trace_status::complete;
  std::string note;
};

/// Prints the causation tree and who answered; `json`: one JSON document instead.
/// Returns the number of distinct events printed.
std::size_t print_trace(const std::string& correlation_id, const std::vector<trace_answer>& answers,
                        bool json);

/// "2026-12-02T17:05:00.123Z" (ISO 8601, UTC, milliseconds).
std::string format_time_ms(std::int64_t unix_ns);

}  // namespace meshbus_tool
