// Data frames on the PUB socket: event batches and per-topic heartbeats.
//
// Every data frame starts with the topic and a NUL so that ZeroMQ's prefix filter
// works at the publisher; then the protocol version, the frame kind and a
// MessagePack body (docs/protocol.md §3). A batch holds events of one stream,
// (publisher, epoch, topic), with contiguous sequence numbers: what the events share
// is written once, each event carries its payload and only the optional fields it has.
#pragma once

#include <span>
#include <string_view>

#include "lib/wire/common.hpp"

namespace meshbus::wire {

enum class data_kind : std::uint8_t { batch = 1, heartbeat = 2 };

inline constexpr std::size_t max_short_field = 255;     ///< ids, type name, content type
inline constexpr std::uint32_t max_headers = 64;
inline constexpr std::size_t max_header_value = 4096;
inline constexpr std::uint32_t max_batch_events = 1u << 20;
/// Elements of a batch or heartbeat header array; more than known are skipped.
inline constexpr std::uint32_t max_frame_header_fields = 32;
/// Elements of one event's array; more than its flags announce are skipped.
inline constexpr std::uint32_t max_event_fields = 64;
/// Elements of an event's type array ([name, version], then skipped ones).
inline constexpr std::uint32_t max_type_fields = 16;

/// Optional per-event fields; a flag bit says which are present, in this order.
namespace event_flag {
inline constexpr std::uint32_t timestamp = 1u << 0;  ///< int64 ns since the Unix epoch
inline constexpr std::uint32_t event_id = 1u << 1;
inline constexpr std::uint32_t type = 1u << 2;  ///< [name, version]
inline constexpr std::uint32_t correlation_id = 1u << 3;
inline constexpr std::uint32_t causation_id = 1u << 4;
inline constexpr std::uint32_t content_type = 1u << 5;
inline constexpr std::uint32_t headers = 1u << 6;  ///< map str -> str
inline constexpr std::uint32_t known = (1u << 7) - 1;
}  // namespace event_flag

struct header_view {
  std::string_view name;
  std::string_view value;
};

/// The optional fields of one event, as the publisher gives them (all views).
struct event_fields {
  std::uint32_t flags = 0;
  std::int64_t timestamp_ns = 0;
  std::string_view event_id;
  std::string_view type_name;
  std::uint32_t type_version = 0;
  std::string_view correlation_id;
  std::string_view causation_id;
  std::string_view content_type;
  std::span<const header_view> headers;
  /// Raw MessagePack map of the headers, as decoded (views into the frame).
  byte_view headers_raw;
  std::uint32_t header_count = 0;
};

/// Where the fixed-width fields of an open batch sit, to be patched when it closes,
/// and where its events begin.
struct batch_marks {
  std::size_t timestamp_at = 0;
  std::size_t count_at = 0;
  std::size_t events_at = 0;  ///< offset of the first event (batch_header::events_offset)
};

/// Starts a batch frame in `out` (which is cleared).
void begin_batch(bytes& out, std::string_view topic, const node_id_bytes& publisher,
                 std::uint64_t epoch, std::uint64_t first_seq, batch_marks& marks);
/// Appends one event; `fields` may be null for a payload-only event.
void append_event(bytes& out, byte_view payload, const event_fields* fields);
/// Writes the final count and the batch timestamp (ns since the Unix epoch).
void finish_batch(bytes& out, const batch_marks& marks, std::uint32_t count,
                  std::uint64_t timestamp_ns) noexcept;
/// Bytes an event adds to a batch, at most (for batch size limits).
std::size_t event_size_bound(std::size_t payload_size, const event_fields* fields) noexcept;

struct batch_header {
  node_id_bytes publisher{};
  std::uint64_t epoch = 0;
  std::uint64_t first_seq = 0;
  std::uint64_t timestamp_ns = 0;
  std::uint32_t count = 0;
  std::size_t events_offset = 0;  ///< offset of the first event in the frame
};

struct heartbeat {
  node_id_bytes publisher{};
  std::uint64_t epoch = 0;
  std::uint64_t last_seq = 0;  ///< 0: nothing published on the topic yet
  std::uint64_t timestamp_ns = 0;
};

/// Splits a data frame into its topic and kind; checks the version.
decode_status decode_data_prefix(byte_view frame, std::string_view& topic, data_kind& kind,
                                 std::size_t& body_offset);
/// Decodes a batch header and validates every event in it (no allocation).
decode_status decode_batch(byte_view frame, std::size_t body_offset, batch_header& out);
/// The batch header alone, events not looked at: for frames this node made itself.
decode_status decode_batch_head(byte_view frame, std::size_t body_offset, batch_header& out);
decode_status decode_heartbeat(byte_view frame, std::size_t body_offset, heartbeat& out);

bytes encode_heartbeat(std::string_view topic, const heartbeat& hb);

/// Reads the next event of a validated batch. Returns false on malformed input.
bool read_event(mp_reader& r, byte_view& payload, event_fields& fields);

/// Iterates a decoded headers map; returns false when done or malformed.
class header_iterator {
 public:
  explicit header_iterator(const event_fields& f) : reader_(f.headers_raw), left_(f.header_count) {}
  bool next(header_view& h);

 private:
  mp_reader reader_;
  std::uint32_t left_;
  bool started_ = false;
};

}  // namespace meshbus::wire
