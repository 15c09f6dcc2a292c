// Every decoder of network bytes gets random bytes, mutations of valid messages
// and the stored corpus: none may crash, read out of bounds (run under ASan in CI)
// or accept garbage as a different valid message without a full re-check.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <random>

#include "lib/wire/beacon.hpp"
#include "lib/wire/control.hpp"
#include "lib/wire/envelope.hpp"

using namespace meshbus::wire;

namespace {

// Runs every decoder on `in`; returns how many accepted it.
int decode_everything(byte_view in) {
  int accepted = 0;
  beacon b;
  accepted += decode_beacon(in, b) == decode_status::ok;
  control_msg c;
  accepted += decode_control(in, c) == decode_status::ok;
  std::string_view topic;
  data_kind kind{};
  std::size_t body = 0;
  if (decode_data_prefix(in, topic, kind, body) == decode_status::ok) {
    if (kind == data_kind::batch) {
      batch_header h;
      if (decode_batch(in, body, h) == decode_status::ok) {
        ++accepted;
        // A batch that validates must be fully readable.
        mp_reader r(in.subspan(h.events_offset));
        for (std::uint32_t i = 0; i < h.count; ++i) {
          byte_view p;
          event_fields f;
          REQUIRE(read_event(r, p, f));
          header_iterator it(f);
          header_view hv;
          while (it.next(hv)) {
          }
        }
        CHECK(r.at_end());
      }
    } else {
      heartbeat hb;
      accepted += decode_heartbeat(in, body, hb) == decode_status::ok;
    }
  }
  mp_reader r(in);
  while (!r.at_end() && r.skip()) {
  }
  return accepted;
}

std::vector<bytes> valid_messages() {
  std::vector<bytes> out;
  beacon b;
  b.node_id[0] = 1;
  b.epoch = 5;
  b.router_port = 1;
  b.pub_port = 2;
  out.push_back(encode_beacon(b));
  hello_msg h;
  h.router_port = 1;
  h.pub_port = 2;
  h.metadata = {{"k", "v"}};
  h.patterns = {{"a.**", 1, "g"}};
  h.peers = {{node_id_bytes{}, "127.0.0.1", 3, 4}};
  out.push_back(encode_control(h));
  out.push_back(encode_control(ready_msg{3, {{"a.b", 4}}}));
  out.push_back(encode_control(ping_msg{1, 2, 3, {}}));
  out.push_back(encode_control(nack_msg{4, "a.b", {{1, 9}}}));
  out.push_back(encode_control(ack_msg{4, {{"a.b", 9}}}));
  out.push_back(encode_control(loss_msg{4, "a.b", 1, 2}));
  const header_view hv[] = {{"a", "b"}};
  event_fields f;
  f.flags = event_flag::known;
  f.event_id = "id";
  f.type_name = "T";
  f.headers = hv;
  bytes frame;
  batch_marks marks;
  begin_batch(frame, "orders.eu", node_id_bytes{}, 1, 1, marks);
  const std::uint8_t payload[] = {1, 2, 3};
  append_event(frame, payload, &f);
  append_event(frame, payload, nullptr);
  finish_batch(frame, marks, 2, 9);
  out.push_back(frame);
  out.push_back(encode_heartbeat("orders.eu", heartbeat{}));
  return out;
}

}  // namespace

TEST_CASE("decoders survive random bytes", "[unit][wire][fuzz]") {
  std::mt19937_64 rng(20261128);
  bytes buf;
  int accepted = 0;
  for (int i = 0; i < 200000; ++i) {
    buf.resize(rng() % 96);
    for (auto& x : buf) x = static_cast<std::uint8_t>(rng());
    accepted += decode_everything(buf);
  }
  CHECK(accepted < 50);  // random bytes are (almost) never a valid message
}

TEST_CASE("decoders survive mutations of valid messages", "[unit][wire][fuzz]") {
  std::mt19937_64 rng(7);
  const auto seeds = valid_messages();
  for (const auto& seed : seeds) REQUIRE(decode_everything(seed) >= 1);
  for (int i = 0; i < 200000; ++i) {
    auto m = seeds[rng() % seeds.size()];
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits && !m.empty(); ++e) {
      const auto at = rng() % m.size();
      switch (rng() % 4) {
        case 0: m[at] = static_cast<std::uint8_t>(rng()); break;
        case 1: m[at] ^= static_cast<std::uint8_t>(1u << (rng() % 8)); break;
        case 2: m.erase(m.begin() + static_cast<std::ptrdiff_t>(at)); break;
        default: m.insert(m.begin() + static_cast<std::ptrdiff_t>(at), static_cast<std::uint8_t>(rng())); break;
      }
    }
    if (rng() % 8 == 0) m.resize(rng() % (m.size() + 1));
    decode_everything(m);
  }
  SUCCEED("no crash on 200,000 mutated messages");
}

TEST_CASE("the stored corpus replays through every decoder", "[unit][wire][fuzz]") {
  namespace fs = std::filesystem;
  const fs::path dir(MESHBUS_CORPUS_DIR);
  REQUIRE(fs::is_directory(dir));
  int files = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    const bytes data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    INFO(entry.path().filename().string());
    const int accepted = decode_everything(data);
    // Files named valid-* hold well-formed messages; all others must be refused.
    if (entry.path().filename().string().rfind("valid-", 0) == 0) {
      CHECK(accepted >= 1);
    } else {
      CHECK(accepted == 0);
    }
    ++files;
  }
  CHECK(files >= 10);
}
