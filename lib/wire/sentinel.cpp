// Readiness sentinel codec; see sentinel.hpp. A fixed-size binary string, not
// MessagePack: ZeroMQ compares subscriptions as byte prefixes, and this one must
// sort after every topic.
#include "lib/wire/sentinel.hpp"

#include <cstring>

namespace meshbus::wire {

std::string encode_sentinel(const node_id_bytes& subscriber, std::uint64_t generation) {
  std::string s(sentinel_magic, sizeof sentinel_magic);
  s.append(reinterpret_cast<const char*>(subscriber.data()), subscriber.size());
  for (int i = 7; i >= 0; --i) s.push_back(static_cast<char>((generation >> (8 * i)) & 0xff));
  return s;
}

bool decode_sentinel(byte_view prefix, node_id_bytes& subscriber, std::uint64_t& generation) noexcept {
  if (prefix.size() != sentinel_size || std::memcmp(prefix.data(), sentinel_magic, sizeof sentinel_magic) != 0) {
    return false;
  }
  const auto* p = prefix.data() + sizeof sentinel_magic;
  std::memcpy(subscriber.data(), p, subscriber.size());
  p += subscriber.size();
  generation = 0;
  for (int i = 0; i < 8; ++i) generation = (generation << 8) | p[i];
  return true;
}

bool decode_sentinel_subscribe(byte_view message, node_id_bytes& subscriber, std::uint64_t& generation) noexcept {
  return !message.empty() && message[0] == 1 && decode_sentinel(message.subspan(1), subscriber, generation);
}

}  // namespace meshbus::wire
