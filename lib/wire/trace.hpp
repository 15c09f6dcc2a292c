// Trace requests and their answers (docs/protocol.md §10): how `meshbus trace` asks
// every node for the events it holds of one flow. A request is an event on
// "$meshbus.trace.request"; each node answers on the reply topic the request names
// with chunks of records, then one "done". Both payloads are MessagePack arrays,
// decoded here with every count and length bounded; nodes and tools take the names
// and the codec from this one place.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "lib/wire/common.hpp"

namespace meshbus::wire {

/// Every node subscribes to requests here.
inline constexpr std::string_view trace_request_topic = "$meshbus.trace.request";
/// Answers go to a topic under this one (the request names it).
inline constexpr std::string_view trace_reply_root = "$meshbus.trace.reply";
/// "$meshbus.trace.reply.<32 hex digits of the asking node>".
std::string trace_reply_topic(const node_id_bytes& asker);
/// `topic` is trace_reply_root, or a valid topic below it: the only topics a node
/// answers on (a request cannot make it publish anywhere else).
bool is_trace_reply_topic(std::string_view topic);

/// Decode limits (docs/protocol.md §1.1, §10).
inline constexpr std::uint32_t max_trace_records_per_chunk = 1024;
inline constexpr std::size_t max_trace_note = 1024;

struct trace_request {
  std::string correlation_id;  ///< 1-255 bytes: the flow asked for
  std::string reply_topic;     ///< is_trace_reply_topic()
  std::uint64_t request_id = 0;
  friend bool operator==(const trace_request&, const trace_request&) = default;
};

/// One event a node holds of the flow.
struct trace_record {
  std::string event_id;  ///< as Event::id() gives it (explicit, or "<publisher>-<epoch>-<sequence>")
  std::string causation_id;
  std::string correlation_id;
  std::string topic;
  std::string type_name;
  std::uint32_t type_version = 0;
  node_id_bytes publisher{};
  std::uint64_t epoch = 0;
  std::uint64_t sequence = 0;
  std::int64_t timestamp_ns = 0;  ///< when the publisher sent it, ns since the Unix epoch
  friend bool operator==(const trace_record&, const trace_record&) = default;
};

/// How completely a node answered (the "done" message).
enum class trace_status : std::uint8_t {
  complete = 0,    ///< every event it holds of the flow was sent
  truncated = 1,   ///< it holds more than it sends for one request; the rest was not sent
  incomplete = 2,  ///< part of what it holds could not be read (damaged records, ...); a
                   ///< receiver takes a status it does not know for this one
  refused = 3,     ///< too many requests: nothing was looked at
};
const char* to_string(trace_status s) noexcept;

struct trace_reply {
  enum class kind : std::uint8_t { records = 1, done = 2 };
  kind what = kind::records;
  std::uint64_t request_id = 0;
  node_id_bytes node{};   ///< the answering node
  std::string node_name;  ///< its Options::name
  // kind::records
  std::vector<trace_record> records;
  // kind::done
  std::uint64_t count = 0;  ///< records it sent in the chunks before this
  trace_status status = trace_status::complete;
  std::string note;  ///< why it is not complete, for people; may be empty
  friend bool operator==(const trace_reply&, const trace_reply&) = default;
};

bytes encode_trace_request(const trace_request& r);
/// malformed also for an empty correlation id or a reply topic outside trace_reply_root.
decode_status decode_trace_request(byte_view payload, trace_request& out);

bytes encode_trace_reply(const trace_reply& r);
decode_status decode_trace_reply(byte_view payload, trace_reply& out);
/// Bytes one record adds to a chunk, at most (for chunk size limits).
std::size_t trace_record_size_bound(const trace_record& r) noexcept;

}  // namespace meshbus::wire
