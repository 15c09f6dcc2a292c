// Per-stream sequence tracking on the receive side (no I/O, no clock).
//
// A stream is (publisher, epoch, topic); its sequence numbers start at 1 and are
// contiguous. For each arriving batch the tracker says how many leading events are
// duplicates and how many events were skipped over (a gap). Repair of gaps builds
// on this in the reliability layer; here gaps are only detected and counted.
#pragma once

#include <cstdint>

namespace meshbus::reliability {

struct stream_position {
  std::uint64_t next_expected = 0;  ///< 0: nothing received yet
};

struct batch_verdict {
  std::uint32_t duplicates = 0;  ///< leading events already received
  std::uint64_t missing = 0;     ///< events skipped over before this batch
};

/// Accounts for a batch [first_seq, first_seq + count) of the stream.
batch_verdict accept_batch(stream_position& pos, std::uint64_t first_seq, std::uint32_t count) noexcept;

/// A heartbeat says the publisher's last sequence; returns how many events are
/// missing at the tail (and moves past them).
std::uint64_t accept_heartbeat(stream_position& pos, std::uint64_t last_seq) noexcept;

}  // namespace meshbus::reliability
