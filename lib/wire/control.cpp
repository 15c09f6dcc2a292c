// Control message codec. These messages are rare (per peer, not per event), so
// decoding into owning structures is fine; every count and length is bounded.
#include "lib/wire/control.hpp"

#include "lib/wire/envelope.hpp"
#include "lib/wire/topic.hpp"

namespace meshbus::wire {
namespace {

void write_peers(mp_writer& w, const std::vector<peer_address>& peers) {
  w.array(static_cast<std::uint32_t>(peers.size()));
  for (const auto& p : peers) {
    w.array(4);
    w.bin(p.id.data(), p.id.size());
    w.str(p.host);
    w.uint(p.router_port);
    w.uint(p.pub_port);
  }
}

void write_patterns(mp_writer& w, const std::vector<pattern_spec>& v) {
  w.array(static_cast<std::uint32_t>(v.size()));
  for (const auto& p : v) {
    w.array(3);
    w.str(p.pattern);
    w.uint(p.mode);
    w.str(p.group);
  }
}

bool read_string(mp_reader& r, std::string& out, std::size_t max) {
  std::string_view v;
  if (!r.read_str(v, max)) return false;
  out.assign(v);
  return true;
}

// [topic, sequence] pairs: READY positions and ACKs.
void write_topic_seqs(mp_writer& w, const std::vector<std::pair<std::string, std::uint64_t>>& v) {
  w.array(static_cast<std::uint32_t>(v.size()));
  for (const auto& [topic, seq] : v) {
    w.array(2);
    w.str(topic);
    w.uint(seq);
  }
}

bool read_topic_seqs(mp_reader& r, std::uint32_t max, std::vector<std::pair<std::string, std::uint64_t>>& out) {
  std::uint32_t n = 0;
  if (!r.read_array(n, max)) return false;
  out.reserve(n);
  for (std::uint32_t i = 0; i < n && !r.failed(); ++i) {
    std::uint32_t fields = 0;
    std::string topic;
    std::uint64_t seq = 0;
    if (!r.read_array(fields, 16) || fields < 2) return r.fail();
    read_string(r, topic, max_topic_length);
    r.read_uint(seq);
    r.skip_n(fields - 2);
    out.emplace_back(std::move(topic), seq);
  }
  return !r.failed();
}

bool read_port(mp_reader& r, std::uint16_t& port) {
  std::uint64_t v = 0;
  if (!r.read_uint(v, 0xffff)) return false;
  port = static_cast<std::uint16_t>(v);
  return true;
}

bool read_peers(mp_reader& r, std::vector<peer_address>& out) {
  std::uint32_t n = 0;
  if (!r.read_array(n, max_gossip_peers)) return false;
  out.clear();
  out.reserve(n);
  for (std::uint32_t i = 0; i < n; ++i) {
    std::uint32_t fields = 0;
    peer_address p;
    if (!r.read_array(fields, 16) || fields < 4) return r.fail();
    r.read_fixed_bin(p.id.data(), p.id.size());
    read_string(r, p.host, 255);
    read_port(r, p.router_port);
    read_port(r, p.pub_port);
    r.skip_n(fields - 4);
    if (r.failed()) return false;
    out.push_back(std::move(p));
  }
  return true;
}

void write_services(mp_writer& w, const std::vector<std::string>& v) {
  w.array(static_cast<std::uint32_t>(v.size()));
  for (const auto& name : v) w.str(name);
}

bool read_services(mp_reader& r, std::vector<std::string>& out) {
  std::uint32_t n = 0;
  if (!r.read_array(n, max_services)) return false;
  out.clear();
  for (std::uint32_t i = 0; i < n; ++i) {
    std::string name;
    if (!read_string(r, name, max_topic_length)) return false;
    out.push_back(std::move(name));
  }
  return true;
}

bool read_patterns(mp_reader& r, std::vector<pattern_spec>& out) {
  std::uint32_t n = 0;
  if (!r.read_array(n, max_patterns)) return false;
  out.clear();
  out.reserve(n);
  for (std::uint32_t i = 0; i < n; ++i) {
    std::uint32_t fields = 0;
    pattern_spec p;
    std::uint64_t mode = 0;
    if (!r.read_array(fields, 16) || fields < 2) return r.fail();
    read_string(r, p.pattern, max_topic_length);
    r.read_uint(mode, 2);
    if (fields >= 3) read_string(r, p.group, max_topic_length);
    r.skip_n(fields - std::min<std::uint32_t>(fields, 3));
    if (r.failed()) return false;
    p.mode = static_cast<std::uint8_t>(mode);
    out.push_back(std::move(p));
  }
  return true;
}

// Reads the array header of a body and checks it has at least `min` fields.
bool open_body(mp_reader& r, std::uint32_t min, std::uint32_t& n) {
  return r.read_array(n, 64) && (n >= min || r.fail());
}

}  // namespace

bytes encode_control(const control_msg& msg) {
  bytes out;
  out.reserve(128);
  mp_writer w(out);
  w.raw_byte(protocol_version);
  std::visit(
      [&](const auto& m) {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, hello_msg>) {
          w.raw_byte(static_cast<std::uint8_t>(control_kind::hello));
          w.array(12);
          w.bin(m.node_id.data(), m.node_id.size());
          w.uint(m.epoch);
          w.str(m.cluster);
          w.str(m.name);
          w.uint(m.router_port);
          w.uint(m.pub_port);
          w.map(static_cast<std::uint32_t>(m.metadata.size()));
          for (const auto& [k, v] : m.metadata) {
            w.str(k);
            w.str(v);
          }
          w.uint(m.sub_generation);
          write_patterns(w, m.patterns);
          write_peers(w, m.peers);
          w.uint(0);  // reserved flags
          write_services(w, m.services);
        } else if constexpr (std::is_same_v<T, subscriptions_msg>) {
          w.raw_byte(static_cast<std::uint8_t>(control_kind::subscriptions));
          w.array(3);
          w.uint(m.generation);
          write_patterns(w, m.patterns);
          write_services(w, m.services);
        } else if constexpr (std::is_same_v<T, ready_msg>) {
          w.raw_byte(static_cast<std::uint8_t>(control_kind::ready));
          w.array(2);
          w.uint(m.generation);
          write_topic_seqs(w, m.positions);
        } else if constexpr (std::is_same_v<T, ping_msg>) {
          w.raw_byte(static_cast<std::uint8_t>(control_kind::ping));
          w.array(4);
          w.uint(m.epoch);
          w.uint(m.router_port);
          w.uint(m.pub_port);
          write_peers(w, m.peers);
        } else if constexpr (std::is_same_v<T, goodbye_msg>) {
          w.raw_byte(static_cast<std::uint8_t>(control_kind::goodbye));
          w.array(0);
        } else if constexpr (std::is_same_v<T, nack_msg>) {
          w.raw_byte(static_cast<std::uint8_t>(control_kind::nack));
          w.array(3);
          w.uint(m.epoch);
          w.str(m.topic);
          w.array(static_cast<std::uint32_t>(m.ranges.size()));
          for (const auto& [from, to] : m.ranges) {
            w.array(2);
            w.uint(from);
            w.uint(to);
          }
        } else if constexpr (std::is_same_v<T, ack_msg>) {
          w.raw_byte(static_cast<std::uint8_t>(control_kind::ack));
          w.array(2);
          w.uint(m.epoch);
          write_topic_seqs(w, m.acks);
        } else if constexpr (std::is_same_v<T, repair_msg>) {
          w.raw_byte(static_cast<std::uint8_t>(control_kind::repair));
          w.array(1);
          w.uint(m.epoch);
        } else if constexpr (std::is_same_v<T, loss_msg>) {
          w.raw_byte(static_cast<std::uint8_t>(control_kind::loss));
          w.array(4);
          w.uint(m.epoch);
          w.str(m.topic);
          w.uint(m.from);
          w.uint(m.to);
        } else if constexpr (std::is_same_v<T, assign_msg>) {
          w.raw_byte(static_cast<std::uint8_t>(control_kind::assign));
          w.array(3);
          w.uint(m.epoch);
          w.str(m.group);
          w.uint(m.seq);
        } else if constexpr (std::is_same_v<T, request_msg>) {
          w.raw_byte(static_cast<std::uint8_t>(control_kind::request));
          w.array(8);
          w.uint(m.id);
          w.str(m.service);
          w.uint(m.timeout_ms);
          w.str(m.type_name);
          w.uint(m.type_version);
          w.str(m.correlation_id);
          w.str(m.causation_id);
          w.bin(m.payload.data(), m.payload.size());
        } else {
          static_assert(std::is_same_v<T, reply_msg>);
          w.raw_byte(static_cast<std::uint8_t>(control_kind::reply));
          w.array(6);
          w.uint(m.id);
          w.uint(static_cast<std::uint8_t>(m.status));
          w.str(m.message);
          w.str(m.type_name);
          w.uint(m.type_version);
          w.bin(m.payload.data(), m.payload.size());
        }
      },
      msg);
  return out;
}

