// Every decoder of network bytes gets random bytes, mutations of valid messages
// and the stored corpus. Each decode must return ok, malformed or unsupported version
// and never throw; input sits in a buffer of exactly its size, so a read past the
// end is caught under ASan. Whatever decodes ok must survive a round trip: encoding
// the decoded value and decoding that gives the same value again.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <memory>
#include <random>

#include "lib/wire/beacon.hpp"
#include "lib/wire/control.hpp"
#include "lib/wire/envelope.hpp"
#include "lib/wire/report.hpp"
#include "lib/wire/trace.hpp"

using namespace meshbus::wire;
using meshbus::NodeId;
using meshbus::NodeReport;
using meshbus::PeerState;

namespace {

/// Outcomes of one decoder over many inputs.
struct outcomes {
  std::size_t ok = 0;
  std::size_t malformed = 0;
  std::size_t unsupported = 0;
  std::size_t invalid = 0;  ///< a status outside the three: never
  void add(decode_status s) {
    switch (s) {
      case decode_status::ok: ++ok; return;
      case decode_status::malformed: ++malformed; return;
      case decode_status::unsupported_version: ++unsupported; return;
    }
    ++invalid;
  }
  std::size_t total() const { return ok + malformed + unsupported + invalid; }
};

struct fuzz_report {
  outcomes beacon, control, data_prefix, batch, heartbeat, trace_request, trace_reply, report;
  std::size_t inputs = 0;
  std::size_t accepted = 0;          ///< inputs some decoder took as a whole message
  std::size_t threw = 0;             ///< a decoder threw: never
  std::size_t unreadable = 0;        ///< a validated batch whose events did not read back: never
  std::size_t round_trip_fails = 0;  ///< decode(encode(decoded)) != decoded: never

