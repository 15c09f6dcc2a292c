// Control message framing: the version and kind bytes, then the body written by the
// kind's body_codec (control_peer.cpp, control_stream.cpp, control_request.cpp).
// Messages are rare (per peer, not per event), so decoding into owning structures is
// fine; the body array and every count and length in it are bounded.
#include "lib/wire/control.hpp"

#include <cstring>

#include "lib/wire/control_codec.hpp"

namespace meshbus::wire {
namespace {

template <class Message>
decode_status decode_body(mp_reader& r, control_msg& out) {
  using codec = detail::body_codec<Message>;
  std::uint32_t n = 0;
  if (!r.read_array(n, max_body_fields) || n < codec::fields) return decode_status::malformed;
  Message m;
  codec::read(r, m);
  if (!r.failed() && n > codec::fields) r.skip_n(n - codec::fields);  // a later revision's fields
  if (r.failed() || !r.at_end()) return decode_status::malformed;
  out = std::move(m);
  return decode_status::ok;
}

}  // namespace

bytes encode_control(const control_msg& msg) {
  bytes out;
  out.reserve(128);
  mp_writer w(out);
  w.raw_byte(protocol_version);
  std::visit(
      [&w](const auto& m) {
        using codec = detail::body_codec<std::decay_t<decltype(m)>>;
        w.raw_byte(static_cast<std::uint8_t>(codec::kind));
        w.array(codec::fields);
        codec::write(w, m);
      },
      msg);
  return out;
}

decode_status decode_control(byte_view frame, control_msg& out) {
  if (frame.size() < 2) return decode_status::malformed;
  if (frame[0] != protocol_version) return decode_status::unsupported_version;
  mp_reader r(frame.subspan(2));
  switch (static_cast<control_kind>(frame[1])) {
    case control_kind::hello: return decode_body<hello_msg>(r, out);
    case control_kind::subscriptions: return decode_body<subscriptions_msg>(r, out);
    case control_kind::ready: return decode_body<ready_msg>(r, out);
    case control_kind::ping: return decode_body<ping_msg>(r, out);
    case control_kind::goodbye: return decode_body<goodbye_msg>(r, out);
    case control_kind::nack: return decode_body<nack_msg>(r, out);
    case control_kind::ack: return decode_body<ack_msg>(r, out);
    case control_kind::repair: return decode_body<repair_msg>(r, out);
    case control_kind::loss: return decode_body<loss_msg>(r, out);
    case control_kind::assign: return decode_body<assign_msg>(r, out);
    case control_kind::request: return decode_body<request_msg>(r, out);
    case control_kind::reply: return decode_body<reply_msg>(r, out);
    case control_kind::status_request: return decode_body<status_request_msg>(r, out);
    case control_kind::status_reply: return decode_body<status_reply_msg>(r, out);
  }
  return decode_status::malformed;  // an unknown kind
}

bool has_data_frame(const control_msg& msg) noexcept {
  return std::holds_alternative<repair_msg>(msg) || std::holds_alternative<assign_msg>(msg);
}

std::string routing_id(const node_id_bytes& id) {
  std::string rid(1, static_cast<char>(routing_id_marker));
  rid.append(reinterpret_cast<const char*>(id.data()), id.size());
  return rid;
}

bool decode_routing_id(byte_view rid, node_id_bytes& out) noexcept {
  if (rid.size() != routing_id_size || rid[0] != routing_id_marker) return false;
  std::memcpy(out.data(), rid.data() + 1, out.size());
  return true;
}

std::string group_stream_name(std::string_view group) {
  std::string name(group_stream_prefix);
  name.append(group);
  return name;
}

bool is_group_stream(std::string_view topic) noexcept {
  return topic.substr(0, group_stream_prefix.size()) == group_stream_prefix;
}

std::string_view group_of_stream(std::string_view topic) noexcept {
  return is_group_stream(topic) ? topic.substr(group_stream_prefix.size()) : std::string_view();
}

}  // namespace meshbus::wire
