// Trace requests and answers (docs/protocol.md §10): the codec round-trips, refuses
// malformed bytes whole, and the reply topics a request may name are only those under
// "$meshbus.trace.reply".
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "lib/wire/topic.hpp"
#include "lib/wire/trace.hpp"

using namespace meshbus;
using namespace meshbus::wire;

namespace {

trace_record record(std::string id, std::string cause, std::int64_t ts) {
  trace_record r;
  r.event_id = std::move(id);
  r.causation_id = std::move(cause);
  r.correlation_id = "flow-1";
  r.topic = "orders.placed";
  r.type_name = "OrderPlaced";
  r.type_version = 2;
  r.publisher[0] = 0xab;
  r.epoch = 1700000000000000;
  r.sequence = 7;
  r.timestamp_ns = ts;
  return r;
}

trace_reply chunk_of(std::vector<trace_record> records) {
  trace_reply r;
  r.what = trace_reply::kind::records;
  r.request_id = 0xfeedface12345678;
  r.node[15] = 9;
  r.node_name = "orders";
  r.records = std::move(records);
  return r;
}

bytes raw(std::initializer_list<int> values) {
  bytes out;
  for (const int v : values) out.push_back(static_cast<std::uint8_t>(v));
  return out;
}

}  // namespace

TEST_CASE("trace topics: requests on one reserved topic, answers only below the reply root",
          "[unit][wire][trace]") {
  CHECK(topic_error(trace_request_topic, true).empty());
  CHECK(trace_request_topic.substr(0, internal_topic_prefix.size()) == internal_topic_prefix);
  node_id_bytes id{};
  id[0] = 0x1a;
  id[15] = 0xff;
  const auto topic = trace_reply_topic(id);
  CHECK(topic == "$meshbus.trace.reply.1a0000000000000000000000000000ff");
  CHECK(is_trace_reply_topic(topic));
  CHECK(is_trace_reply_topic(trace_reply_root));
  CHECK(is_trace_reply_topic("$meshbus.trace.reply.tool.7"));
  CHECK_FALSE(is_trace_reply_topic("$meshbus.trace.replyx"));
  CHECK_FALSE(is_trace_reply_topic("$meshbus.trace.reply."));
  CHECK_FALSE(is_trace_reply_topic("$dlq.orders"));
  CHECK_FALSE(is_trace_reply_topic("orders.placed"));
  CHECK_FALSE(is_trace_reply_topic("$meshbus.trace.reply.a..b"));
}

TEST_CASE("a trace request round-trips, and a bad one is malformed", "[unit][wire][trace]") {
  const trace_request req{"checkout-42", "$meshbus.trace.reply.abc", 77};
  trace_request back;
  REQUIRE(decode_trace_request(encode_trace_request(req), back) == decode_status::ok);
  CHECK(back == req);

  auto malformed = [](const trace_request& r) {
    trace_request out;
    return decode_trace_request(encode_trace_request(r), out) == decode_status::malformed;
  };
  CHECK(malformed({"", "$meshbus.trace.reply", 1}));                     // no flow
  CHECK(malformed({std::string(256, 'x'), "$meshbus.trace.reply", 1}));  // over 255 bytes
  CHECK(malformed({"flow", "orders.placed", 1}));                        // an application topic
  CHECK(malformed({"flow", "$dlq.orders", 1}));                          // another reserved topic
  trace_request out;
  CHECK(decode_trace_request({}, out) == decode_status::malformed);
  CHECK(decode_trace_request(raw({0x92, 0xa1, 'x', 0xa1, 'y'}), out) ==
        decode_status::malformed);  // 2 fields
  // [ "f", "$meshbus.trace.reply", -1 ]: a signed request id
  bytes signed_id = raw({0x93, 0xa1, 'f', 0xb4});
  for (const char c : std::string("$meshbus.trace.reply")) signed_id.push_back(static_cast<std::uint8_t>(c));
  signed_id.push_back(0xff);
  CHECK(decode_trace_request(signed_id, out) == decode_status::malformed);
  // The same with request id 5, and a later revision's extra field: accepted.
  bytes extra = signed_id;
  extra[0] = 0x94;
  extra.back() = 0x05;
  extra.push_back(0xc0);
  REQUIRE(decode_trace_request(extra, out) == decode_status::ok);
  CHECK(out.request_id == 5);
  // Trailing bytes after the array.
  auto trailing = encode_trace_request(req);
  trailing.push_back(0);
  CHECK(decode_trace_request(trailing, out) == decode_status::malformed);
}

