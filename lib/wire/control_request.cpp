// Body codecs of request/reply (docs/protocol.md §4, §8): REQUEST and REPLY, and of
// the node reports (§11): STATUS_REQUEST and STATUS_REPLY. The
// payload is a bin bounded only by the message size (ZMQ_MAXMSGSIZE); every other
// field has its own limit.
#include "lib/wire/control_codec.hpp"
#include "lib/wire/envelope.hpp"
#include "lib/wire/topic.hpp"

namespace meshbus::wire::detail {

void body_codec<request_msg>::write(mp_writer& w, const request_msg& m) {
  w.uint(m.id);
  w.str(m.service);
  w.uint(m.timeout_ms);
  w.str(m.type_name);
  w.uint(m.type_version);
  w.str(m.correlation_id);
  w.str(m.causation_id);
  w.bin(m.payload.data(), m.payload.size());
}

void body_codec<request_msg>::read(mp_reader& r, request_msg& m) {
  std::uint64_t version = 0;
  r.read_uint(m.id);
  read_string(r, m.service, max_topic_length);
  r.read_uint(m.timeout_ms);
  read_string(r, m.type_name, max_short_field);
  r.read_uint(version, UINT32_MAX);
  read_string(r, m.correlation_id, max_short_field);
  read_string(r, m.causation_id, max_short_field);
  read_payload(r, m.payload);
  m.type_version = static_cast<std::uint32_t>(version);
}

void body_codec<reply_msg>::write(mp_writer& w, const reply_msg& m) {
  w.uint(m.id);
  w.uint(static_cast<std::uint8_t>(m.status));
  w.str(m.message);
  w.str(m.type_name);
  w.uint(m.type_version);
  w.bin(m.payload.data(), m.payload.size());
}

void body_codec<reply_msg>::read(mp_reader& r, reply_msg& m) {
  std::uint64_t status = 0;
  std::uint64_t version = 0;
  r.read_uint(m.id);
  r.read_uint(status, 3);
  read_string(r, m.message, max_header_value);
  read_string(r, m.type_name, max_short_field);
  r.read_uint(version, UINT32_MAX);
  read_payload(r, m.payload);
  m.status = static_cast<reply_status>(status);
  m.type_version = static_cast<std::uint32_t>(version);
}

void body_codec<status_request_msg>::write(mp_writer& w, const status_request_msg& m) { w.uint(m.id); }

void body_codec<status_request_msg>::read(mp_reader& r, status_request_msg& m) { r.read_uint(m.id); }

void body_codec<status_reply_msg>::write(mp_writer& w, const status_reply_msg& m) {
  w.uint(m.id);
  w.bin(m.report.data(), m.report.size());
}

void body_codec<status_reply_msg>::read(mp_reader& r, status_reply_msg& m) {
  r.read_uint(m.id);
  read_payload(r, m.report);
}

}  // namespace meshbus::wire::detail
