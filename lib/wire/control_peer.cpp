// Body codecs of the peer protocol's messages (docs/protocol.md §4, §5): HELLO,
// SUBSCRIPTIONS, READY, PING and GOODBYE. Each writes exactly the fields its
// body_codec declares and reads them in the same order; control.cpp frames them.
#include "lib/wire/control_codec.hpp"

namespace meshbus::wire::detail {

void body_codec<hello_msg>::write(mp_writer& w, const hello_msg& m) {
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
}

void body_codec<hello_msg>::read(mp_reader& r, hello_msg& m) {
  r.read_fixed_bin(m.node_id.data(), m.node_id.size());
  r.read_uint(m.epoch);
  read_string(r, m.cluster, max_name_length);
  read_string(r, m.name, max_name_length);
  read_port(r, m.router_port);
  read_port(r, m.pub_port);
  std::uint32_t entries = 0;
  if (r.read_map(entries, max_metadata)) {
    for (std::uint32_t i = 0; i < entries && !r.failed(); ++i) {
      std::string k, v;
      read_string(r, k, max_name_length);
      read_string(r, v, max_metadata_value);
      m.metadata.emplace_back(std::move(k), std::move(v));
    }
  }
  r.read_uint(m.sub_generation);
  read_patterns(r, m.patterns);
  read_peers(r, m.peers);
  std::uint64_t flags = 0;  // reserved: any value is accepted and ignored
  r.read_uint(flags);
  read_services(r, m.services);
  if (m.router_port == 0 || m.pub_port == 0) r.fail();
}

void body_codec<subscriptions_msg>::write(mp_writer& w, const subscriptions_msg& m) {
  w.uint(m.generation);
  write_patterns(w, m.patterns);
  write_services(w, m.services);
}

void body_codec<subscriptions_msg>::read(mp_reader& r, subscriptions_msg& m) {
  r.read_uint(m.generation);
  read_patterns(r, m.patterns);
  read_services(r, m.services);
}

void body_codec<ready_msg>::write(mp_writer& w, const ready_msg& m) {
  w.uint(m.generation);
  write_topic_seqs(w, m.positions);
}

void body_codec<ready_msg>::read(mp_reader& r, ready_msg& m) {
  r.read_uint(m.generation);
  read_topic_seqs(r, max_positions, m.positions);
}

void body_codec<ping_msg>::write(mp_writer& w, const ping_msg& m) {
  w.uint(m.epoch);
  w.uint(m.router_port);
  w.uint(m.pub_port);
  write_peers(w, m.peers);
}

void body_codec<ping_msg>::read(mp_reader& r, ping_msg& m) {
  r.read_uint(m.epoch);
  read_port(r, m.router_port);
  read_port(r, m.pub_port);
  read_peers(r, m.peers);
  if (m.router_port == 0 || m.pub_port == 0) r.fail();
}

void body_codec<goodbye_msg>::write(mp_writer& w, const goodbye_msg& m) {
  w.uint(m.epoch);
  write_topic_seqs(w, m.positions);
}

void body_codec<goodbye_msg>::read(mp_reader& r, goodbye_msg& m) {
  r.read_uint(m.epoch);
  read_topic_seqs(r, max_positions, m.positions);
}

}  // namespace meshbus::wire::detail
