// Beacon codec. A datagram that does not start with the magic is malformed; one
// with the magic and another version is unsupported. Trailing fields inside the
// array are skipped so a later minor revision can append to it.
#include "lib/wire/beacon.hpp"

#include <cstring>

namespace meshbus::wire {
namespace {
constexpr char magic[4] = {'M', 'S', 'H', 'B'};
}

const char* to_string(decode_status s) noexcept {
  switch (s) {
    case decode_status::ok: return "ok";
    case decode_status::malformed: return "malformed";
    case decode_status::unsupported_version: return "unsupported version";
  }
  return "?";
}

std::uint64_t fnv1a64(std::string_view s) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (const char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  return h;
}

bytes encode_beacon(const beacon& b) {
  bytes out;
  out.reserve(64);
  mp_writer w(out);
  w.raw(magic, sizeof magic);
  w.raw_byte(protocol_version);
  w.array(6);
  w.uint(b.flags);
  w.bin(b.node_id.data(), b.node_id.size());
  w.uint(b.epoch);
  w.uint(b.cluster_hash);
  w.uint(b.router_port);
  w.uint(b.pub_port);
  return out;
}

decode_status decode_beacon(byte_view datagram, beacon& out) {
  if (datagram.size() < 5 || datagram.size() > max_beacon_size ||
      std::memcmp(datagram.data(), magic, sizeof magic) != 0) {
    return decode_status::malformed;
  }
  if (datagram[4] != protocol_version) return decode_status::unsupported_version;
  mp_reader r(datagram.subspan(5));
  std::uint32_t n = 0;
  std::uint64_t flags = 0, epoch = 0, cluster = 0, router = 0, pub = 0;
  beacon b;
  r.read_array(n, max_beacon_fields);
  if (n < 6) r.fail();
  r.read_uint(flags, 0xff);
  r.read_fixed_bin(b.node_id.data(), b.node_id.size());
  r.read_uint(epoch);
  r.read_uint(cluster);
  r.read_uint(router, 0xffff);
  r.read_uint(pub, 0xffff);
  if (!r.failed() && n > 6) r.skip_n(n - 6);
  if (r.failed() || !r.at_end() || router == 0 || pub == 0) return decode_status::malformed;
  b.flags = static_cast<std::uint8_t>(flags);
  b.epoch = epoch;
  b.cluster_hash = cluster;
  b.router_port = static_cast<std::uint16_t>(router);
  b.pub_port = static_cast<std::uint16_t>(pub);
  out = b;
  return decode_status::ok;
}

}  // namespace meshbus::wire
