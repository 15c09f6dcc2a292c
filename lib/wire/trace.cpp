// Trace request and answer codecs; see trace.hpp. Like control messages, these are
// rare (per request, not per event): decoding into owning structures is fine. Arrays
// may carry more elements than this revision knows (skipped); fewer is malformed.
#include "lib/wire/trace.hpp"

#include "lib/wire/envelope.hpp"
#include "lib/wire/topic.hpp"

namespace meshbus::wire {
namespace {

constexpr std::uint32_t max_message_fields = 64;  ///< elements of a request or answer array
constexpr std::uint32_t max_record_fields = 16;   ///< elements of one record array
constexpr std::uint32_t request_fields = 3;
constexpr std::uint32_t reply_head_fields = 4;  ///< kind, request id, node, node name
constexpr std::uint32_t records_fields = 5;
constexpr std::uint32_t done_fields = 7;
constexpr std::uint32_t record_fields = 10;

bool read_text(mp_reader& r, std::string& out, std::size_t max) {
  std::string_view v;
  if (!r.read_str(v, max)) return false;
  out.assign(v);
  return true;
}

bool read_node(mp_reader& r, node_id_bytes& out) {
  return r.read_fixed_bin(out.data(), out.size());
}

/// Skips what a later revision appended to an array of `n` elements of which `known` were read.
void skip_rest(mp_reader& r, std::uint32_t n, std::uint32_t known) {
  if (!r.failed() && n > known) r.skip_n(n - known);
}

void write_record(mp_writer& w, const trace_record& rec) {
  w.array(record_fields);
  w.str(rec.event_id);
  w.str(rec.causation_id);
  w.str(rec.correlation_id);
  w.str(rec.topic);
  w.str(rec.type_name);
  w.uint(rec.type_version);
  w.bin(rec.publisher.data(), rec.publisher.size());
  w.uint(rec.epoch);
  w.uint(rec.sequence);
  w.sint(rec.timestamp_ns);
}

bool read_record(mp_reader& r, trace_record& rec) {
  std::uint32_t n = 0;
  if (!r.read_array(n, max_record_fields) || n < record_fields) return r.fail();
  std::uint64_t version = 0;
  read_text(r, rec.event_id, max_short_field);
  read_text(r, rec.causation_id, max_short_field);
  read_text(r, rec.correlation_id, max_short_field);
  read_text(r, rec.topic, max_topic_length);
  read_text(r, rec.type_name, max_short_field);
  r.read_uint(version, UINT32_MAX);
  read_node(r, rec.publisher);
  r.read_uint(rec.epoch);
  r.read_uint(rec.sequence);
  r.read_sint(rec.timestamp_ns);
  skip_rest(r, n, record_fields);
  rec.type_version = static_cast<std::uint32_t>(version);
  // Every held event has an id and a topic.
  if (!r.failed() && (rec.event_id.empty() || rec.topic.empty())) r.fail();
  return !r.failed();
}

}  // namespace

std::string trace_reply_topic(const node_id_bytes& asker) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string topic(trace_reply_root);
  topic += '.';
  for (const auto b : asker) {
    topic += digits[b >> 4];
    topic += digits[b & 0xf];
  }
  return topic;
}

bool is_trace_reply_topic(std::string_view topic) {
  if (!topic.starts_with(trace_reply_root)) return false;
  const auto rest = topic.substr(trace_reply_root.size());
  if (!rest.empty() && rest.front() != '.') return false;  // "$meshbus.trace.replyX" is another topic
  return topic_error(topic, true).empty();
}

const char* to_string(trace_status s) noexcept {
  switch (s) {
    case trace_status::complete: return "complete";
    case trace_status::truncated: return "truncated";
    case trace_status::incomplete: return "incomplete";
    case trace_status::refused: return "refused";
  }
  return "incomplete";
}

bytes encode_trace_request(const trace_request& req) {
  bytes out;
  mp_writer w(out);
  w.array(request_fields);
  w.str(req.correlation_id);
  w.str(req.reply_topic);
  w.uint(req.request_id);
  return out;
}

