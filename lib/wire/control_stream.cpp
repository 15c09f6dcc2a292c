// Body codecs of the reliability messages (docs/protocol.md §4, §6, §7): NACK, ACK,
// REPAIR, LOSS and ASSIGN. Ranges are checked here (from >= 1, from <= to), so the
// reliability layer only ever sees well-formed ranges.
#include <algorithm>

#include "lib/wire/control_codec.hpp"
#include "lib/wire/topic.hpp"

namespace meshbus::wire::detail {

void body_codec<nack_msg>::write(mp_writer& w, const nack_msg& m) {
  w.uint(m.epoch);
  w.str(m.topic);
  w.array(static_cast<std::uint32_t>(m.ranges.size()));
  for (const auto& [from, to] : m.ranges) {
    w.array(2);
    w.uint(from);
    w.uint(to);
  }
}

void body_codec<nack_msg>::read(mp_reader& r, nack_msg& m) {
  r.read_uint(m.epoch);
  read_string(r, m.topic, max_topic_length);
  std::uint32_t n = 0;
  if (!r.read_array(n, max_nack_ranges)) return;
  for (std::uint32_t i = 0; i < n && !r.failed(); ++i) {
    const auto fields = open_entry(r, 2);
    std::uint64_t from = 0, to = 0;
    r.read_uint(from);
    r.read_uint(to);
    r.skip_n(fields - std::min<std::uint32_t>(fields, 2));
    if (from == 0 || from > to) r.fail();
    m.ranges.emplace_back(from, to);
  }
}

void body_codec<ack_msg>::write(mp_writer& w, const ack_msg& m) {
  w.uint(m.epoch);
  write_topic_seqs(w, m.acks);
}

void body_codec<ack_msg>::read(mp_reader& r, ack_msg& m) {
  r.read_uint(m.epoch);
  read_topic_seqs(r, max_acks, m.acks);
}

void body_codec<repair_msg>::write(mp_writer& w, const repair_msg& m) { w.uint(m.epoch); }
void body_codec<repair_msg>::read(mp_reader& r, repair_msg& m) { r.read_uint(m.epoch); }

void body_codec<loss_msg>::write(mp_writer& w, const loss_msg& m) {
  w.uint(m.epoch);
  w.str(m.topic);
  w.uint(m.from);
  w.uint(m.to);
}

void body_codec<loss_msg>::read(mp_reader& r, loss_msg& m) {
  r.read_uint(m.epoch);
  read_string(r, m.topic, max_topic_length);
  r.read_uint(m.from);
  r.read_uint(m.to);
  if (m.from == 0 || m.from > m.to) r.fail();
}

void body_codec<assign_msg>::write(mp_writer& w, const assign_msg& m) {
  w.uint(m.epoch);
  w.str(m.group);
  w.uint(m.seq);
}

void body_codec<assign_msg>::read(mp_reader& r, assign_msg& m) {
  r.read_uint(m.epoch);
  read_string(r, m.group, max_topic_length);
  r.read_uint(m.seq);
  if (m.seq == 0 || m.group.empty()) r.fail();
}

}  // namespace meshbus::wire::detail
