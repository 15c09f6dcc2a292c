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
          goodbye_msg{77, {{"orders.eu", 10}}},
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

TEST_CASE("a later revision's extra body and entry fields are skipped", "[unit][wire]") {
  // READY with a third body field and a third element in its position entry.
  bytes b = {protocol_version, static_cast<std::uint8_t>(control_kind::ready)};
  mp_writer w(b);
  w.array(3);
  w.uint(4);
  w.array(1);
  w.array(3);
  w.str("a.b");
  w.uint(9);
  w.str("later");
  w.map(1);
  w.str("k");
  w.boolean(true);
  control_msg out;
  REQUIRE(decode_control(b, out) == decode_status::ok);
  CHECK(std::get<ready_msg>(out) == ready_msg{4, {{"a.b", 9}}});
}

TEST_CASE("a float among a body's extra fields makes it malformed", "[unit][wire]") {
  auto b = encode_control(repair_msg{7});
  b[2] = 0x92;  // fixarray(1) -> fixarray(2)
  b.insert(b.end(), {0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0});  // float64 1.5
  control_msg out;
  CHECK(decode_control(b, out) == decode_status::malformed);
}

TEST_CASE("bodies and list entries have bounded element counts", "[unit][wire]") {
  control_msg out;
  SECTION("a body of more than max_body_fields elements") {
    bytes b = {protocol_version, static_cast<std::uint8_t>(control_kind::repair)};
    mp_writer w(b);
    w.array(max_body_fields + 1);
    for (std::uint32_t i = 0; i <= max_body_fields; ++i) w.uint(0);
    CHECK(decode_control(b, out) == decode_status::malformed);
    b[4] = static_cast<std::uint8_t>(max_body_fields);  // array16 count, low byte
    b.pop_back();
    CHECK(decode_control(b, out) == decode_status::ok);
  }
  SECTION("an ACK entry of more than max_entry_fields elements") {
    bytes b = {protocol_version, static_cast<std::uint8_t>(control_kind::ack)};
    mp_writer w(b);
    w.array(2);
    w.uint(1);
    w.array(1);
    w.array(max_entry_fields + 1);
    w.str("t");
    for (std::uint32_t i = 1; i <= max_entry_fields; ++i) w.uint(1);
    CHECK(decode_control(b, out) == decode_status::malformed);
  }
  SECTION("a node name longer than max_name_length") {
    auto h = std::get<hello_msg>(samples()[0]);
    h.name.assign(max_name_length, 'n');
    CHECK(decode_control(encode_control(h), out) == decode_status::ok);
    h.name.push_back('n');
    CHECK(decode_control(encode_control(h), out) == decode_status::malformed);
  }
}

TEST_CASE("only REPAIR and ASSIGN carry a data frame", "[unit][wire]") {
  for (const auto& m : samples()) {
    const bool expected = std::holds_alternative<repair_msg>(m) || std::holds_alternative<assign_msg>(m);
    CHECK(has_data_frame(m) == expected);
  }
}

TEST_CASE("a routing id is 0x01 then the node id, and nothing else decodes", "[unit][wire]") {
  const auto rid = routing_id(id_of(5));
  REQUIRE(rid.size() == routing_id_size);
  CHECK(rid[0] == '\x01');
  const byte_view view(reinterpret_cast<const std::uint8_t*>(rid.data()), rid.size());
  node_id_bytes id{};
  REQUIRE(decode_routing_id(view, id));
  CHECK(id == id_of(5));
  CHECK_FALSE(decode_routing_id(view.subspan(1), id));
  CHECK_FALSE(decode_routing_id(view.subspan(0, 16), id));
  bytes zmq_assigned(view.begin(), view.end());
  zmq_assigned[0] = 0x00;  // what a ROUTER makes up for a peer without a routing id
  CHECK_FALSE(decode_routing_id(zmq_assigned, id));
}

TEST_CASE("group streams are named $group.<group> in acks, NACKs and LOSSes", "[unit][wire]") {
  CHECK(group_stream_name("billing") == "$group.billing");
  CHECK(is_group_stream("$group.billing"));
  CHECK(group_of_stream("$group.billing") == "billing");
  CHECK_FALSE(is_group_stream("orders.eu"));
  CHECK_FALSE(is_group_stream("$group"));
  CHECK(group_of_stream("orders.eu").empty());
}
