// Background faults to the log and to Options::on_error; see fault_reporter.hpp.
#include "lib/node/fault_reporter.hpp"

namespace meshbus::detail {

void fault_reporter::report(fault f, const std::string& message) noexcept {
  try {
    const auto suppressed = log_.admit(f, std::chrono::steady_clock::now());
    if (!suppressed) return;
    const auto text = log_.describe(f, message, *suppressed);
    logger_.warn("node {}: {}", node_, text);
    if (on_error_) on_error_(make_error_code(code_of(f)), text);
  } catch (...) {
    // Logging never throws; an error handler that throws is ignored.
  }
}

}  // namespace meshbus::detail
