// Control messages: every kind round-trips; truncations, wrong versions, unknown
// kinds and out-of-bounds counts are refused.
#include <catch2/catch.hpp>

#include "lib/wire/control.hpp"

using namespace meshbus::wire;

namespace {
node_id_bytes id_of(std::uint8_t seed) {
  node_id_bytes id{};
  for (std::size_t i = 0; i < 16; ++i) id[i] = static_cast<std::uint8_t>(seed + i);
  return id;
}

std::vector<control_msg> samples() {
  hello_msg h;
  h.node_id = id_of(1);
  h.epoch = 99;
  h.cluster = "prod";
  h.name = "orders-1";
  h.router_port = 7000;
  h.pub_port = 7001;
  h.metadata = {{"role", "orders"}, {"zone", "eu"}};
  h.sub_generation = 4;
  h.patterns = {{"orders.**", 1, ""}, {"payments.*.done", 2, "billing"}};
  h.peers = {{id_of(9), "10.0.0.9", 7100, 7101}, {id_of(8), "10.0.0.8", 7200, 7201}};
  h.services = {"inventory.stock", "orders.place"};
  return {h,
          subscriptions_msg{5, {{"a.b", 0, ""}, {"c.**", 2, "workers"}}, {"svc"}},
          ready_msg{5, {{"orders.eu", 10}, {"orders.us", 0}}},
          ping_msg{99, 7000, 7001, {{id_of(3), "127.0.0.1", 1, 2}}},
          goodbye_msg{},
          nack_msg{77, "orders.eu", {{1, 5}, {9, 9}, {1000000, 2000000}}},
          ack_msg{77, {{"orders.eu", 41}, {"orders.us", 0}}},
          repair_msg{77},
          loss_msg{77, "orders.eu", 3, 8},
          assign_msg{77, "billing", 12},
          request_msg{9, "inventory.stock", 5000, "StockQuery", 2, "corr", "cause", std::string("\0\1payload", 9)},
          reply_msg{9, reply_status::handler_failed, "out of stock", "StockLevel", 1, "bytes"}};
}
}  // namespace

TEST_CASE("every control message round-trips", "[unit][wire]") {
  for (const auto& m : samples()) {
    const auto bytes = encode_control(m);
    control_msg out;
    REQUIRE(decode_control(bytes, out) == decode_status::ok);
    CHECK(out == m);
  }
}

TEST_CASE("every truncation of every control message is malformed", "[unit][wire]") {
  for (const auto& m : samples()) {
    const auto bytes = encode_control(m);
    for (std::size_t n = 0; n < bytes.size(); ++n) {
      control_msg out;
      INFO("kind " << int(bytes[1]) << " length " << n);
      CHECK(decode_control(byte_view(bytes.data(), n), out) == decode_status::malformed);
    }
  }
}

TEST_CASE("control messages of another version or kind are refused", "[unit][wire]") {
  auto bytes = encode_control(goodbye_msg{});
  control_msg out;
  bytes[0] = 7;
  CHECK(decode_control(bytes, out) == decode_status::unsupported_version);
  bytes[0] = protocol_version;
  bytes[1] = 0x55;
  CHECK(decode_control(bytes, out) == decode_status::malformed);
}

TEST_CASE("hostile counts inside control messages are refused", "[unit][wire]") {
  control_msg out;
  SECTION("more patterns than allowed") {
    subscriptions_msg m;
    m.generation = 1;
    m.patterns.assign(max_patterns + 1, {"x", 1, ""});
    CHECK(decode_control(encode_control(m), out) == decode_status::malformed);
  }
  SECTION("a pattern longer than a topic may be") {
    subscriptions_msg m;
    m.patterns = {{std::string(300, 'x'), 1, ""}};
    CHECK(decode_control(encode_control(m), out) == decode_status::malformed);
  }
  SECTION("an unknown delivery mode") {
    subscriptions_msg m;
    m.patterns = {{"x", 3, ""}};
    CHECK(decode_control(encode_control(m), out) == decode_status::malformed);
  }
  SECTION("NACK ranges that are empty, reversed or too many") {
    CHECK(decode_control(encode_control(nack_msg{1, "t", {{0, 4}}}), out) == decode_status::malformed);
    CHECK(decode_control(encode_control(nack_msg{1, "t", {{5, 4}}}), out) == decode_status::malformed);
    nack_msg many{1, "t", {}};
    many.ranges.assign(max_nack_ranges + 1, {1, 2});
    CHECK(decode_control(encode_control(many), out) == decode_status::malformed);
  }
  SECTION("a reversed loss range") {
    CHECK(decode_control(encode_control(loss_msg{1, "t", 9, 3}), out) == decode_status::malformed);
  }
  SECTION("HELLO with a zero port") {
    auto h = std::get<hello_msg>(samples()[0]);
    h.pub_port = 0;
    CHECK(decode_control(encode_control(h), out) == decode_status::malformed);
  }
  SECTION("trailing bytes") {
    auto bytes = encode_control(ping_msg{1, 2, 3, {}});
    bytes.push_back(0);
    CHECK(decode_control(bytes, out) == decode_status::malformed);
  }
}
