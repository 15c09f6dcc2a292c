// The bounded MessagePack codec against the reference implementation (msgpack-c):
// what we write msgpack-c reads back identically, what msgpack-c writes we read,
// and hostile lengths are refused without reading past the input.
#include <catch2/catch.hpp>
#include <msgpack.hpp>

#include <limits>
#include <random>

#include "lib/wire/msgpack_codec.hpp"

using namespace meshbus::wire;

namespace {
msgpack::object_handle reference_parse(const bytes& b) {
  return msgpack::unpack(reinterpret_cast<const char*>(b.data()), b.size());
}
bytes from_sbuffer(const msgpack::sbuffer& sb) {
  return bytes(reinterpret_cast<const std::uint8_t*>(sb.data()),
               reinterpret_cast<const std::uint8_t*>(sb.data()) + sb.size());
}
}  // namespace

TEST_CASE("unsigned integers of every width round-trip and match msgpack-c", "[unit][wire]") {
  const std::uint64_t values[] = {0, 1, 127, 128, 255, 256, 65535, 65536, 0xffffffffULL, 0x100000000ULL,
                                  std::numeric_limits<std::uint64_t>::max()};
  for (const auto v : values) {
    bytes b;
    mp_writer(b).uint(v);
    CHECK(reference_parse(b).get().as<std::uint64_t>() == v);
    msgpack::sbuffer sb;
    msgpack::pack(sb, v);
    CHECK(from_sbuffer(sb) == b);  // same (smallest) encoding as the reference
    std::uint64_t out = 0;
    mp_reader r(b);
    REQUIRE(r.read_uint(out));
    CHECK(out == v);
    CHECK(r.at_end());
  }
}

TEST_CASE("signed integers of every width round-trip and match msgpack-c", "[unit][wire]") {
  const std::int64_t values[] = {0, -1, -32, -33, -128, -129, -32768, -32769, INT32_MIN, std::int64_t{INT32_MIN} - 1,
                                 std::numeric_limits<std::int64_t>::min(), 5, std::numeric_limits<std::int64_t>::max()};
  for (const auto v : values) {
    bytes b;
    mp_writer(b).sint(v);
    CHECK(reference_parse(b).get().as<std::int64_t>() == v);
    std::int64_t out = 0;
    mp_reader r(b);
    REQUIRE(r.read_sint(out));
    CHECK(out == v);
  }
}

TEST_CASE("strings, binaries, arrays and maps match msgpack-c at every length class", "[unit][wire]") {
  for (const std::size_t n : {0u, 1u, 31u, 32u, 255u, 256u, 65535u, 65536u}) {
    const std::string s(n, 'x');
    bytes b;
    mp_writer w(b);
    w.str(s);
    w.bin(s.data(), s.size());
    w.array(static_cast<std::uint32_t>(n % 70000));
    msgpack::sbuffer sb;
    msgpack::packer<msgpack::sbuffer> pk(sb);
    pk.pack(s);
    pk.pack_bin(static_cast<std::uint32_t>(n));
    pk.pack_bin_body(s.data(), static_cast<std::uint32_t>(n));
    pk.pack_array(static_cast<std::uint32_t>(n % 70000));
    CHECK(from_sbuffer(sb) == b);
    mp_reader r(b);
    std::string_view sv;
    byte_view bv;
    REQUIRE(r.read_str(sv, SIZE_MAX));
    CHECK(sv == s);
    REQUIRE(r.read_bin(bv, SIZE_MAX));
    CHECK(bv.size() == n);
  }
}

TEST_CASE("the reader accepts what msgpack-c writes, including nested maps", "[unit][wire]") {
  msgpack::sbuffer sb;
  msgpack::packer<msgpack::sbuffer> pk(sb);
  pk.pack_array(3);
  pk.pack(std::string("hello"));
  pk.pack_map(2);
  pk.pack(std::string("a"));
  pk.pack(1);
  pk.pack(std::string("b"));
  pk.pack_array(2);
  pk.pack(true);
  pk.pack_nil();
  pk.pack(-7);
  const auto b = from_sbuffer(sb);
  mp_reader r(b);
  std::uint32_t n = 0;
  REQUIRE(r.read_array(n, 10));
  CHECK(n == 3);
  std::string_view s;
  REQUIRE(r.read_str(s, 10));
  CHECK(s == "hello");
  REQUIRE(r.skip());
  std::int64_t v = 0;
  REQUIRE(r.read_sint(v));
  CHECK(v == -7);
  CHECK(r.at_end());
}

