// Beacon codec: round trip, and every malformed or unsupported form is refused.
#include <catch2/catch.hpp>

#include "lib/wire/beacon.hpp"

using namespace meshbus::wire;

namespace {
beacon sample() {
  beacon b;
  b.flags = beacon::flag_goodbye;
  for (std::size_t i = 0; i < 16; ++i) b.node_id[i] = static_cast<std::uint8_t>(i * 7 + 1);
  b.epoch = 1732838400123456ULL;
  b.cluster_hash = fnv1a64("meshbus");
  b.router_port = 40001;
  b.pub_port = 40002;
  return b;
}
bool same(const beacon& a, const beacon& b) {
  return a.flags == b.flags && a.node_id == b.node_id && a.epoch == b.epoch &&
         a.cluster_hash == b.cluster_hash && a.router_port == b.router_port && a.pub_port == b.pub_port;
}
}  // namespace

TEST_CASE("a beacon round-trips and stays small", "[unit][wire]") {
  const auto b = sample();
  const auto bytes = encode_beacon(b);
  CHECK(bytes.size() < 64);
  beacon out;
  REQUIRE(decode_beacon(bytes, out) == decode_status::ok);
  CHECK(same(b, out));
  CHECK(out.goodbye());
}

TEST_CASE("every truncation of a beacon is malformed", "[unit][wire]") {
  const auto bytes = encode_beacon(sample());
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    beacon out;
    INFO("length " << n);
    CHECK(decode_beacon(byte_view(bytes.data(), n), out) == decode_status::malformed);
  }
}

TEST_CASE("malformed and unsupported beacons are told apart", "[unit][wire]") {
  beacon out;
  auto bytes = encode_beacon(sample());
  SECTION("wrong magic") {
    bytes[0] = 'X';
    CHECK(decode_beacon(bytes, out) == decode_status::malformed);
  }
  SECTION("another protocol version") {
    bytes[4] = 2;
    CHECK(decode_beacon(bytes, out) == decode_status::unsupported_version);
  }
  SECTION("trailing garbage") {
    bytes.push_back(0);
    CHECK(decode_beacon(bytes, out) == decode_status::malformed);
  }
  SECTION("oversized datagram") {
    bytes.resize(max_beacon_size + 1, 0xc0);
    CHECK(decode_beacon(bytes, out) == decode_status::malformed);
  }
  SECTION("port zero") {
    auto b = sample();
    b.router_port = 0;
    CHECK(decode_beacon(encode_beacon(b), out) == decode_status::malformed);
  }
  SECTION("node id of the wrong length") {
    bytes[8] = 15;  // bin8 length byte of the node id
    CHECK(decode_beacon(bytes, out) == decode_status::malformed);
  }
  SECTION("too few fields") {
    bytes[5] = 0x95;  // fixarray(5)
    CHECK(decode_beacon(bytes, out) == decode_status::malformed);
  }
}

TEST_CASE("a later revision's extra beacon fields are skipped", "[unit][wire]") {
  auto bytes = encode_beacon(sample());
  bytes[5] = 0x97;  // fixarray(7): one more field
  bytes.push_back(0x2a);
  beacon out;
  CHECK(decode_beacon(bytes, out) == decode_status::ok);
}

TEST_CASE("the cluster hash is 64-bit FNV-1a of the cluster name", "[unit][wire]") {
  CHECK(fnv1a64("") == 0xcbf29ce484222325ULL);
  CHECK(fnv1a64("a") == 0xaf63dc4c8601ec8cULL);
  CHECK(fnv1a64("meshbus") == 0x8efd40df9109498aULL);
}
