// Background fault kinds and their rate-limited reporting.
//
// One list (MESHBUS_FAULTS) gives each kind its name, the errc Options::on_error gets,
// the Stats counter that counts every occurrence, and a hint for the log line. A
// cause is reported (log and on_error) at most once per quiet period; what comes
// meanwhile is only counted, and the next report says how much that was. No clock of
// its own: `now` is a parameter.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

#include "meshbus/error.hpp"
#include "meshbus/stats.hpp"

namespace meshbus::detail {

// X(name, errc, Stats counter, hint)
// clang-format off
#define MESHBUS_FAULTS(X)                                                                                     \
  X(malformed_beacon, malformed_input, malformed_beacons,                                                     \
    "a broken or foreign sender on the beacon port")                                                          \
  X(unsupported_beacon, malformed_input, unsupported_beacons, "a node of another meshbus protocol version")   \
  X(malformed_data, malformed_input, malformed_messages, "a broken or foreign publisher")                     \
  X(unsupported_data, malformed_input, unsupported_messages, "a node of another meshbus protocol version")    \
  X(malformed_control, malformed_input, malformed_messages, "a broken or foreign peer")                       \
  X(unsupported_control, malformed_input, unsupported_messages, "a node of another meshbus protocol version") \
  X(unknown_sender, malformed_input, unknown_senders, "something other than a meshbus node reached the ROUTER port") \
  X(malformed_trace_request, malformed_input, malformed_trace_requests, "a broken or foreign trace client")    \
  X(handler_exception, handler_failed, handler_errors, "the node goes on; acknowledged subscriptions retry")   \
  X(sent_past_gone, peer_overloaded, sent_past_gone, "")                                                      \
  X(control_send_failure, peer_overloaded, control_send_failures, "its timer sends it again")                 \
  X(sequence_gap, data_loss, events_lost, "the loss handler gets a notice")                                   \
  X(dead_letter, handler_failed, dead_letters, "see Node::dead_letters()")                                    \
  X(group_conflict, group_conflict, group_conflicts, "every member of a group must subscribe the same patterns") \
  X(unknown_start, data_loss, unknown_starts, "")                                                             \
  X(subscriber_gone_unacknowledged, data_loss, subscribers_gone_unacknowledged, "flush() reports it too")     \
  X(store_failure, storage, store_failures, "publish() returns store_failed until the log can be written again") \
  X(store_damage, storage, store_damaged, "the damaged events are reported lost to those who ask for them")
// clang-format on

enum class fault : std::uint8_t {
#define MESHBUS_DETAIL_FAULT_ENUM(name, code, counter, hint) name,
  MESHBUS_FAULTS(MESHBUS_DETAIL_FAULT_ENUM)
#undef MESHBUS_DETAIL_FAULT_ENUM
};

inline constexpr std::size_t fault_count = 0
#define MESHBUS_DETAIL_FAULT_COUNT(name, code, counter, hint) +1
    MESHBUS_FAULTS(MESHBUS_DETAIL_FAULT_COUNT)
#undef MESHBUS_DETAIL_FAULT_COUNT
    ;

/// What the list says of one fault kind.
struct fault_info {
  std::string_view name;     ///< e.g. "malformed_beacon"
  errc code;                 ///< what Options::on_error gets
  std::string_view counter;  ///< the Stats field that counts every occurrence
  std::string_view hint;     ///< a cause or what happens next, for the log; may be empty
};

// `&Stats::counter` makes a counter name that is not a Stats field a compile error.
inline constexpr std::array<fault_info, fault_count> fault_infos = {{
#define MESHBUS_DETAIL_FAULT_INFO(name, code, counter, hint) \
  {#name, errc::code, ((void)&Stats::counter, std::string_view(#counter)), hint},
    MESHBUS_FAULTS(MESHBUS_DETAIL_FAULT_INFO)
#undef MESHBUS_DETAIL_FAULT_INFO
}};

constexpr const fault_info& info_of(fault f) noexcept { return fault_infos[static_cast<std::size_t>(f)]; }
/// The code a fault is reported to Options::on_error with.
constexpr errc code_of(fault f) noexcept { return info_of(f).code; }
constexpr std::string_view name_of(fault f) noexcept { return info_of(f).name; }

/// Rate-limits reports per fault kind: the first occurrence is reported, then at most
/// one per quiet period. Any thread (lock-free).
class fault_log {
 public:
  using clock = std::chrono::steady_clock;
  static constexpr clock::duration default_quiet = std::chrono::seconds(10);

  explicit fault_log(clock::duration quiet = default_quiet) noexcept : quiet_(quiet) {}

  /// An occurrence of `f` at `now`. When it is to be reported, returns how many
  /// occurrences were only counted since the last report; otherwise nothing (it is
  /// counted as suppressed).
  std::optional<std::uint64_t> admit(fault f, clock::time_point now) noexcept;

  /// The log line (and on_error text) for `message`, an occurrence of `f`, after
  /// `suppressed` unreported ones.
  std::string describe(fault f, std::string_view message, std::uint64_t suppressed) const;

  clock::duration quiet() const noexcept { return quiet_; }

 private:
  struct slot {
    /// Nanoseconds since the clock's epoch before which `f` is not reported again.
    std::atomic<std::int64_t> next{std::numeric_limits<std::int64_t>::min()};
    std::atomic<std::uint64_t> suppressed{0};
  };
  clock::duration quiet_;
  std::array<slot, fault_count> slots_{};
};

}  // namespace meshbus::detail
