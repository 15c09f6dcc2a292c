// The meshbus logger and once-per-cause fault reporting.
//
// Logging never throws. Bad input is logged the first time each cause is seen on a
// node (with a pointer to the counter that keeps counting), never per packet.
#pragma once

#include <array>
#include <atomic>
#include <memory>
#include <optional>
#include <string_view>

#include <spdlog/spdlog.h>

#include "meshbus/error.hpp"

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

enum class fault : std::uint8_t {
  malformed_beacon,
  unsupported_beacon,
  foreign_cluster,
  malformed_data,
  unsupported_data,
  malformed_control,
  unsupported_control,
  unknown_sender,
  handler_exception,
  sent_past_gone,
  control_send_failure,
  sequence_gap,
  dead_letter,
  group_conflict,
  unknown_start,
  count_
};

/// The code a fault is reported to Options::on_error with.
errc code_of(fault f) noexcept;

class fault_log {
 public:
  /// True the first time `f` is reported on this node (the caller logs then).
  bool first(fault f) noexcept {
    return !seen_[static_cast<std::size_t>(f)].exchange(true, std::memory_order_relaxed);
  }

 private:
  std::array<std::atomic<bool>, static_cast<std::size_t>(fault::count_)> seen_{};
};

}  // namespace meshbus::detail