TEST_CASE("trace answers round-trip: records in chunks, then done", "[unit][wire][trace]") {
  const auto chunk = chunk_of({record("a", "", -5), record("b", "a", 10)});
  trace_reply back;
  REQUIRE(decode_trace_reply(encode_trace_reply(chunk), back) == decode_status::ok);
  CHECK(back == chunk);
  // The size bound a sender chunks by is never below what a record takes.
  const auto empty_size = encode_trace_reply(chunk_of({})).size();
  for (auto r : {record(std::string(255, 'i'), std::string(255, 'c'), INT64_MIN), record("a", "", 0)}) {
    r.topic = std::string(255, 't');
    r.epoch = UINT64_MAX;
    CHECK(trace_record_size_bound(r) >= encode_trace_reply(chunk_of({r})).size() - empty_size);
  }

  trace_reply done = chunk_of({});
  done.what = trace_reply::kind::done;
  done.count = 10000;
  done.status = trace_status::truncated;
  done.note = "more than 10000 events";
  REQUIRE(decode_trace_reply(encode_trace_reply(done), back) == decode_status::ok);
  CHECK(back == done);
  CHECK(std::string(to_string(back.status)) == "truncated");
}

TEST_CASE("malformed trace answers are refused, never half read", "[unit][wire][trace]") {
  trace_reply out;
  CHECK(decode_trace_reply({}, out) == decode_status::malformed);
  CHECK(decode_trace_reply(raw({0xc0}), out) == decode_status::malformed);
  // Every truncation of a valid chunk.
  const auto full = encode_trace_reply(chunk_of({record("a", "", 1), record("b", "a", 2)}));
  for (std::size_t n = 0; n < full.size(); ++n) {
    INFO("first " << n << " bytes");
    CHECK(decode_trace_reply(byte_view(full.data(), n), out) == decode_status::malformed);
  }
  // An unknown kind.
  auto unknown = full;
  unknown[1] = 3;
  CHECK(decode_trace_reply(unknown, out) == decode_status::malformed);
  // A record without an id.
  CHECK(decode_trace_reply(encode_trace_reply(chunk_of({record("", "", 1)})), out) ==
        decode_status::malformed);
  // A node id of 15 bytes.
  auto short_node = encode_trace_reply(chunk_of({}));
  // [kind, id, bin8(16)...]: byte 2 is the request id (uint64: 0xcf + 8), then 0xc4 0x10.
  REQUIRE(short_node[11] == 0xc4);
  short_node[12] = 15;
  CHECK(decode_trace_reply(short_node, out) == decode_status::malformed);
  // More records than the chunk limit, and a count the bytes cannot hold.
  bytes lying = raw({0x95, 0x01, 0x00, 0xc4, 0x10});
  lying.resize(lying.size() + 16, 0);
  lying.push_back(0xa0);  // node name ""
  for (const int b : {0xdd, 0x00, 0x00, 0x04, 0x01})
    lying.push_back(static_cast<std::uint8_t>(b));  // 1025 records
  CHECK(decode_trace_reply(lying, out) == decode_status::malformed);
  lying.resize(lying.size() - 5);
  for (const int b : {0xdc, 0x03, 0xe8})
    lying.push_back(static_cast<std::uint8_t>(b));  // 1000 records, no bytes
  CHECK(decode_trace_reply(lying, out) == decode_status::malformed);
  // A done with a status this revision does not know: taken as incomplete.
  trace_reply done = chunk_of({});
  done.what = trace_reply::kind::done;
  auto bytes_done = encode_trace_reply(done);
  REQUIRE(bytes_done[bytes_done.size() - 2] == 0x00);  // status, then note ""
  bytes_done[bytes_done.size() - 2] = 0x17;
  REQUIRE(decode_trace_reply(bytes_done, out) == decode_status::ok);
  CHECK(out.status == trace_status::incomplete);
}
