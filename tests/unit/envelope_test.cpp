// Data frames: batch encoding with all optional fields, heartbeats, and every
// malformed case (truncation, bad counts, trailing bytes, missing fields).
#include <catch2/catch.hpp>

#include <cstring>

#include "lib/wire/envelope.hpp"

using namespace meshbus::wire;

namespace {
node_id_bytes publisher() {
  node_id_bytes id{};
  for (std::size_t i = 0; i < 16; ++i) id[i] = static_cast<std::uint8_t>(0xa0 + i);
  return id;
}
byte_view view(std::string_view s) { return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()}; }

bytes sample_batch(std::uint32_t count, const event_fields* fields = nullptr) {
  bytes frame;
  batch_marks marks;
  begin_batch(frame, "orders.eu.placed", publisher(), 77, 1000, marks);
  for (std::uint32_t i = 0; i < count; ++i) append_event(frame, view("payload-" + std::to_string(i)), fields);
  finish_batch(frame, marks, count, 1'700'000'000'000'000'000ULL);
  return frame;
}
}  // namespace

TEST_CASE("a batch starts with its topic, so ZeroMQ prefix filters work", "[unit][wire]") {
  const auto frame = sample_batch(3);
  CHECK(std::memcmp(frame.data(), "orders.eu.placed\0", 17) == 0);
  std::string_view topic;
  data_kind kind{};
  std::size_t body = 0;
  REQUIRE(decode_data_prefix(frame, topic, kind, body) == decode_status::ok);
  CHECK(topic == "orders.eu.placed");
  CHECK(kind == data_kind::batch);
}

TEST_CASE("a batch round-trips its shared header and every event", "[unit][wire]") {
  const auto frame = sample_batch(5);
  std::string_view topic;
  data_kind kind{};
  std::size_t body = 0;
  REQUIRE(decode_data_prefix(frame, topic, kind, body) == decode_status::ok);
  batch_header h;
  REQUIRE(decode_batch(frame, body, h) == decode_status::ok);
  CHECK(h.publisher == publisher());
  CHECK(h.epoch == 77);
  CHECK(h.first_seq == 1000);
  CHECK(h.count == 5);
  CHECK(h.timestamp_ns == 1'700'000'000'000'000'000ULL);
  mp_reader r(byte_view(frame).subspan(h.events_offset));
  for (std::uint32_t i = 0; i < 5; ++i) {
    byte_view payload;
    event_fields f;
    REQUIRE(read_event(r, payload, f));
    CHECK(std::string_view(reinterpret_cast<const char*>(payload.data()), payload.size()) ==
          "payload-" + std::to_string(i));
    CHECK(f.flags == 0);
  }
  CHECK(r.at_end());
}

TEST_CASE("a batch's marks say where its events begin, as the decoder finds it", "[unit][wire]") {
  bytes frame;
  batch_marks marks;
  begin_batch(frame, "orders.eu.placed", publisher(), 77, 1000, marks);
  CHECK(marks.events_at == frame.size());
  append_event(frame, view("x"), nullptr);
  finish_batch(frame, marks, 1, 5);
  std::string_view topic;
  data_kind kind{};
  std::size_t body = 0;
  REQUIRE(decode_data_prefix(frame, topic, kind, body) == decode_status::ok);
  batch_header h;
  REQUIRE(decode_batch(frame, body, h) == decode_status::ok);
  CHECK(h.events_offset == marks.events_at);
}

TEST_CASE("a small event costs only a few bytes beyond its payload", "[unit][wire]") {
  const auto one = sample_batch(1);
  const auto two = sample_batch(2);
  const auto per_event = two.size() - one.size();
  CHECK(per_event <= std::string("payload-1").size() + 4);
}

TEST_CASE("optional fields round-trip and cost nothing when absent", "[unit][wire]") {
  const header_view headers[] = {{"tenant", "acme"}, {"trace", "abc123"}};
  event_fields f;
  f.flags = event_flag::known;
  f.timestamp_ns = -5;
  f.event_id = "order-42";
  f.type_name = "OrderPlaced";
  f.type_version = 3;
  f.correlation_id = "corr-1";
  f.causation_id = "cause-1";
  f.content_type = "application/msgpack";
  f.headers = headers;
  const auto frame = sample_batch(2, &f);
  std::string_view topic;
  data_kind kind{};
  std::size_t body = 0;
  REQUIRE(decode_data_prefix(frame, topic, kind, body) == decode_status::ok);
  batch_header h;
  REQUIRE(decode_batch(frame, body, h) == decode_status::ok);
  mp_reader r(byte_view(frame).subspan(h.events_offset));
  byte_view payload;
  event_fields out;
  REQUIRE(read_event(r, payload, out));
  CHECK(out.timestamp_ns == -5);
  CHECK(out.event_id == "order-42");
  CHECK(out.type_name == "OrderPlaced");
  CHECK(out.type_version == 3);
  CHECK(out.correlation_id == "corr-1");
  CHECK(out.causation_id == "cause-1");
  CHECK(out.content_type == "application/msgpack");
  header_iterator it(out);
  header_view hv;
  REQUIRE(it.next(hv));
  CHECK(hv.name == "tenant");
  CHECK(hv.value == "acme");
  REQUIRE(it.next(hv));
  CHECK(hv.name == "trace");
  CHECK_FALSE(it.next(hv));
}

TEST_CASE("every truncation of a batch is malformed", "[unit][wire]") {
  const auto frame = sample_batch(3);
  for (std::size_t n = 0; n < frame.size(); ++n) {
    INFO("length " << n);
    const byte_view cut(frame.data(), n);
    std::string_view topic;
    data_kind kind{};
    std::size_t body = 0;
    auto st = decode_data_prefix(cut, topic, kind, body);
    if (st == decode_status::ok) {
      batch_header h;
      st = decode_batch(cut, body, h);
    }
    CHECK(st == decode_status::malformed);
  }
}

