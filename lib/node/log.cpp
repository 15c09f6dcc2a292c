// Logger set-up: one stderr logger shared by every Node of the process.
#include "lib/node/log.hpp"

#include <cstdlib>
#include <mutex>

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
    const char* level = std::getenv("MESHBUS_LOG");
    l->set_level(level != nullptr ? spdlog::level::from_str(level) : spdlog::level::warn);
    return l;
  }();
  return *instance;
}

}  // namespace meshbus::detail
