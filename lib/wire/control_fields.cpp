// Fields that several control messages share: peer lists (gossip), subscription
// patterns, service names and [topic, sequence] pairs. Every count and length is
// bounded; entries of a list may carry more elements than this revision knows.
#include <algorithm>

#include "lib/wire/control_codec.hpp"
#include "lib/wire/topic.hpp"

namespace meshbus::wire::detail {

bool read_string(mp_reader& r, std::string& out, std::size_t max) {
  std::string_view v;
  if (!r.read_str(v, max)) return false;
  out.assign(v);
  return true;
}

bool read_port(mp_reader& r, std::uint16_t& port) {
  std::uint64_t v = 0;
  if (!r.read_uint(v, 0xffff)) return false;
  port = static_cast<std::uint16_t>(v);
  return true;
}

bool read_payload(mp_reader& r, std::string& out) {
  byte_view payload;
  if (!r.read_bin(payload, SIZE_MAX)) return false;
  out.assign(reinterpret_cast<const char*>(payload.data()), payload.size());
  return true;
}

std::uint32_t open_entry(mp_reader& r, std::uint32_t min) {
  std::uint32_t n = 0;
  if (!r.read_array(n, max_entry_fields)) return 0;
  if (n < min || n == 0) {
    r.fail();
    return 0;
  }
  return n;
}

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

bool read_peers(mp_reader& r, std::vector<peer_address>& out) {
  std::uint32_t n = 0;
  if (!r.read_array(n, max_gossip_peers)) return false;
  out.clear();
  out.reserve(n);
  for (std::uint32_t i = 0; i < n; ++i) {
    const auto fields = open_entry(r, 4);
    peer_address p;
    r.read_fixed_bin(p.id.data(), p.id.size());
    read_string(r, p.host, max_name_length);
    read_port(r, p.router_port);
    read_port(r, p.pub_port);
    r.skip_n(fields - std::min<std::uint32_t>(fields, 4));
    if (r.failed()) return false;
    out.push_back(std::move(p));
  }
  return true;
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

bool read_patterns(mp_reader& r, std::vector<pattern_spec>& out) {
  std::uint32_t n = 0;
  if (!r.read_array(n, max_patterns)) return false;
  out.clear();
  out.reserve(n);
  for (std::uint32_t i = 0; i < n; ++i) {
    const auto fields = open_entry(r, 2);  // the group is optional
    pattern_spec p;
    std::uint64_t mode = 0;
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
  for (std::uint32_t i = 0; i < n; ++i) {
    const auto fields = open_entry(r, 2);
    std::string topic;
    std::uint64_t seq = 0;
    read_string(r, topic, max_topic_length);
    r.read_uint(seq);
    r.skip_n(fields - std::min<std::uint32_t>(fields, 2));
    if (r.failed()) return false;
    out.emplace_back(std::move(topic), seq);
  }
  return true;
}

}  // namespace meshbus::wire::detail
