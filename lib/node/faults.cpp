// Rate-limited fault reporting; see faults.hpp. A report claims its slot with one
// compare-and-swap, so among threads that see a fault at once exactly one reports it.
#include "lib/node/faults.hpp"

#include <fmt/format.h>

namespace meshbus::detail {

std::optional<std::uint64_t> fault_log::admit(fault f, clock::time_point now) noexcept {
  auto& s = slots_[static_cast<std::size_t>(f)];
  const auto t = std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count();
  auto next = s.next.load(std::memory_order_relaxed);
  const auto quiet = std::chrono::duration_cast<std::chrono::nanoseconds>(quiet_).count();
  if (t < next || !s.next.compare_exchange_strong(next, t + quiet, std::memory_order_relaxed)) {
    s.suppressed.fetch_add(1, std::memory_order_relaxed);
    return std::nullopt;
  }
  return s.suppressed.exchange(0, std::memory_order_relaxed);
}

std::string fault_log::describe(fault f, std::string_view message, std::uint64_t suppressed) const {
  const auto& info = info_of(f);
  const auto quiet_s = std::chrono::duration_cast<std::chrono::duration<double>>(quiet_).count();
  std::string out(message);
  out += " (";
  if (!info.hint.empty()) {
    out += info.hint;
    out += "; ";
  }
  if (suppressed != 0) {
    out += fmt::format("{} more since the last report, only counted; ", suppressed);
  }
  out += fmt::format("every one is counted in Stats::{}, reported at most once per {}s)", info.counter, quiet_s);
  return out;
}

}  // namespace meshbus::detail
