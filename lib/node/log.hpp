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
#include "meshbus/options.hpp"

namespace meshbus::detail {

/// The shared "meshbus" logger (stderr), for what logs outside a node. Level from
/// MESHBUS_LOG (trace, debug, info, warn, error, off); default warn. Node
/// construction rejects other values (check_log_variable), so the level is never
/// switched off by a typo.
spdlog::logger& logger();
/// A node's logger: `given` (Options::logger) at `level` when one is set, else a new
/// logger on the shared stderr sink at `level`, else MESHBUS_LOG's or warn.
std::shared_ptr<spdlog::logger> node_logger(std::shared_ptr<spdlog::logger> given,
                                            std::optional<spdlog::level::level_enum> level);
spdlog::level::level_enum to_spdlog(LogLevel level) noexcept;

/// The level called `name` (one of log_level_names, exactly), if it is one.
std::optional<spdlog::level::level_enum> log_level_named(std::string_view name) noexcept;
/// The accepted names, for messages: "trace, debug, info, warn, error, off".
inline constexpr std::string_view log_level_names = "trace, debug, info, warn, error, off";
/// Throws meshbus::error(configuration) when MESHBUS_LOG is set to something else.
void check_log_variable();

}  // namespace meshbus::detail
