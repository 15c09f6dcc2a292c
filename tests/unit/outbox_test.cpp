// The outbox: sequence numbers per topic, batching of consecutive events, byte
// bound with block/fail, and wake-ups only on empty -> not empty.
#include <catch2/catch.hpp>

#include <atomic>
#include <thread>

#include "lib/node/outbox.hpp"

using namespace meshbus;
using namespace std::chrono_literals;

namespace {
wire::byte_view view(std::string_view s) { return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()}; }

struct decoded {
  std::string topic;
  std::uint64_t first_seq;
  std::uint32_t count;
};

decoded decode(detail::outbox_batch& b) {
  wire::finish_batch(b.frame, b.marks, b.count, 1);
  std::string_view topic;
  wire::data_kind kind{};
  std::size_t body = 0;
  REQUIRE(wire::decode_data_prefix(b.frame, topic, kind, body) == wire::decode_status::ok);
  wire::batch_header h;
  REQUIRE(wire::decode_batch(b.frame, body, h) == wire::decode_status::ok);
  return {std::string(topic), h.first_seq, h.count};
}
}  // namespace

TEST_CASE("consecutive events of a topic share a batch and sequences are per topic", "[unit][node]") {
  std::atomic<int> wakes{0};
  detail::outbox box(wire::node_id_bytes{}, 1, {}, [&] { ++wakes; });
  for (int i = 0; i < 3; ++i) REQUIRE(box.push("a", view("x"), nullptr, 0ms) == detail::outbox::push_result::ok);
  REQUIRE(box.push("b", view("y"), nullptr, 0ms) == detail::outbox::push_result::ok);
  REQUIRE(box.push("a", view("z"), nullptr, 0ms) == detail::outbox::push_result::ok);
  CHECK(wakes == 1);  // only the first push found it empty
  std::vector<detail::outbox_batch> out;
  box.drain(out);
  REQUIRE(out.size() == 3);
  const auto b0 = decode(out[0]);
  const auto b1 = decode(out[1]);
  const auto b2 = decode(out[2]);
  CHECK((b0.topic == "a" && b0.first_seq == 1 && b0.count == 3));
  CHECK((b1.topic == "b" && b1.first_seq == 1 && b1.count == 1));
  CHECK((b2.topic == "a" && b2.first_seq == 4 && b2.count == 1));
  CHECK(box.empty());
  REQUIRE(box.push("a", view("w"), nullptr, 0ms) == detail::outbox::push_result::ok);
  CHECK(wakes == 2);
  out.clear();
  box.drain(out);
  CHECK(decode(out[0]).first_seq == 5);
}

TEST_CASE("a batch is closed at the byte and event limits", "[unit][node]") {
  detail::outbox::limits lim;
  lim.max_batch_bytes = 1024;
  lim.max_batch_events = 10;
  detail::outbox box(wire::node_id_bytes{}, 1, lim, nullptr);
  for (int i = 0; i < 25; ++i) REQUIRE(box.push("t", view("e"), nullptr, 0ms) == detail::outbox::push_result::ok);
  const std::string big(300, 'x');
  for (int i = 0; i < 7; ++i) REQUIRE(box.push("u", view(big), nullptr, 0ms) == detail::outbox::push_result::ok);
  std::vector<detail::outbox_batch> out;
  box.drain(out);
  std::uint64_t next_t = 1;
  std::uint64_t next_u = 1;
  for (auto& b : out) {
    const auto d = decode(b);
    CHECK(d.count <= 10);
    CHECK(b.frame.size() <= 1024 + 400);
    auto& next = d.topic == "t" ? next_t : next_u;
    CHECK(d.first_seq == next);  // contiguous across batches
    next += d.count;
  }
  CHECK(next_t == 26);
  CHECK(next_u == 8);
}

TEST_CASE("a full outbox fails at once or blocks until released", "[unit][node]") {
  detail::outbox::limits lim;
  lim.max_bytes = 4096;
  lim.max_batch_bytes = 1024;
  detail::outbox box(wire::node_id_bytes{}, 1, lim, nullptr);
  const std::string payload(900, 'p');
  int accepted = 0;
  while (box.push("t", view(payload), nullptr, 0ms) == detail::outbox::push_result::ok) ++accepted;
  CHECK(accepted >= 3);
  CHECK(box.push("t", view(payload), nullptr, 0ms) == detail::outbox::push_result::full);
  CHECK(box.push("t", view(payload), nullptr, 20ms) == detail::outbox::push_result::full);

  std::vector<detail::outbox_batch> out;
  box.drain(out);
  std::thread releaser([&] {
    std::this_thread::sleep_for(30ms);
    for (auto& b : out) box.release(b.frame.size());
  });
  CHECK(box.push("t", view(payload), nullptr, 5000ms) == detail::outbox::push_result::ok);
  releaser.join();
}

TEST_CASE("close wakes a blocked publisher and refuses further events", "[unit][node]") {
  detail::outbox::limits lim;
  lim.max_bytes = 2048;
  lim.max_batch_bytes = 1024;
  detail::outbox box(wire::node_id_bytes{}, 1, lim, nullptr);
  const std::string payload(900, 'p');
  while (box.push("t", view(payload), nullptr, 0ms) == detail::outbox::push_result::ok) {
  }
  std::thread closer([&] {
    std::this_thread::sleep_for(20ms);
    box.close();
  });
  CHECK(box.push("t", view(payload), nullptr, 10000ms) == detail::outbox::push_result::closed);
  closer.join();
  CHECK(box.push("t", view("x"), nullptr, 0ms) == detail::outbox::push_result::closed);
}
