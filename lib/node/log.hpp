// The meshbus logger; fault kinds and their rate-limited reporting are in faults.hpp.
//
// Logging never throws. Bad input is logged when a cause is first seen on a node and
// then at most once per quiet period (naming the counter that keeps counting), never
// per packet.
#pragma once

#include <memory>
#include <optional>
#include <string_view>

#include <spdlog/spdlog.h>

#include "lib/node/faults.hpp"

namespace meshbus::detail {

/// The shared "meshbus" logger (stderr). Level from MESHBUS_LOG (trace, debug,
/// info, warn, error, off); default warn. Node construction rejects other values
/// (check_log_variable), so the level is never switched off by a typo.
spdlog::logger& logger();

/// The level called `name` (one of log_level_names, exactly), if it is one.
std::optional<spdlog::level::level_enum> log_level_named(std::string_view name) noexcept;
/// The accepted names, for messages: "trace, debug, info, warn, error, off".
inline constexpr std::string_view log_level_names = "trace, debug, info, warn, error, off";
/// Throws meshbus::error(configuration) when MESHBUS_LOG is set to something else.
void check_log_variable();

}  // namespace meshbus::detail
