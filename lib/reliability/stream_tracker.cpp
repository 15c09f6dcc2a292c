// Receive-side sequence accounting; see stream_tracker.hpp.
#include "lib/reliability/stream_tracker.hpp"

namespace meshbus::reliability {

batch_verdict accept_batch(stream_position& pos, std::uint64_t first_seq, std::uint32_t count) noexcept {
  batch_verdict v;
  const std::uint64_t end = first_seq + count;  // one past the last
  if (pos.next_expected == 0) {
    pos.next_expected = end;
    return v;
  }
  if (end <= pos.next_expected) {
    v.duplicates = count;
    return v;
  }
  if (first_seq > pos.next_expected) {
    v.missing = first_seq - pos.next_expected;
  } else {
    v.duplicates = static_cast<std::uint32_t>(pos.next_expected - first_seq);
  }
  pos.next_expected = end;
  return v;
}

std::uint64_t accept_heartbeat(stream_position& pos, std::uint64_t last_seq) noexcept {
  if (pos.next_expected == 0 || last_seq < pos.next_expected) return 0;
  const auto missing = last_seq + 1 - pos.next_expected;
  pos.next_expected = last_seq + 1;
  return missing;
}

}  // namespace meshbus::reliability