  std::size_t invalid() const {
    return beacon.invalid + control.invalid + data_prefix.invalid + batch.invalid + heartbeat.invalid +
           trace_request.invalid + trace_reply.invalid + report.invalid;
  }
};

/// One event of a batch, copied out of the frame.
struct event_copy {
  bytes payload;
  std::uint32_t flags = 0;  ///< known bits only: unknown ones are not re-encoded
  std::int64_t timestamp_ns = 0;
  std::string event_id, type_name, correlation_id, causation_id, content_type;
  std::uint32_t type_version = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  friend bool operator==(const event_copy&, const event_copy&) = default;
};

struct batch_copy {
  std::string topic;
  batch_header header;
  std::vector<event_copy> events;
};

bool same_header(const batch_header& a, const batch_header& b) {
  return a.publisher == b.publisher && a.epoch == b.epoch && a.first_seq == b.first_seq &&
         a.timestamp_ns == b.timestamp_ns && a.count == b.count;
}

// Reads every event of a validated batch; false if any does not read back whole.
bool read_events(byte_view frame, const batch_header& h, std::vector<event_copy>& out) {
  mp_reader r(frame.subspan(h.events_offset));
  for (std::uint32_t i = 0; i < h.count; ++i) {
    byte_view payload;
    event_fields f;
    if (!read_event(r, payload, f)) return false;
    event_copy e;
    e.payload.assign(payload.begin(), payload.end());
    e.flags = f.flags & event_flag::known;
    e.timestamp_ns = f.timestamp_ns;
    e.event_id = f.event_id;
    e.type_name = f.type_name;
    e.type_version = f.type_version;
    e.correlation_id = f.correlation_id;
    e.causation_id = f.causation_id;
    e.content_type = f.content_type;
    header_iterator it(f);
    header_view hv;
    while (it.next(hv)) e.headers.emplace_back(hv.name, hv.value);
    if (e.headers.size() != f.header_count) return false;
    out.push_back(std::move(e));
  }
  return r.at_end();
}

bytes encode_batch(const batch_copy& b) {
  bytes frame;
  batch_marks marks;
  begin_batch(frame, b.topic, b.header.publisher, b.header.epoch, b.header.first_seq, marks);
  for (const auto& e : b.events) {
    std::vector<header_view> headers;
    for (const auto& [k, v] : e.headers) headers.push_back({k, v});
    event_fields f;
    f.flags = e.flags;
    f.timestamp_ns = e.timestamp_ns;
    f.event_id = e.event_id;
    f.type_name = e.type_name;
    f.type_version = e.type_version;
    f.correlation_id = e.correlation_id;
    f.causation_id = e.causation_id;
    f.content_type = e.content_type;
    f.headers = headers;
    append_event(frame, e.payload, &f);
  }
  finish_batch(frame, marks, b.header.count, b.header.timestamp_ns);
  return frame;
}

// Decodes a data frame completely: prefix, then batch (with its events) or heartbeat.
decode_status decode_data(byte_view in, fuzz_report& rep, batch_copy* batch, std::string* topic_out,
                          heartbeat* hb) {
  std::string_view topic;
  data_kind kind{};
  std::size_t body = 0;
  const auto prefix = decode_data_prefix(in, topic, kind, body);
  rep.data_prefix.add(prefix);
  if (prefix != decode_status::ok) return prefix;
  if (kind == data_kind::heartbeat) {
    heartbeat h;
    const auto s = decode_heartbeat(in, body, h);
    rep.heartbeat.add(s);
    if (s == decode_status::ok && hb != nullptr) *hb = h;
    if (topic_out != nullptr) topic_out->assign(topic);
    return s;
  }
  batch_header h;
  const auto s = decode_batch(in, body, h);
  rep.batch.add(s);
  if (s != decode_status::ok || batch == nullptr) return s;
  batch->topic.assign(topic);
  batch->header = h;
  if (!read_events(in, h, batch->events)) ++rep.unreadable;
  return s;
}

void check_beacon(byte_view in, fuzz_report& rep) {
  beacon b;
  const auto s = decode_beacon(in, b);
  rep.beacon.add(s);
  if (s != decode_status::ok) return;
  ++rep.accepted;
  beacon again;
  const auto re = encode_beacon(b);
  if (decode_beacon(re, again) != decode_status::ok || again.flags != b.flags || again.node_id != b.node_id ||
      again.epoch != b.epoch || again.cluster_hash != b.cluster_hash || again.router_port != b.router_port ||
      again.pub_port != b.pub_port) {
    ++rep.round_trip_fails;
  }
}

void check_control(byte_view in, fuzz_report& rep) {
  control_msg c;
  const auto s = decode_control(in, c);
  rep.control.add(s);
  if (s != decode_status::ok) return;
  ++rep.accepted;
  control_msg again;
  if (decode_control(encode_control(c), again) != decode_status::ok || !(again == c)) ++rep.round_trip_fails;
}

void check_data(byte_view in, fuzz_report& rep) {
  fuzz_report scratch;  // the re-decode is not an input of its own
  batch_copy batch;
  std::string topic;
  heartbeat hb;
  if (decode_data(in, rep, &batch, &topic, &hb) != decode_status::ok) return;
  ++rep.accepted;
  if (batch.header.count != 0) {  // a batch (count >= 1), not a heartbeat
    batch_copy again;
    const auto re = encode_batch(batch);
    if (decode_data(re, scratch, &again, nullptr, nullptr) != decode_status::ok || again.topic != batch.topic ||
        !same_header(again.header, batch.header) || again.events != batch.events) {
      ++rep.round_trip_fails;
    }
  } else {
    std::string topic_again;
    heartbeat hb_again;
    const auto re = encode_heartbeat(topic, hb);
    if (decode_data(re, scratch, nullptr, &topic_again, &hb_again) != decode_status::ok || topic_again != topic ||
        hb_again.publisher != hb.publisher || hb_again.epoch != hb.epoch || hb_again.last_seq != hb.last_seq ||
        hb_again.timestamp_ns != hb.timestamp_ns) {
      ++rep.round_trip_fails;
    }
  }
}

// Trace requests and answers are event payloads (docs/protocol.md §10).
void check_trace(byte_view in, fuzz_report& rep) {
  trace_request req;
  auto s = decode_trace_request(in, req);
  rep.trace_request.add(s);
  if (s == decode_status::ok) {
    ++rep.accepted;
    trace_request again;
    if (decode_trace_request(encode_trace_request(req), again) != decode_status::ok || !(again == req)) {
      ++rep.round_trip_fails;
    }
  }
  trace_reply reply;
  s = decode_trace_reply(in, reply);
  rep.trace_reply.add(s);
  if (s == decode_status::ok) {
    ++rep.accepted;
    trace_reply again;
    if (decode_trace_reply(encode_trace_reply(reply), again) != decode_status::ok || !(again == reply)) {
      ++rep.round_trip_fails;
    }
  }
}

// Node reports are STATUS_REPLY payloads (docs/protocol.md §11). Decoding maps what it
// does not know away (unknown keys and statistics, other histogram bounds), so the
// property is that the second round trip changes nothing.
void check_report(byte_view in, fuzz_report& rep) {
  NodeReport r;
  const auto s = decode_report(in, r);
  rep.report.add(s);
  if (s != decode_status::ok) return;
  ++rep.accepted;
  const auto once = encode_report(r);
  NodeReport again;
  if (decode_report(once, again) != decode_status::ok || encode_report(again) != once) ++rep.round_trip_fails;
}

// Runs every decoder on `in`, from a heap buffer of exactly its size.
void decode_everything(byte_view in, fuzz_report& rep) {
  ++rep.inputs;
  const auto exact = std::make_unique<std::uint8_t[]>(in.size());
  std::copy(in.begin(), in.end(), exact.get());
  const byte_view view(exact.get(), in.size());
  try {
    check_beacon(view, rep);
    check_control(view, rep);
    check_data(view, rep);
    check_trace(view, rep);
    check_report(view, rep);
    mp_reader r(view);
    while (!r.at_end() && r.skip()) {
    }
  } catch (...) {
    ++rep.threw;
  }
}

void require_sound(const fuzz_report& rep) {
  INFO("inputs " << rep.inputs);
  CHECK(rep.threw == 0);
  CHECK(rep.invalid() == 0);
  CHECK(rep.unreadable == 0);
  CHECK(rep.round_trip_fails == 0);
  CHECK(rep.beacon.total() == rep.inputs);
  CHECK(rep.control.total() == rep.inputs);
  CHECK(rep.data_prefix.total() == rep.inputs);
  CHECK(rep.batch.total() + rep.heartbeat.total() == rep.data_prefix.ok);
  CHECK(rep.trace_request.total() == rep.inputs);
  CHECK(rep.trace_reply.total() == rep.inputs);
  CHECK(rep.report.total() == rep.inputs);
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
  out.push_back(encode_control(request_msg{9, "svc", 100, "T", 1, "c", "d", "payload"}));
  const header_view hv[] = {{"a", "b"}};
  event_fields f;
  f.flags = event_flag::known;
  f.timestamp_ns = -3;
  f.event_id = "id";
  f.type_name = "T";
  f.type_version = 2;
  f.correlation_id = "co";
  f.causation_id = "ca";
  f.content_type = "ct";
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
  out.push_back(encode_trace_request({"checkout-42", "$meshbus.trace.reply.ab", 7}));
  trace_reply chunk;
  chunk.request_id = 7;
  chunk.node_name = "n";
  chunk.records.push_back({"id", "cause", "checkout-42", "orders.eu", "T", 2, node_id_bytes{}, 3, 4, -5});
  out.push_back(encode_trace_reply(chunk));
  trace_reply done;
  done.what = trace_reply::kind::done;
  done.count = 1;
  done.status = trace_status::truncated;
  done.note = "more";
  out.push_back(encode_trace_reply(done));
  NodeReport report;
  report.id.bytes[0] = 7;
  report.name = "n";
  report.stats.events_published = 5;
  report.peers.push_back({NodeId{}, "p", "127.0.0.1", PeerState::suspect, 12});
  report.published.push_back({report.id, "orders.eu", 9, 1.5});
  report.received.push_back({NodeId{}, "orders.us", 3, 0});
  report.lagging.push_back({NodeId{}, "slow", 4, 250, true});
  report.subscriptions = {"orders.*"};
  report.delivery_latency.counts[2] = 3;
  report.delivery_latency.count = 3;
  out.push_back(encode_report(report));
  out.push_back(encode_control(status_request_msg{3}));
  const auto report_bytes = encode_report(report);
  out.push_back(encode_control(status_reply_msg{3, std::string(report_bytes.begin(), report_bytes.end())}));
  return out;
}

bytes mutate(bytes m, std::mt19937_64& rng) {
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
  return m;
}

}  // namespace