TEST_CASE("declared lengths beyond the input are malformed, never read", "[unit][wire]") {
  SECTION("str32 claiming 4 GiB") {
    const bytes b = {0xdb, 0xff, 0xff, 0xff, 0xff, 'a'};
    mp_reader r(b);
    std::string_view s;
    CHECK_FALSE(r.read_str(s, SIZE_MAX));
    CHECK(r.failed());
  }
  SECTION("array32 claiming more elements than bytes left") {
    const bytes b = {0xdd, 0x00, 0x01, 0x00, 0x00, 0x01, 0x02};
    mp_reader r(b);
    std::uint32_t n = 0;
    CHECK_FALSE(r.read_array(n, UINT32_MAX));
  }
  SECTION("map claiming more pairs than bytes left") {
    const bytes b = {0x83, 0x01, 0x02};
    mp_reader r(b);
    std::uint32_t n = 0;
    CHECK_FALSE(r.read_map(n, 100));
  }
  SECTION("nesting deeper than the limit") {
    bytes b(100, 0x91);
    b.push_back(0x01);
    mp_reader r(b);
    CHECK_FALSE(r.skip(8));
  }
  SECTION("ext types are not part of the protocol") {
    const bytes b = {0xd4, 0x01, 0x02};
    mp_reader r(b);
    CHECK_FALSE(r.skip());
  }
  SECTION("a failure latches") {
    const bytes b = {0xc1, 0x01};
    mp_reader r(b);
    std::uint64_t v = 0;
    CHECK_FALSE(r.read_uint(v));
    CHECK_FALSE(r.read_uint(v));
  }
  SECTION("limits below the type's range are enforced") {
    bytes b;
    mp_writer(b).uint(70000);
    mp_reader r(b);
    std::uint64_t v = 0;
    CHECK_FALSE(r.read_uint(v, 0xffff));
  }
}

TEST_CASE("floats are malformed, even where a value would only be skipped", "[unit][wire]") {
  msgpack::sbuffer sb;
  msgpack::packer<msgpack::sbuffer> pk(sb);
  pk.pack_double(1.5);
  pk.pack_float(2.5f);
  const auto b = from_sbuffer(sb);
  REQUIRE(b.size() == 9 + 5);
  mp_reader doubles(b);
  CHECK_FALSE(doubles.skip());
  mp_reader floats(byte_view(b).subspan(9));
  CHECK_FALSE(floats.skip());
  std::uint64_t u = 0;
  std::int64_t i = 0;
  CHECK_FALSE(mp_reader(b).read_uint(u));
  CHECK_FALSE(mp_reader(b).read_sint(i));
}

TEST_CASE("integers and lengths are accepted in any width, not only the smallest", "[unit][wire]") {
  // 5 as uint8, uint16, uint32 and uint64; "ab" as str8 and str16; a 1-element array16.
  const bytes b = {0xcc, 0x05, 0xcd, 0x00, 0x05, 0xce, 0x00, 0x00, 0x00, 0x05, 0xcf, 0, 0, 0, 0, 0, 0, 0, 0x05,
                   0xd9, 0x02, 'a', 'b', 0xda, 0x00, 0x02, 'a', 'b', 0xdc, 0x00, 0x01, 0x07};
  mp_reader r(b);
  for (int i = 0; i < 4; ++i) {
    std::uint64_t v = 0;
    REQUIRE(r.read_uint(v));
    CHECK(v == 5);
  }
  for (int i = 0; i < 2; ++i) {
    std::string_view s;
    REQUIRE(r.read_str(s, 10));
    CHECK(s == "ab");
  }
  std::uint32_t n = 0;
  REQUIRE(r.read_array(n, 10));
  CHECK(n == 1);
  REQUIRE(r.skip());
  CHECK(r.at_end());
}

TEST_CASE("an unsigned field refuses the signed formats, even for non-negative values", "[unit][wire]") {
  const bytes b = {0xd0, 0x05};  // int8 5
  std::uint64_t v = 0;
  CHECK_FALSE(mp_reader(b).read_uint(v));
  std::int64_t s = 0;
  REQUIRE(mp_reader(b).read_sint(s));
  CHECK(s == 5);
}

TEST_CASE("fixed-width fields can be patched after writing", "[unit][wire]") {
  bytes b;
  mp_writer w(b);
  const auto at32 = w.uint32_fixed(0);
  const auto at64 = w.uint64_fixed(0);
  mp_writer::patch_uint32(b, at32, 123456);
  mp_writer::patch_uint64(b, at64, 0x1122334455667788ULL);
  mp_reader r(b);
  std::uint64_t a = 0;
  std::uint64_t c = 0;
  REQUIRE(r.read_uint(a));
  REQUIRE(r.read_uint(c));
  CHECK(a == 123456);
  CHECK(c == 0x1122334455667788ULL);
  CHECK(reference_parse(bytes(b.begin(), b.begin() + 5)).get().as<std::uint32_t>() == 123456);
}

TEST_CASE("skip() walks random valid msgpack-c documents exactly", "[unit][wire]") {
  std::mt19937 rng(42);
  for (int round = 0; round < 300; ++round) {
    msgpack::sbuffer sb;
    msgpack::packer<msgpack::sbuffer> pk(sb);
    const int items = 1 + static_cast<int>(rng() % 8);
    for (int i = 0; i < items; ++i) {
      switch (rng() % 6) {
        case 0: pk.pack(static_cast<std::int64_t>(rng()) - 0x7fffffff); break;
        case 1: pk.pack(std::string(rng() % 300, 'q')); break;
        case 2: pk.pack(std::vector<int>(rng() % 20, 3)); break;
        case 3: pk.pack(std::map<std::string, int>{{"k", 1}, {"z", 2}}); break;
        case 4: pk.pack_nil(); break;
        default: pk.pack(static_cast<std::uint64_t>(rng()) << 20); break;
      }
    }
    const auto b = from_sbuffer(sb);
    mp_reader r(b);
    REQUIRE(r.skip_n(static_cast<std::uint64_t>(items)));
    CHECK(r.at_end());
  }
}
