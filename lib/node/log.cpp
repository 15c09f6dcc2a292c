// Logger set-up: one stderr logger shared by every Node of the process, its level
// from MESHBUS_LOG (checked when a Node is made: a typo must not silence the log).
#include "lib/node/log.hpp"

#include <cstdlib>
#include <mutex>
#include <utility>

#include <fmt/format.h>

#include <spdlog/sinks/stdout_color_sinks.h>

namespace meshbus::detail {

spdlog::logger& logger() {
  static std::shared_ptr<spdlog::logger> instance = [] {
    auto l = spdlog::get("meshbus");
    if (!l) {
      try {
        l = spdlog::stderr_color_mt("meshbus");
      } catch (const spdlog::spdlog_ex&) {
        l = spdlog::get("meshbus");
      }
    }
    l->set_pattern("%Y-%m-%d %H:%M:%S.%e [meshbus] %^%l%$ %v");
    // An invalid MESHBUS_LOG is refused by check_log_variable() when a Node is made;
    // should anything log before that, it keeps the default rather than going silent.
    const char* level = std::getenv("MESHBUS_LOG");
    l->set_level(level != nullptr ? log_level_named(level).value_or(spdlog::level::warn) : spdlog::level::warn);
    return l;
  }();
  return *instance;
}

std::shared_ptr<spdlog::logger> node_logger(std::shared_ptr<spdlog::logger> given,
                                            std::optional<spdlog::level::level_enum> level) {
  if (given) {
    if (level) given->set_level(*level);
    return given;
  }
  // One sink (and its formatter) for every node's own logger.
  auto& shared = logger();
  auto own = std::make_shared<spdlog::logger>("meshbus", shared.sinks().begin(), shared.sinks().end());
  own->set_level(level.value_or(shared.level()));
  return own;
}

spdlog::level::level_enum to_spdlog(LogLevel level) noexcept {
  switch (level) {
    case LogLevel::trace: return spdlog::level::trace;
    case LogLevel::debug: return spdlog::level::debug;
    case LogLevel::info: return spdlog::level::info;
    case LogLevel::warn: return spdlog::level::warn;
    case LogLevel::error: return spdlog::level::err;
    case LogLevel::off: return spdlog::level::off;
  }
  return spdlog::level::warn;
}

std::optional<spdlog::level::level_enum> log_level_named(std::string_view name) noexcept {
  using spdlog::level::level_enum;
  static constexpr std::pair<std::string_view, level_enum> levels[] = {
      {"trace", level_enum::trace}, {"debug", level_enum::debug}, {"info", level_enum::info},
      {"warn", level_enum::warn},   {"error", level_enum::err},   {"off", level_enum::off}};
  for (const auto& [n, level] : levels) {
    if (n == name) return level;
  }
  return std::nullopt;
}

void check_log_variable() {
  const char* level = std::getenv("MESHBUS_LOG");
  if (level == nullptr || *level == '\0' || log_level_named(level)) return;
  throw error(errc::configuration, fmt::format("MESHBUS_LOG='{}' is not a log level; use one of {} (default: warn)",
                                               std::string_view(level).substr(0, 64), log_level_names));
}

}  // namespace meshbus::detail
