// Reports background faults of one node: to the log and to Options::on_error.
// Every fault is also counted by its caller in node_counters; this only decides when
// a cause is worth telling about (fault_log: the first time, then at most once per
// quiet period, saying how many occurrences were only counted) and tells it. Any thread; never throws.
#pragma once

#include <functional>
#include <string>
#include <system_error>

#include "lib/node/log.hpp"
#include "meshbus/node.hpp"

namespace meshbus::detail {

class fault_reporter {
 public:
  fault_reporter(std::string node, std::function<void(std::error_code, const std::string&)> on_error,
                 spdlog::logger& log)
      : node_(std::move(node)), on_error_(std::move(on_error)), logger_(log) {}

  /// Logs `message` and calls the error handler, when fault_log says this cause is
  /// due to be told about.
  void report(fault f, const std::string& message) noexcept;

 private:
  std::string node_;  ///< short id, for log lines
  std::function<void(std::error_code, const std::string&)> on_error_;
  spdlog::logger& logger_;
  fault_log log_;
};

}  // namespace meshbus::detail
