// Times on the command line: ISO 8601 in UTC ("2026-12-02T17:05:00Z", fractions of a
// second and "+01:00" offsets accepted; a time without a zone is taken as UTC; a date
// alone is its midnight UTC), or a moment relative to now ("-30s", "-15m", "-2h", "-7d").
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace meshbus_tool {

std::optional<std::chrono::system_clock::time_point> parse_time(std::string_view text);
/// "2026-12-02T17:05:00.123456789Z".
std::string format_time(std::uint64_t unix_ns);

}  // namespace meshbus_tool