decode_status decode_control(byte_view frame, control_msg& out) {
  if (frame.size() < 2) return decode_status::malformed;
  if (frame[0] != protocol_version) return decode_status::unsupported_version;
  mp_reader r(frame.subspan(2));
  std::uint32_t n = 0;
  std::uint32_t known = 0;
  switch (static_cast<control_kind>(frame[1])) {
    case control_kind::hello: {
      hello_msg m;
      known = 12;
      if (!open_body(r, known, n)) return decode_status::malformed;
      r.read_fixed_bin(m.node_id.data(), m.node_id.size());
      r.read_uint(m.epoch);
      read_string(r, m.cluster, 255);
      read_string(r, m.name, 255);
      read_port(r, m.router_port);
      read_port(r, m.pub_port);
      std::uint32_t mn = 0;
      if (r.read_map(mn, max_metadata)) {
        for (std::uint32_t i = 0; i < mn && !r.failed(); ++i) {
          std::string k, v;
          read_string(r, k, 255);
          read_string(r, v, max_metadata_value);
          m.metadata.emplace_back(std::move(k), std::move(v));
        }
      }
      r.read_uint(m.sub_generation);
      read_patterns(r, m.patterns);
      read_peers(r, m.peers);
      std::uint64_t flags = 0;
      r.read_uint(flags);
      read_services(r, m.services);
      if (m.router_port == 0 || m.pub_port == 0) r.fail();
      out = std::move(m);
      break;
    }
    case control_kind::subscriptions: {
      subscriptions_msg m;
      known = 3;
      if (!open_body(r, known, n)) return decode_status::malformed;
      r.read_uint(m.generation);
      read_patterns(r, m.patterns);
      read_services(r, m.services);
      out = std::move(m);
      break;
    }
    case control_kind::ready: {
      ready_msg m;
      known = 2;
      if (!open_body(r, known, n)) return decode_status::malformed;
      r.read_uint(m.generation);
      read_topic_seqs(r, max_positions, m.positions);
      out = std::move(m);
      break;
    }
    case control_kind::ping: {
      ping_msg m;
      known = 4;
      if (!open_body(r, known, n)) return decode_status::malformed;
      r.read_uint(m.epoch);
      read_port(r, m.router_port);
      read_port(r, m.pub_port);
      read_peers(r, m.peers);
      if (m.router_port == 0 || m.pub_port == 0) r.fail();
      out = std::move(m);
      break;
    }
    case control_kind::goodbye:
      known = 0;
      if (!open_body(r, known, n)) return decode_status::malformed;
      out = goodbye_msg{};
      break;
    case control_kind::nack: {
      nack_msg m;
      known = 3;
      if (!open_body(r, known, n)) return decode_status::malformed;
      r.read_uint(m.epoch);
      read_string(r, m.topic, max_topic_length);
      std::uint32_t rn = 0;
      if (r.read_array(rn, max_nack_ranges)) {
        for (std::uint32_t i = 0; i < rn && !r.failed(); ++i) {
          std::uint32_t fields = 0;
          std::uint64_t from = 0, to = 0;
          if (!r.read_array(fields, 16) || fields < 2) {
            r.fail();
            break;
          }
          r.read_uint(from);
          r.read_uint(to);
          r.skip_n(fields - 2);
          if (from == 0 || from > to) r.fail();
          m.ranges.emplace_back(from, to);
        }
      }
      out = std::move(m);
      break;
    }
    case control_kind::ack: {
      ack_msg m;
      known = 2;
      if (!open_body(r, known, n)) return decode_status::malformed;
      r.read_uint(m.epoch);
      read_topic_seqs(r, max_acks, m.acks);
      out = std::move(m);
      break;
    }
    case control_kind::repair: {
      repair_msg m;
      known = 1;
      if (!open_body(r, known, n)) return decode_status::malformed;
      r.read_uint(m.epoch);
      out = m;
      break;
    }
    case control_kind::loss: {
      loss_msg m;
      known = 4;
      if (!open_body(r, known, n)) return decode_status::malformed;
      r.read_uint(m.epoch);
      read_string(r, m.topic, max_topic_length);
      r.read_uint(m.from);
      r.read_uint(m.to);
      if (m.from == 0 || m.from > m.to) r.fail();
      out = std::move(m);
      break;
    }
    case control_kind::assign: {
      assign_msg m;
      known = 3;
      if (!open_body(r, known, n)) return decode_status::malformed;
      r.read_uint(m.epoch);
      read_string(r, m.group, max_topic_length);
      r.read_uint(m.seq);
      if (m.seq == 0 || m.group.empty()) r.fail();
      out = std::move(m);
      break;
    }
    case control_kind::request: {
      request_msg m;
      known = 8;
      if (!open_body(r, known, n)) return decode_status::malformed;
      std::uint64_t version = 0;
      byte_view payload;
      r.read_uint(m.id);
      read_string(r, m.service, max_topic_length);
      r.read_uint(m.timeout_ms);
      read_string(r, m.type_name, max_short_field);
      r.read_uint(version, UINT32_MAX);
      read_string(r, m.correlation_id, max_short_field);
      read_string(r, m.causation_id, max_short_field);
      r.read_bin(payload, SIZE_MAX);
      m.type_version = static_cast<std::uint32_t>(version);
      m.payload.assign(reinterpret_cast<const char*>(payload.data()), payload.size());
      out = std::move(m);
      break;
    }
    case control_kind::reply: {
      reply_msg m;
      known = 6;
      if (!open_body(r, known, n)) return decode_status::malformed;
      std::uint64_t status = 0;
      std::uint64_t version = 0;
      byte_view payload;
      r.read_uint(m.id);
      r.read_uint(status, 3);
      read_string(r, m.message, max_header_value);
      read_string(r, m.type_name, max_short_field);
      r.read_uint(version, UINT32_MAX);
      r.read_bin(payload, SIZE_MAX);
      m.status = static_cast<reply_status>(status);
      m.type_version = static_cast<std::uint32_t>(version);
      m.payload.assign(reinterpret_cast<const char*>(payload.data()), payload.size());
      out = std::move(m);
      break;
    }
    default:
      return decode_status::malformed;
  }
  if (!r.failed() && n > known) r.skip_n(n - known);
  if (r.failed() || !r.at_end()) return decode_status::malformed;
  return decode_status::ok;
}

}  // namespace meshbus::wire
