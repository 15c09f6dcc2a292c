// transport::frame: owning one message's bytes without ZeroMQ in the header, sharing
// large buffers instead of copying them, and moving to and from zmq::message_t.
#include <catch2/catch.hpp>

#include <string>
#include <utility>
#include <vector>

#include "lib/transport/frame.hpp"
#include "lib/transport/zmq_frame.hpp"

using meshbus::transport::frame;

TEST_CASE("a frame built from bytes holds a copy of them", "[unit][transport]") {
  std::string text = "orders.eu.placed";
  const frame f(text);
  text[0] = 'X';
  CHECK(f.size() == 16);
  CHECK(f.view() == "orders.eu.placed");
  CHECK_FALSE(f.empty());
}

TEST_CASE("an empty frame has no bytes", "[unit][transport]") {
  const frame f;
  CHECK(f.empty());
  CHECK(f.size() == 0);
  CHECK(f.view().empty());
}

TEST_CASE("moving a frame moves its bytes and leaves the source empty", "[unit][transport]") {
  // Small messages keep their bytes inside the message itself: the cached pointer
  // must follow the move. Large ones keep them on the heap.
  for (const std::size_t size : {std::size_t{5}, std::size_t{33}, std::size_t{34}, std::size_t{100000}}) {
    const std::string bytes(size, 'a');
    frame a(bytes);
    frame b(std::move(a));
    CHECK(b.view() == bytes);
    CHECK(a.empty());  // NOLINT(bugprone-use-after-move): moved-from frames are empty
    frame c;
    c = std::move(b);
    CHECK(c.view() == bytes);
    CHECK(b.empty());  // NOLINT(bugprone-use-after-move)
    std::vector<frame> many;
    for (int i = 0; i < 100; ++i) many.emplace_back(bytes);  // reallocations move them
    for (const auto& f : many) CHECK(f.view() == bytes);
  }
}

TEST_CASE("sharing a large frame shares its buffer instead of copying it", "[unit][transport]") {
  const std::string bytes(4096, 'z');
  const frame original(bytes);
  const frame shared = original.share();
  CHECK(shared.data() == original.data());
  CHECK(shared.view() == bytes);
  // The buffer lives as long as any share of it.
  frame kept;
  {
    const frame temporary(bytes);
    kept = temporary.share();
  }
  CHECK(kept.view() == bytes);
}

TEST_CASE("sharing a small frame copies its few bytes", "[unit][transport]") {
  const frame original(std::string_view("tiny"));
  const frame shared = original.share();
  CHECK(shared.view() == "tiny");
  CHECK(original.view() == "tiny");
}

TEST_CASE("a frame and a zmq message convert into each other without copying", "[unit][transport]") {
  const std::string bytes(1000, 'q');
  zmq::message_t m(bytes.data(), bytes.size());
  const void* where = m.data();
  frame f = meshbus::transport::to_frame(std::move(m));
  CHECK(f.data() == where);
  CHECK(f.view() == bytes);
  CHECK(m.size() == 0);  // NOLINT(bugprone-use-after-move)
  zmq::message_t back = meshbus::transport::to_message(std::move(f));
  CHECK(back.data() == where);
  CHECK(back.size() == bytes.size());
  CHECK(f.empty());  // NOLINT(bugprone-use-after-move)
}
