// The readiness sentinel: round trip, its place after every topic prefix in byte
// order, and XPUB subscription messages that are and are not sentinels.
#include <catch2/catch.hpp>

#include "lib/wire/sentinel.hpp"

using namespace meshbus::wire;

namespace {
node_id_bytes id_of(std::uint8_t seed) {
  node_id_bytes id{};
  for (std::size_t i = 0; i < 16; ++i) id[i] = static_cast<std::uint8_t>(seed + i);
  return id;
}
byte_view view(const std::string& s) { return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()}; }
}  // namespace

TEST_CASE("a sentinel carries the subscriber and its generation", "[unit][wire]") {
  const auto s = encode_sentinel(id_of(3), 0x0102030405060708ULL);
  REQUIRE(s.size() == sentinel_size);
  CHECK(s.substr(0, 4) == std::string("\xFFmb\x01", 4));
  CHECK(s.back() == '\x08');  // big-endian
  node_id_bytes who{};
  std::uint64_t generation = 0;
  REQUIRE(decode_sentinel(view(s), who, generation));
  CHECK(who == id_of(3));
  CHECK(generation == 0x0102030405060708ULL);
}

TEST_CASE("a sentinel sorts after every topic prefix", "[unit][wire]") {
  const auto s = encode_sentinel(id_of(0), 1);
  for (const std::string prefix : {"orders.", "z", "\xF4\x8F\xBF\xBF", "~~~", "$meshbus.dlq.replay"}) {
    CHECK(std::string_view(prefix) < std::string_view(s));
  }
}

TEST_CASE("only a subscribe message of a whole sentinel is one", "[unit][wire]") {
  const auto s = encode_sentinel(id_of(7), 42);
  node_id_bytes who{};
  std::uint64_t generation = 0;
  REQUIRE(decode_sentinel_subscribe(view('\x01' + s), who, generation));
  CHECK(who == id_of(7));
  CHECK(generation == 42);
  CHECK_FALSE(decode_sentinel_subscribe(view('\x00' + s), who, generation));  // unsubscribe
  CHECK_FALSE(decode_sentinel_subscribe(view('\x01' + s + 'x'), who, generation));
  CHECK_FALSE(decode_sentinel_subscribe(view('\x01' + s.substr(0, s.size() - 1)), who, generation));
  CHECK_FALSE(decode_sentinel_subscribe(view(std::string("\x01orders.", 8)), who, generation));
  CHECK_FALSE(decode_sentinel_subscribe(byte_view(), who, generation));
  auto other = s;
  other[1] = 'M';
  CHECK_FALSE(decode_sentinel(view(other), who, generation));
}