TEST_CASE("decoders survive random bytes", "[unit][wire][fuzz]") {
  std::mt19937_64 rng(20261128);
  bytes buf;
  fuzz_report rep;
  for (int i = 0; i < 200000; ++i) {
    buf.resize(rng() % 96);
    for (auto& x : buf) x = static_cast<std::uint8_t>(rng());
    decode_everything(buf, rep);
  }
  require_sound(rep);
  CHECK(rep.accepted < 50);  // random bytes are (almost) never a valid message
  CHECK(rep.beacon.malformed > rep.inputs * 99 / 100);
}

TEST_CASE("every seed message decodes ok and round-trips", "[unit][wire][fuzz]") {
  fuzz_report rep;
  for (const auto& seed : valid_messages()) decode_everything(seed, rep);
  require_sound(rep);
  CHECK(rep.accepted == rep.inputs);
}

TEST_CASE("decoders survive mutations of valid messages", "[unit][wire][fuzz]") {
  std::mt19937_64 rng(7);
  const auto seeds = valid_messages();
  fuzz_report rep;
  for (int i = 0; i < 200000; ++i) decode_everything(mutate(seeds[rng() % seeds.size()], rng), rep);
  require_sound(rep);
  INFO("accepted " << rep.accepted << " of " << rep.inputs);
  // Edits that land in a payload, a string or a number leave a valid message; most
  // others break it. Either way both outcomes must be common, and every decoder
  // must have seen its version byte changed.
  CHECK(rep.accepted > rep.inputs / 20);
  CHECK(rep.accepted < rep.inputs / 2);
  CHECK(rep.beacon.ok > 0);
  CHECK(rep.control.ok > 0);
  CHECK(rep.batch.ok > 0);
  CHECK(rep.heartbeat.ok > 0);
  CHECK(rep.beacon.unsupported > 0);
  CHECK(rep.control.unsupported > 0);
  CHECK(rep.data_prefix.unsupported > 0);
  CHECK(rep.batch.malformed > 0);
  CHECK(rep.heartbeat.malformed > 0);
  CHECK(rep.trace_request.ok > 0);
  CHECK(rep.trace_request.malformed > 0);
  CHECK(rep.trace_reply.ok > 0);
  CHECK(rep.trace_reply.malformed > 0);
  CHECK(rep.report.ok > 0);
  CHECK(rep.report.malformed > 0);
}

TEST_CASE("the stored corpus replays through every decoder", "[unit][wire][fuzz]") {
  namespace fs = std::filesystem;
  const fs::path dir(MESHBUS_CORPUS_DIR);
  REQUIRE(fs::is_directory(dir));
  int files = 0;
  fuzz_report all;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    const bytes data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    INFO(entry.path().filename().string());
    const auto before = all.accepted;
    decode_everything(data, all);
    // Files named valid-* hold well-formed messages; all others must be refused.
    if (entry.path().filename().string().rfind("valid-", 0) == 0) {
      CHECK(all.accepted > before);
    } else {
      CHECK(all.accepted == before);
    }
    ++files;
  }
  require_sound(all);
  CHECK(files >= 10);
}
