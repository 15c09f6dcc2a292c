// Background faults to the log and to Options::on_error; see fault_reporter.hpp.
#include "lib/node/fault_reporter.hpp"

namespace meshbus::detail {

void fault_reporter::report(fault f, const std::string& message) noexcept {
  try {
    if (!log_.first(f)) return;
    logger().warn("node {}: {} (further occurrences are only counted in stats())", node_, message);
    if (on_error_) on_error_(make_error_code(code_of(f)), message);
  } catch (...) {
    // Logging never throws; an error handler that throws is ignored.
  }
}

}  // namespace meshbus::detail