decode_status decode_trace_request(byte_view payload, trace_request& out) {
  mp_reader r(payload);
  std::uint32_t n = 0;
  if (!r.read_array(n, max_message_fields) || n < request_fields) return decode_status::malformed;
  trace_request req;
  read_text(r, req.correlation_id, max_short_field);
  read_text(r, req.reply_topic, max_topic_length);
  r.read_uint(req.request_id);
  skip_rest(r, n, request_fields);
  if (r.failed() || !r.at_end()) return decode_status::malformed;
  if (req.correlation_id.empty() || !is_trace_reply_topic(req.reply_topic)) return decode_status::malformed;
  out = std::move(req);
  return decode_status::ok;
}

bytes encode_trace_reply(const trace_reply& rep) {
  bytes out;
  mp_writer w(out);
  const bool done = rep.what == trace_reply::kind::done;
  w.array(done ? done_fields : records_fields);
  w.uint(static_cast<std::uint8_t>(rep.what));
  w.uint(rep.request_id);
  w.bin(rep.node.data(), rep.node.size());
  w.str(rep.node_name);
  if (done) {
    w.uint(rep.count);
    w.uint(static_cast<std::uint8_t>(rep.status));
    w.str(rep.note);
  } else {
    w.array(static_cast<std::uint32_t>(rep.records.size()));
    for (const auto& rec : rep.records) write_record(w, rec);
  }
  return out;
}

decode_status decode_trace_reply(byte_view payload, trace_reply& out) {
  mp_reader r(payload);
  std::uint32_t n = 0;
  if (!r.read_array(n, max_message_fields) || n < reply_head_fields) return decode_status::malformed;
  trace_reply rep;
  std::uint64_t kind = 0;
  r.read_uint(kind, 255);
  r.read_uint(rep.request_id);
  read_node(r, rep.node);
  read_text(r, rep.node_name, max_short_field);
  if (r.failed()) return decode_status::malformed;
  if (kind == static_cast<std::uint8_t>(trace_reply::kind::records)) {
    if (n < records_fields) return decode_status::malformed;
    rep.what = trace_reply::kind::records;
    std::uint32_t count = 0;
    if (!r.read_array(count, max_trace_records_per_chunk)) return decode_status::malformed;
    // Each record takes at least 20 bytes: a count the rest cannot hold is refused
    // before anything is allocated for it.
    if (count > r.remaining() / 20) return decode_status::malformed;
    rep.records.resize(count);
    for (auto& rec : rep.records) {
      if (!read_record(r, rec)) return decode_status::malformed;
    }
    skip_rest(r, n, records_fields);
  } else if (kind == static_cast<std::uint8_t>(trace_reply::kind::done)) {
    if (n < done_fields) return decode_status::malformed;
    rep.what = trace_reply::kind::done;
    std::uint64_t status = 0;
    r.read_uint(rep.count);
    r.read_uint(status, 255);
    read_text(r, rep.note, max_trace_note);
    skip_rest(r, n, done_fields);
    rep.status = status <= static_cast<std::uint8_t>(trace_status::refused)
                     ? static_cast<trace_status>(status)
                     : trace_status::incomplete;
  } else {
    return decode_status::malformed;  // an unknown kind
  }
  if (r.failed() || !r.at_end()) return decode_status::malformed;
  out = std::move(rep);
  return decode_status::ok;
}

std::size_t trace_record_size_bound(const trace_record& rec) noexcept {
  // The array header (1 byte), five strings and their headers (at most 3 bytes each
  // for 255-byte strings), the publisher's bin (2 + 16) and four integers of at most 9
  // bytes, with a margin.
  constexpr std::size_t fixed = 1 + 5 * 3 + 2 + 4 * 9 + 5;
  return fixed + rec.event_id.size() + rec.causation_id.size() + rec.correlation_id.size() + rec.topic.size() +
         rec.type_name.size() + rec.publisher.size();
}

}  // namespace meshbus::wire
