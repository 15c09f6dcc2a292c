// Data frame codec. The batch writer is called on the publisher's hot path with one
// reserve per batch; the reader validates a whole batch in one pass without
// allocating, after which read_event cannot fail on the same bytes.
#include "lib/wire/envelope.hpp"

#include <cstring>

namespace meshbus::wire {
namespace {

// Bits set among the known flags (7 bits); std::popcount is a libgcc call without -mpopcnt.
constexpr std::uint32_t count_known(std::uint32_t flags) {
  std::uint32_t n = 0;
  for (flags &= event_flag::known; flags != 0; flags &= flags - 1) ++n;
  return n;
}

constexpr std::size_t data_prefix_size(std::size_t topic_size) { return topic_size + 3; }

void write_prefix(mp_writer& w, std::string_view topic, data_kind kind) {
  w.raw(topic.data(), topic.size());
  w.raw_byte(0);
  w.raw_byte(protocol_version);
  w.raw_byte(static_cast<std::uint8_t>(kind));
}

}  // namespace

void begin_batch(bytes& out, std::string_view topic, const node_id_bytes& publisher,
                 std::uint64_t epoch, std::uint64_t first_seq, batch_marks& marks) {
  out.clear();
  mp_writer w(out);
  write_prefix(w, topic, data_kind::batch);
  w.array(5);
  w.bin(publisher.data(), publisher.size());
  w.uint(epoch);
  w.uint(first_seq);
  marks.timestamp_at = w.uint64_fixed(0);
  marks.count_at = w.uint32_fixed(0);
  marks.events_at = out.size();
}

std::size_t event_size_bound(std::size_t payload_size, const event_fields* f) noexcept {
  std::size_t n = 1 + 5 + 5 + payload_size;
  if (f == nullptr) return n;
  n += 9 + 5 * 6;
  n += f->event_id.size() + f->type_name.size() + f->correlation_id.size() +
       f->causation_id.size() + f->content_type.size();
  for (const auto& h : f->headers) n += 10 + h.name.size() + h.value.size();
  return n;
}

void append_event(bytes& out, byte_view payload, const event_fields* f) {
  mp_writer w(out);
  const std::uint32_t flags = f != nullptr ? (f->flags & event_flag::known) : 0;
  w.array(2 + count_known(flags));
  w.uint(flags);
  w.bin(payload);
  if (flags == 0) return;
  if (flags & event_flag::timestamp) w.sint(f->timestamp_ns);
  if (flags & event_flag::event_id) w.str(f->event_id);
  if (flags & event_flag::type) {
    w.array(2);
    w.str(f->type_name);
    w.uint(f->type_version);
  }
  if (flags & event_flag::correlation_id) w.str(f->correlation_id);
  if (flags & event_flag::causation_id) w.str(f->causation_id);
  if (flags & event_flag::content_type) w.str(f->content_type);
  if (flags & event_flag::headers) {
    w.map(static_cast<std::uint32_t>(f->headers.size()));
    for (const auto& h : f->headers) {
      w.str(h.name);
      w.str(h.value);
    }
  }
}

void finish_batch(bytes& out, const batch_marks& marks, std::uint32_t count,
                  std::uint64_t timestamp_ns) noexcept {
  mp_writer::patch_uint64(out, marks.timestamp_at, timestamp_ns);
  mp_writer::patch_uint32(out, marks.count_at, count);
}

decode_status decode_data_prefix(byte_view frame, std::string_view& topic, data_kind& kind,
                                 std::size_t& body_offset) {
  if (frame.empty()) return decode_status::malformed;
  const auto limit = std::min(frame.size(), std::size_t{256});
  const void* nul = std::memchr(frame.data(), 0, limit);
  if (nul == nullptr) return decode_status::malformed;
  const auto topic_size =
      static_cast<std::size_t>(static_cast<const std::uint8_t*>(nul) - frame.data());
  if (topic_size == 0 || frame.size() < data_prefix_size(topic_size)) {
    return decode_status::malformed;
  }
  if (frame[topic_size + 1] != protocol_version) return decode_status::unsupported_version;
  const auto k = frame[topic_size + 2];
  if (k != static_cast<std::uint8_t>(data_kind::batch) &&
      k != static_cast<std::uint8_t>(data_kind::heartbeat)) {
    return decode_status::malformed;
  }
  topic = std::string_view(reinterpret_cast<const char*>(frame.data()), topic_size);
  kind = static_cast<data_kind>(k);
  body_offset = data_prefix_size(topic_size);
  return decode_status::ok;
}

bool read_event(mp_reader& r, byte_view& payload, event_fields& f) {
  // Fast path for the common payload-only event: fixarray(2), flags 0, bin8 payload.
  const auto rest = r.rest();
  if (rest.size() >= 4 && rest[0] == 0x92 && rest[1] == 0x00 && rest[2] == 0xc4 &&
      rest.size() >= 4u + rest[3]) {
    payload = rest.subspan(4, rest[3]);
    r.advance(4u + rest[3]);
    if (f.flags != 0) f = event_fields{};
    return true;
  }
  std::uint32_t n = 0;
  std::uint64_t flags = 0;
  if (!r.read_array(n, max_event_fields) || n < 2 || !r.read_uint(flags, UINT32_MAX)) return r.fail();
  if (!r.read_bin(payload, SIZE_MAX)) return false;
  f = event_fields{};
  f.flags = static_cast<std::uint32_t>(flags);
  const std::uint32_t known = f.flags & event_flag::known;
  if (n < 2u + count_known(known)) return r.fail();
  std::uint32_t used = 2;
  if (known & event_flag::timestamp) {
    r.read_sint(f.timestamp_ns);
    ++used;
  }
  if (known & event_flag::event_id) {
    r.read_str(f.event_id, max_short_field);
    ++used;
  }
  if (known & event_flag::type) {
    std::uint32_t tn = 0;
    std::uint64_t version = 0;
    if (r.read_array(tn, max_type_fields) && tn >= 2) {
      r.read_str(f.type_name, max_short_field);
      r.read_uint(version, UINT32_MAX);
      r.skip_n(tn - 2);
    } else {
      r.fail();
    }
    f.type_version = static_cast<std::uint32_t>(version);
    ++used;
  }
  if (known & event_flag::correlation_id) {
    r.read_str(f.correlation_id, max_short_field);
    ++used;
  }
  if (known & event_flag::causation_id) {
    r.read_str(f.causation_id, max_short_field);
    ++used;
  }
  if (known & event_flag::content_type) {
    r.read_str(f.content_type, max_short_field);
    ++used;
  }
  if (known & event_flag::headers) {
    std::uint32_t hn = 0;
    const auto start = r.position();
    const auto all = r.rest();
    if (r.read_map(hn, max_headers)) {
      for (std::uint32_t i = 0; i < hn; ++i) {
        std::string_view k, v;
        r.read_str(k, max_short_field);
        r.read_str(v, max_header_value);
      }
    }
    f.header_count = hn;
    f.headers_raw = all.subspan(0, r.position() - start);
    ++used;
  }
  // Fields of a later minor revision are skipped.
  if (!r.failed() && n > used) r.skip_n(n - used);
  return !r.failed();
}

decode_status decode_batch(byte_view frame, std::size_t body_offset, batch_header& out) {
  batch_header h;
  if (decode_batch_head(frame, body_offset, h) != decode_status::ok) return decode_status::malformed;
  mp_reader r(frame.subspan(h.events_offset));
  byte_view payload;
  event_fields fields;
  for (std::uint32_t i = 0; i < h.count; ++i) {
    if (!read_event(r, payload, fields)) return decode_status::malformed;
  }
  if (!r.at_end()) return decode_status::malformed;
  out = h;
  return decode_status::ok;
}

decode_status decode_batch_head(byte_view frame, std::size_t body_offset, batch_header& out) {
  mp_reader r(frame.subspan(body_offset));
  std::uint32_t n = 0;
  std::uint64_t count = 0;
  batch_header h;
  r.read_array(n, max_frame_header_fields);
  if (n < 5) r.fail();
  r.read_fixed_bin(h.publisher.data(), h.publisher.size());
  r.read_uint(h.epoch);
  r.read_uint(h.first_seq);
  r.read_uint(h.timestamp_ns);
  r.read_uint(count, max_batch_events);
  if (!r.failed() && n > 5) r.skip_n(n - 5);
  if (r.failed() || count == 0 || h.first_seq == 0 || h.first_seq + count < h.first_seq) {
    return decode_status::malformed;
  }
  h.count = static_cast<std::uint32_t>(count);
  h.events_offset = body_offset + r.position();
  out = h;
  return decode_status::ok;
}

bytes encode_heartbeat(std::string_view topic, const heartbeat& hb) {
  bytes out;
  out.reserve(topic.size() + 48);
  mp_writer w(out);
  write_prefix(w, topic, data_kind::heartbeat);
  w.array(4);
  w.bin(hb.publisher.data(), hb.publisher.size());
  w.uint(hb.epoch);
  w.uint(hb.last_seq);
  w.uint(hb.timestamp_ns);
  return out;
}

decode_status decode_heartbeat(byte_view frame, std::size_t body_offset, heartbeat& out) {
  mp_reader r(frame.subspan(body_offset));
  std::uint32_t n = 0;
  heartbeat hb;
  r.read_array(n, max_frame_header_fields);
  if (n < 4) r.fail();
  r.read_fixed_bin(hb.publisher.data(), hb.publisher.size());
  r.read_uint(hb.epoch);
  r.read_uint(hb.last_seq);
  r.read_uint(hb.timestamp_ns);
  if (!r.failed() && n > 4) r.skip_n(n - 4);
  if (r.failed() || !r.at_end()) return decode_status::malformed;
  out = hb;
  return decode_status::ok;
}

bool header_iterator::next(header_view& h) {
  if (!started_) {
    started_ = true;
    std::uint32_t n = 0;
    if (left_ == 0 || !reader_.read_map(n, max_headers)) return false;
  }
  if (left_ == 0) return false;
  --left_;
  return reader_.read_str(h.name, max_short_field) && reader_.read_str(h.value, max_header_value);
}

}  // namespace meshbus::wire