TEST_CASE("malformed batches are refused case by case", "[unit][wire]") {
  auto frame = sample_batch(3);
  std::string_view topic;
  data_kind kind{};
  std::size_t body = 0;
  REQUIRE(decode_data_prefix(frame, topic, kind, body) == decode_status::ok);
  batch_header h;
  SECTION("trailing bytes after the last event") {
    frame.push_back(0x01);
    CHECK(decode_batch(frame, body, h) == decode_status::malformed);
  }
  SECTION("count larger than the events present") {
    auto b = frame;
    // The count is the last header field: a fixed uint32 right before the events.
    REQUIRE(decode_batch(frame, body, h) == decode_status::ok);
    b[h.events_offset - 1] = 4;
    CHECK(decode_batch(b, body, h) == decode_status::malformed);
  }
  SECTION("count zero") {
    REQUIRE(decode_batch(frame, body, h) == decode_status::ok);
    auto b = frame;
    b[h.events_offset - 1] = 0;
    CHECK(decode_batch(b, body, h) == decode_status::malformed);
  }
  SECTION("another protocol version") {
    frame[body - 2] = 9;
    CHECK(decode_data_prefix(frame, topic, kind, body) == decode_status::unsupported_version);
  }
  SECTION("unknown frame kind") {
    frame[body - 1] = 0x7f;
    CHECK(decode_data_prefix(frame, topic, kind, body) == decode_status::malformed);
  }
  SECTION("no NUL after the topic") {
    const bytes b(300, 'a');
    CHECK(decode_data_prefix(b, topic, kind, body) == decode_status::malformed);
  }
  SECTION("empty topic") {
    const bytes b = {0, 1, 1, 0x90};
    CHECK(decode_data_prefix(b, topic, kind, body) == decode_status::malformed);
  }
  SECTION("an event whose flags promise fields it lacks") {
    bytes b;
    batch_marks marks;
    begin_batch(b, "t", publisher(), 1, 1, marks);
    mp_writer w(b);
    w.array(2);
    w.uint(event_flag::event_id);  // says an id follows, but the array has only 2 items
    w.bin(view("x"));
    finish_batch(b, marks, 1, 1);
    REQUIRE(decode_data_prefix(b, topic, kind, body) == decode_status::ok);
    CHECK(decode_batch(b, body, h) == decode_status::malformed);
  }
  SECTION("sequence zero") {
    bytes b;
    batch_marks marks;
    begin_batch(b, "t", publisher(), 1, 0, marks);
    append_event(b, view("x"), nullptr);
    finish_batch(b, marks, 1, 1);
    REQUIRE(decode_data_prefix(b, topic, kind, body) == decode_status::ok);
    CHECK(decode_batch(b, body, h) == decode_status::malformed);
  }
}

TEST_CASE("heartbeats round-trip and reject garbage", "[unit][wire]") {
  heartbeat hb;
  hb.publisher = publisher();
  hb.epoch = 5;
  hb.last_seq = 123456789;
  hb.timestamp_ns = 42;
  const auto frame = encode_heartbeat("orders.eu", hb);
  std::string_view topic;
  data_kind kind{};
  std::size_t body = 0;
  REQUIRE(decode_data_prefix(frame, topic, kind, body) == decode_status::ok);
  CHECK(kind == data_kind::heartbeat);
  CHECK(topic == "orders.eu");
  heartbeat out;
  REQUIRE(decode_heartbeat(frame, body, out) == decode_status::ok);
  CHECK(out.last_seq == 123456789);
  CHECK(out.publisher == hb.publisher);
  for (std::size_t n = body; n < frame.size(); ++n) {
    CHECK(decode_heartbeat(byte_view(frame.data(), n), body, out) == decode_status::malformed);
  }
}

TEST_CASE("an event's unknown flag bits and extra elements are skipped", "[unit][wire]") {
  // Hand-written event: flags = bit 7 (unknown) | event id; elements: flags, payload,
  // event id, then whatever a later revision appends (`extra` elements).
  auto frame_with = [](std::uint32_t extra) {
    bytes frame;
    batch_marks marks;
    begin_batch(frame, "t", publisher(), 1, 1, marks);
    mp_writer w(frame);
    w.array(3 + extra);
    w.uint((1u << 7) | event_flag::event_id);
    w.bin(view("p"));
    w.str("id-1");
    for (std::uint32_t i = 0; i < extra; ++i) w.str("later");
    finish_batch(frame, marks, 1, 5);
    return frame;
  };
  for (std::uint32_t extra : {0u, 1u, 3u}) {
    INFO("extra elements: " << extra);
    const auto frame = frame_with(extra);
    batch_header h;
    REQUIRE(decode_batch(frame, 4, h) == decode_status::ok);
    mp_reader r(byte_view(frame).subspan(h.events_offset));
    byte_view payload;
    event_fields f;
    REQUIRE(read_event(r, payload, f));
    CHECK(f.event_id == "id-1");
    CHECK(r.at_end());
  }
}

TEST_CASE("an event with fewer elements than its known flags announce is malformed", "[unit][wire]") {
  bytes frame;
  batch_marks marks;
  begin_batch(frame, "t", publisher(), 1, 1, marks);
  mp_writer w(frame);
  w.array(2);
  w.uint(event_flag::event_id);
  w.bin(view("p"));
  finish_batch(frame, marks, 1, 5);
  batch_header h;
  CHECK(decode_batch(frame, 4, h) == decode_status::malformed);
}
