// The meshbus tool and the demo, run as a user would: real processes, real pipes.
#include <catch2/catch.hpp>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include <meshbus/typed.hpp>

#include "lib/store/log_store.hpp"
#include "tests/support/http.hpp"
#include "tests/support/node_helpers.hpp"

using namespace meshbus;
using namespace meshbus::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {
std::vector<std::string> tool(std::initializer_list<std::string> args) {
  std::vector<std::string> argv{MESHBUS_TOOL};
  argv.insert(argv.end(), args);
  return argv;
}

/// The tool beside in-process nodes made with fast_options(): the same 100 ms beacons, so
/// neither side takes the other for gone.
std::vector<std::string> fast_tool(const std::string& cluster, std::initializer_list<std::string> args) {
  auto argv = tool(args);
  argv.insert(argv.end(), {"--cluster", cluster, "--beacon-interval", "100"});
  return argv;
}

std::vector<std::string> words_of(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> words;
  for (std::string w; in >> w;) words.push_back(w);
  return words;
}

/// The number after "key": in a flat JSON line.
std::optional<std::uint64_t> json_number(const std::string& line, const std::string& key) {
  const auto at = line.find("\"" + key + "\":");
  if (at == std::string::npos) return std::nullopt;
  return std::stoull(line.substr(at + key.size() + 3));
}

/// Holds a handler until opened; opens itself when destroyed, so a failing test never leaves
/// a Node waiting for its handler thread.
class gate {
 public:
  ~gate() { open(); }
  void open() {
    std::lock_guard lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  void pass() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return open_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

// "1\n2\n...n\n": what `meshbus pub` reads from stdin in the line tests.
std::string numbered_lines(int n) {
  std::string lines;
  for (int i = 1; i <= n; ++i) lines += std::to_string(i) + "\n";
  return lines;
}

// `meshbus sub` printed "<topic> 1" to "<topic> n", one per line, in order.
void check_numbered_lines(const std::string& out_text, const std::string& topic, int n) {
  const auto out = lines_of(out_text);
  REQUIRE(out.size() == static_cast<std::size_t>(n));
  for (int i = 1; i <= n; ++i) {
    if (out[static_cast<std::size_t>(i - 1)] != topic + " " + std::to_string(i)) {
      FAIL("line " << i << " is '" << out[static_cast<std::size_t>(i - 1)] << "'");
    }
  }
}
}  // namespace

TEST_CASE("meshbus pub from stdin reaches meshbus sub: all 6,000 lines, in order", "[multiprocess][tool]") {
  const auto cluster = unique_cluster("tool");
  child_process sub(tool({"sub", "--cluster", cluster, "demo.**", "--count", "6000", "--timeout", "60000"}));
  // Start the publisher once the subscriber exists (it may also start first: pub waits).
  child_process::options po;
  po.stdin_text = numbered_lines(6000);
  child_process pub(tool({"pub", "--cluster", cluster, "--subscribers", "1", "demo.lines"}), po);
  const auto pub_code = pub.wait(60s);
  INFO("pub stderr: " << pub.err());
  REQUIRE(pub_code == 0);
  CHECK_THAT(pub.err(), Catch::Contains("published 6000 events"));
  const auto sub_code = sub.wait(60s);
  INFO("sub stderr: " << sub.err());
  REQUIRE(sub_code == 0);
  check_numbered_lines(sub.out(), "demo.lines", 6000);
}

TEST_CASE("meshbus peers lists a running subscriber", "[multiprocess][tool]") {
  const auto cluster = unique_cluster("toolpeers");
  child_process sub(tool({"sub", "--cluster", cluster, "--name", "listener", "a.*"}));
  child_process peers(tool({"peers", "--cluster", cluster, "--expect", "1", "--wait", "10000"}));
  REQUIRE(peers.wait(20s) == 0);
  CHECK_THAT(peers.out(), Catch::Contains("listener") && Catch::Contains("127.0.0.1") && Catch::Contains("a.*"));
  sub.signal(SIGINT);
  CHECK(sub.wait(10s) == 0);
}

TEST_CASE("meshbus peers shows each seed and whether it answered, as a table and as JSON", "[multiprocess][tool]") {
  const auto cluster = unique_cluster("toolseeds");
  // Beacon ports of their own: the tool can meet the seed node only by calling it.
  std::random_device rd;
  auto lonely_beacon_port = [&] { return static_cast<std::uint16_t>(20000 + rd() % 40000); };
  auto os = fast_options(cluster, "seed");
  os.beacon_port = lonely_beacon_port();
  Node seed(os);
  const auto seed_address = "127.0.0.1:" + std::to_string(seed.router_port());
  const auto seeds = seed_address + ",no-such-host.invalid:7000";
  const auto beacon_port = std::to_string(lonely_beacon_port());
  // --wait bounds how long the tool listens: long enough for a seed called every 100 ms.
  child_process table(
      fast_tool(cluster, {"peers", "--peers", seeds, "--beacon-port", beacon_port, "--wait", "2000"}));
  child_process json(
      fast_tool(cluster, {"peers", "--peers", seeds, "--beacon-port", beacon_port, "--wait", "2000", "--json"}));
  REQUIRE(table.wait(20s) == 0);
  REQUIRE(json.wait(20s) == 0);
  INFO("table:\n" << table.out() << table.err() << "\njson:\n" << json.out() << json.err());

  const auto lines = lines_of(table.out());
  auto has_row = [&](const std::vector<std::string>& row) {
    return std::any_of(lines.begin(), lines.end(), [&](const std::string& l) { return words_of(l) == row; });
  };
  CHECK(has_row({"SEED", "STATE", "NODE"}));
  CHECK(has_row({seed_address, "answered", seed.id().short_string()}));
  CHECK(has_row({"no-such-host.invalid:7000", "unresolvable", "-"}));
  CHECK_THAT(table.out(), Catch::Contains("seed") && Catch::Contains("alive"));  // the peer row

  CHECK_THAT(json.out(), Catch::Contains("{\"seed\":\"" + seed_address + "\",\"state\":\"answered\",\"id\":\"" +
                                        seed.id().to_string() + "\",\"short_id\":\"" + seed.id().short_string() +
                                        "\"}"));
  CHECK_THAT(json.out(), Catch::Contains("{\"seed\":\"no-such-host.invalid:7000\",\"state\":\"unresolvable\"}"));
  CHECK_THAT(json.out(), Catch::Contains("\"name\":\"seed\""));  // the peer object
}

TEST_CASE("the tool's exit codes: usage 2, timeout 3", "[integration][tool]") {
  const auto cluster = unique_cluster("toolexit");
  child_process bad_pattern(tool({"sub", "--cluster", cluster, "a..b"}));
  CHECK(bad_pattern.wait(10s) == 2);
  CHECK_THAT(bad_pattern.err(), Catch::Contains("meshbus: invalid pattern"));
  child_process bad_topic(tool({"pub", "--cluster", cluster, "a.*", "x"}));
  CHECK(bad_topic.wait(10s) == 2);
  child_process bad_flag(tool({"sub", "--no-such-flag"}));
  CHECK(bad_flag.wait(10s) == 2);
  child_process nobody(tool({"sub", "--cluster", cluster, "--count", "5", "--timeout", "300", "x.y"}));
  CHECK(nobody.wait(10s) == 3);
  CHECK_THAT(nobody.err(), Catch::Contains("received 0 of 5"));
  child_process no_subscribers(tool({"pub", "--cluster", cluster, "--subscribers", "1", "--timeout", "300", "x.y", "z"}));
  CHECK(no_subscribers.wait(10s) == 3);
}

TEST_CASE("meshbus pub: 6,000 lines arrive in order even when the link is down for a while in the middle",
          "[multiprocess][tool]") {
  const auto cluster = unique_cluster("toolcut");
  // The subscriber's inbound link is cut from 1.0 s to 2.5 s after it starts. The publisher
  // starts right after it and sends for 2 s at 3,000/s once the subscriber is ready (well
  // under 1 s after start), so the cut falls inside the stream and the rest of it is repaired.
  child_process::options so;
  so.env["MESHBUS_FAULTS"] = "cut_at_ms=1000,cut_for_ms=1500";
  child_process sub(tool({"sub", "--cluster", cluster, "cut.**", "--count", "6000", "--timeout", "60000"}),
                    so);
  child_process::options po;
  po.stdin_text = numbered_lines(6000);
  child_process pub(tool({"pub", "--cluster", cluster, "--subscribers", "1", "--rate", "3000", "cut.lines"}),
                    po);
  const auto pub_code = pub.wait(60s);
  INFO("pub stderr: " << pub.err());
  REQUIRE(pub_code == 0);
  CHECK_THAT(pub.err(), Catch::Contains("published 6000 events"));
  const auto sub_code = sub.wait(60s);
  INFO("sub stderr: " << sub.err());
  REQUIRE(sub_code == 0);
  CHECK_THAT(sub.err(), !Catch::Contains("lost"));
  check_numbered_lines(sub.out(), "cut.lines", 6000);
}

TEST_CASE("meshbus pub exits 3 when a subscriber does not acknowledge in time", "[multiprocess][tool]") {
  const auto cluster = unique_cluster("toolflush");
  Node holder(fast_options(cluster, "stuck"));
  gate stuck;  // after the node: opened (and the handler let go) before the node stops
  SubscribeOptions o;
  o.delivery = Delivery::acknowledged;
  holder.subscribe(
      "slow.x", [&](const Event&) { stuck.pass(); }, o);
  child_process pub(
      fast_tool(cluster, {"pub", "--subscribers", "1", "--timeout", "1500", "slow.x", "hello"}));
  const auto code = pub.wait(30s);
  INFO("pub stderr: " << pub.err());
  CHECK(code == 3);
  CHECK_THAT(pub.err(),
             Catch::Contains("timed out after 1500 ms waiting for the subscribers to acknowledge"));
  stuck.open();
}

TEST_CASE("meshbus sub --mode best_effort and --start now|earliest|SEQ", "[multiprocess][tool]") {
  const auto cluster = unique_cluster("toolstart");
  Node publisher(fast_options(cluster, "history"));
  for (int i = 1; i <= 5; ++i) REQUIRE(publisher.publish("hist.a", std::to_string(i)) == PublishResult::ok);

  SECTION("best_effort receives what is published") {
    child_process sub(
        fast_tool(cluster, {"sub", "--mode", "best_effort", "--count", "3", "--timeout", "20000", "live.*"}));
    REQUIRE(publisher.wait_for_subscribers("live.x", 1, 20s));
    for (int i = 1; i <= 3; ++i)
      REQUIRE(publisher.publish("live.x", "e" + std::to_string(i)) == PublishResult::ok);
    REQUIRE(sub.wait(30s) == 0);
    CHECK(lines_of(sub.out()) == std::vector<std::string>{"live.x e1", "live.x e2", "live.x e3"});
  }
  SECTION("now (the default) skips what was published before") {
    child_process sub(fast_tool(cluster, {"sub", "--count", "1", "--timeout", "20000", "hist.*"}));
    REQUIRE(publisher.wait_for_subscribers("hist.a", 1, 20s));
    REQUIRE(publisher.publish("hist.a", "6") == PublishResult::ok);
    REQUIRE(sub.wait(30s) == 0);
    CHECK(lines_of(sub.out()) == std::vector<std::string>{"hist.a 6"});
  }
  SECTION("earliest prints the events published before it started") {
    child_process sub(
        fast_tool(cluster, {"sub", "--start", "earliest", "--count", "5", "--timeout", "20000", "hist.*"}));
    REQUIRE(sub.wait(30s) == 0);
    CHECK(lines_of(sub.out()) ==
          std::vector<std::string>{"hist.a 1", "hist.a 2", "hist.a 3", "hist.a 4", "hist.a 5"});
  }
  SECTION("a sequence number starts there") {
    child_process sub(fast_tool(cluster, {"sub", "--start", "4", "--mode", "acknowledged", "--count", "2",
                                          "--timeout", "20000", "hist.*"}));
    REQUIRE(sub.wait(30s) == 0);
    CHECK(lines_of(sub.out()) == std::vector<std::string>{"hist.a 4", "hist.a 5"});
  }
}

TEST_CASE("meshbus sub --mode best_effort reports every lost event, on stderr and as JSON",
          "[multiprocess][tool]") {
  const auto cluster = unique_cluster("toolloss");
  Node publisher(fast_options(cluster, "lossy"));
  constexpr std::uint64_t total = 300;
  child_process::options so;
  so.env["MESHBUS_FAULTS"] = "drop=0.3,seed=11";
  // --start 1: what is missing before the first event that arrives is a gap too.
  child_process sub(fast_tool(cluster, {"sub", "--mode", "best_effort", "--start", "1", "--json", "loss.*"}),
                    so);
  REQUIRE(publisher.wait_for_subscribers("loss.x", 1, 20s));
  for (std::uint64_t i = 1; i <= total; ++i) {
    REQUIRE(publisher.publish("loss.x", std::to_string(i)) == PublishResult::ok);
    std::this_thread::sleep_for(1ms);  // pacing, so that events travel (and get lost) one by one
  }
  // Every event is printed or reported lost (the publisher's heartbeats reveal a lost tail).
  std::vector<bool> seen(total + 1, false);
  std::uint64_t printed = 0;
  std::uint64_t lost = 0;
  std::string problem;
  auto account = [&](const std::string& out) {
    seen.assign(total + 1, false);
    printed = lost = 0;
    problem.clear();
    std::uint64_t last = 0;
    for (const auto& line : lines_of(out)) {
      const bool is_loss = line.find("\"lost\":true") != std::string::npos;
      const auto from = json_number(line, is_loss ? "from" : "sequence");
      const auto to = json_number(line, is_loss ? "to" : "sequence");
      if (!from || !to || *from <= last || *to < *from || *to > total) {
        problem = "unexpected line: " + line;
        return false;
      }
      for (auto n = *from; n <= *to; ++n) seen[n] = true;
      (is_loss ? lost : printed) += *to - *from + 1;
      last = *to;
    }
    return printed + lost == total;
  };
  const bool accounted = sub.wait_output(account, 30s);
  sub.signal(SIGINT);
  CHECK(sub.wait(10s) == 0);
  INFO("sub stderr: " << sub.err() << "\n" << problem);
  REQUIRE(accounted);
  CHECK(std::count(seen.begin() + 1, seen.end(), true) == static_cast<std::ptrdiff_t>(total));
  CHECK(lost > 0);
  CHECK(printed > 0);
  CHECK_THAT(sub.err(), Catch::Contains("meshbus: lost ") &&
                            Catch::Contains(" of loss.x from " + publisher.id().short_string() + " (gap)"));
}

TEST_CASE("meshbus dlq list shows a dead letter and dlq replay delivers it again", "[multiprocess][tool]") {
  const auto cluster = unique_cluster("tooldlq");
  Node holder(fast_options(cluster, "holder"));
  Node publisher(fast_options(cluster, "publisher"));
  std::atomic<bool> healed{false};
  std::atomic<int> handled{0};
  SubscribeOptions o;
  o.delivery = Delivery::acknowledged;
  o.max_deliver = 2;
  holder.subscribe(
      "orders.placed",
      [&](const Event&) {
        if (!healed) throw std::runtime_error("database down");
        ++handled;
      },
      o);
  REQUIRE(publisher.wait_for_subscribers("orders.placed", 1, 20s));
  REQUIRE(publisher.publish("orders.placed", "order\t42") == PublishResult::ok);
  const bool dead_lettered = eventually([&] { return holder.dead_letters().size() == 1; }, 20s);
  INFO("holder: " << nonzero_stats(holder) << "\npublisher: " << nonzero_stats(publisher));
  REQUIRE(dead_lettered);
  const auto letter = holder.dead_letters().front();
  const auto letter_id = std::to_string(letter.id);

  child_process list(fast_tool(cluster, {"dlq", "list"}));
  REQUIRE(list.wait(30s) == 0);
  INFO("dlq list: " << list.out() << list.err());
  const auto rows = lines_of(list.out());
  REQUIRE(rows.size() == 2);
  CHECK(words_of(rows[0]) ==
        std::vector<std::string>{"NODE", "ID", "TOPIC", "ATTEMPTS", "REASON", "PAYLOAD"});
  CHECK(words_of(rows[1]) == std::vector<std::string>{holder.id().short_string(), letter_id, "orders.placed",
                                                      "2", "database", "down", "order\\t42"});

  child_process json(fast_tool(cluster, {"dlq", "list", "--json"}));
  REQUIRE(json.wait(30s) == 0);
  CHECK_THAT(json.out(),
             Catch::Contains("\"node\":\"" + holder.id().to_string() + "\"") &&
                 Catch::Contains("\"id\":" + letter_id + ",\"topic\":\"orders.placed\",\"attempts\":2") &&
                 Catch::Contains("\"node_name\":\"holder\"") &&
                 Catch::Contains("\"payload\":\"order\\t42\""));

  child_process unknown(fast_tool(cluster, {"dlq", "replay", holder.id().to_string(), "999999"}));
  CHECK(unknown.wait(30s) == 1);
  CHECK_THAT(unknown.err(),
             Catch::Contains("no dead letter 999999 on " + holder.id().short_string() + " (holder)"));
  CHECK(holder.dead_letters().size() == 1);

  healed = true;
  child_process replay(fast_tool(cluster, {"dlq", "replay", holder.id().short_string(), letter_id}));
  const auto code = replay.wait(30s);
  INFO("dlq replay: " << replay.out() << replay.err());
  CHECK(code == 0);
  CHECK_THAT(replay.out(),
             Catch::Contains("replayed dead letter " + letter_id + " on " + holder.id().short_string()));
  CHECK(eventually([&] { return handled == 1; }, 10s));
  CHECK(eventually([&] { return holder.dead_letters().empty(); }, 10s));
}

TEST_CASE("meshbus dlq replay: an unknown or ambiguous node is a usage error naming the candidates",
          "[multiprocess][tool]") {
  const auto cluster = unique_cluster("toolnode");
  // Two ids that share their first 30 hex digits.
  std::random_device random;
  NodeId first;
  for (auto& b : first.bytes) b = static_cast<std::uint8_t>(random());
  first.bytes[15] = 0x01;
  NodeId second = first;
  second.bytes[15] = 0x02;
  auto a_options = fast_options(cluster, "node-a");
  a_options.node_id = first;
  auto b_options = fast_options(cluster, "node-b");
  b_options.node_id = second;
  Node a(a_options);
  Node b(b_options);
  REQUIRE(a.wait_for_peers(1, 20s));

  const auto shared = first.to_string().substr(0, 30);
  child_process ambiguous(fast_tool(cluster, {"dlq", "replay", shared, "1"}));
  CHECK(ambiguous.wait(30s) == 2);
  CHECK_THAT(ambiguous.err(), Catch::Contains("is ambiguous") && Catch::Contains(first.to_string()) &&
                                  Catch::Contains(second.to_string()));

  auto other = first.to_string();
  other[0] = other[0] == '0' ? '1' : '0';
  child_process nobody(fast_tool(cluster, {"dlq", "replay", other.substr(0, 12), "1"}));
  CHECK(nobody.wait(30s) == 2);
  CHECK_THAT(nobody.err(), Catch::Contains("no known node matches") && Catch::Contains(first.to_string()) &&
                               Catch::Contains(second.to_string()));

  child_process exact(fast_tool(cluster, {"dlq", "replay", second.to_string(), "1"}));
  CHECK(exact.wait(30s) == 1);  // found; it has no dead letter 1
  CHECK_THAT(exact.err(), Catch::Contains("no dead letter 1 on " + second.short_string() + " (node-b)"));
}

TEST_CASE("the sub and dlq flags: bad values are usage errors, an empty cluster has no dead letters",
          "[integration][tool]") {
  const auto cluster = unique_cluster("tooldlqflags");
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"sub", "--mode", "exactly_once", "a.b"},
           {"sub", "--start", "0", "a.b"},
           {"sub", "--start", "yesterday", "a.b"},
           {"dlq"},
           {"dlq", "replay", "not-hex", "1"},
           {"dlq", "replay", "0123456789abcdef0123456789abcdef0", "1"},
           {"dlq", "replay", "abc"},
       }) {
    std::vector<std::string> argv{MESHBUS_TOOL};
    argv.insert(argv.end(), args.begin(), args.end());
    child_process bad(argv);
    INFO(args.front() << " " << (args.size() > 1 ? args[1] : ""));
    CHECK(bad.wait(10s) == 2);
    CHECK_THAT(bad.err(), Catch::StartsWith("meshbus: "));
  }
  child_process no_peers(tool({"dlq", "replay", "--cluster", cluster, "--wait", "200", "abc", "1"}));
  CHECK(no_peers.wait(10s) == 2);
  CHECK_THAT(no_peers.err(), Catch::Contains("no peers in cluster"));
  child_process empty(tool({"dlq", "list", "--cluster", cluster, "--wait", "200"}));
  CHECK(empty.wait(20s) == 0);
  CHECK(empty.out().empty());
  CHECK_THAT(empty.err(), Catch::Contains("no dead letters"));
  child_process empty_json(tool({"dlq", "list", "--cluster", cluster, "--wait", "200", "--json"}));
  CHECK(empty_json.wait(20s) == 0);
  CHECK(empty_json.out() == "[]\n");
}

TEST_CASE("the demo runs five processes that end with every event delivered", "[multiprocess][demo]") {
  child_process demo({MESHBUS_DEMO, "--quiet"});
  const auto code = demo.wait(60s);
  INFO("stdout: " << demo.out() << "\nstderr: " << demo.err());
  REQUIRE(code == 0);
  CHECK_THAT(demo.out(), Catch::Contains("OK: every event arrived once and in order"));
}

TEST_CASE("the order-flow demo: event-sourced orders, the owner of most orders and a payments instance killed, "
          "every order final and consistent on every instance",
          "[multiprocess][demo][eventsourcing]") {
  // 40 orders take every path (see examples/orders/checkout.cpp): shipped; declined
  // (stock released); out of stock; undeliverable (refund, then release). The orders
  // instance owning most orders at half-time is killed with SIGKILL and restarted.
  child_process demo({MESHBUS_ORDERS, "--orders", "40", "--rate", "20", "--kill", "orders"});
  const auto code = demo.wait(170s);
  INFO("stdout: " << demo.out() << "\nstderr: " << demo.err());
  REQUIRE(code == 0);
  const auto& out = demo.out();
  CHECK_THAT(out, Catch::Contains("OK: every order reached a final state; every order's events are contiguous, none "
                                  "lost or twice, the same on all 3 instances; the read models match the aggregates; "
                                  "compensations match what was done; stock adds up"));
  CHECK_THAT(out, Catch::Contains("killing payments-2"));
  CHECK_THAT(out, Catch::Contains("killing orders-") && Catch::Contains(" orders so far) with SIGKILL mid-flow"));
  CHECK_THAT(out, Catch::Contains("restarted orders-") && Catch::Contains(" on its data directory"));
  CHECK_THAT(out, Catch::Contains("(upcast from v1; kept as sent)"));
  CHECK_THAT(out, Catch::Contains("cancelled   4  payment declined: over the card limit of 500.00 EUR; sent: "
                                  "release stock"));
  CHECK_THAT(out, Catch::Contains("rejected    2  out of stock: 2 lamp wanted"));
  CHECK_THAT(out, Catch::Contains("shipment failed: no carrier delivers to Atlantis; sent: refund "));
  CHECK_THAT(out, Catch::Contains("completed   4  shipped, tracking TRK"));
  CHECK_THAT(out, Catch::Contains("40 orders: "));
  CHECK_THAT(out, Catch::Contains(" rejected, 0 not final; 10 placed as v1"));
  CHECK_THAT(out, Catch::Contains("caught up on rejoining"));
}

namespace {
/// A data directory for one test, removed afterwards.
/// Runs `meshbus log` to its end.
struct log_run {
  int code = -1;
  std::vector<std::string> lines;
  std::string err;
};
log_run run_log(std::initializer_list<std::string> args) {
  child_process p(tool(args));
  log_run r;
  r.code = p.wait(60s).value_or(-1);
  r.lines = lines_of(p.out());
  r.err = p.err();
  return r;
}

/// Publishes with the tool into `dir`, as a node of its own that exits when done.
void pub_into(const temp_dir& dir, const std::string& cluster, const std::string& topic, const std::string& payload,
              int count) {
  child_process pub(tool({"pub", "--cluster", cluster, "--wait", "0", "--data-dir", dir.str(), topic, payload,
                          "--count", std::to_string(count)}));
  const auto code = pub.wait(30s);
  INFO("pub stderr: " << pub.err());
  REQUIRE(code == 0);
}

Options logging_options(const std::string& cluster, const temp_dir& dir) {
  auto o = fast_options(cluster, "logged");
  o.data_dir = dir.str();
  return o;
}

// 2030-01-01T00:00:00Z, the timestamp the typed event is given.
const auto year_2030 = std::chrono::system_clock::time_point(std::chrono::seconds(1'893'456'000));
}  // namespace

TEST_CASE("meshbus log prints every event of a node's log with its envelope, in order, and filters them",
          "[integration][tool]") {
  temp_dir dir;
  const auto cluster = unique_cluster("toollog");
  pub_into(dir, cluster, "orders.placed", "order {n}", 5);
  pub_into(dir, cluster, "audit.trail", "entry {n}", 3);
  // The tool cannot set the other envelope fields: one event from a node on the same log.
  std::string publisher;
  std::uint64_t epoch = 0;
  {
    Node node(logging_options(cluster, dir));
    publisher = node.id().to_string();
    epoch = node.epoch();
    const std::vector<Header> headers{{"region", "eu"}, {"tenant", "acme corp"}};
    PublishOptions o;
    o.event_id = "order-6";
    o.type_name = "OrderPlaced";
    o.type_version = 2;
    o.correlation_id = "checkout-42";
    o.causation_id = "cart-7";
    o.content_type = "application/json";
    o.headers = headers;
    o.timestamp = year_2030;
    REQUIRE(node.publish("orders.placed", R"({"id":6})", o) == PublishResult::ok);
    REQUIRE(node.flush(10s));
  }
  const auto prefix = "[" + publisher + " e" + std::to_string(epoch) + " #";
  auto default_id = [&](int seq) { return publisher + "-" + std::to_string(epoch) + "-" + std::to_string(seq); };

  SECTION("one line per event: topics sorted, each in sequence order, with the whole envelope") {
    const auto r = run_log({"log", dir.str()});
    INFO("stderr: " << r.err);
    REQUIRE(r.code == 0);
    CHECK(r.err.empty());
    REQUIRE(r.lines.size() == 9);
    for (int i = 1; i <= 3; ++i) {
      const auto& line = r.lines[static_cast<std::size_t>(i - 1)];
      CHECK_THAT(line, Catch::StartsWith(prefix + std::to_string(i) + " 20") &&
                           Catch::EndsWith(" id=" + default_id(i) + "] audit.trail entry " + std::to_string(i)));
    }
    for (int i = 1; i <= 5; ++i) {
      const auto& line = r.lines[static_cast<std::size_t>(i + 2)];
      CHECK_THAT(line, Catch::StartsWith(prefix + std::to_string(i) + " 20") &&
                           Catch::EndsWith(" id=" + default_id(i) + "] orders.placed order " + std::to_string(i)));
    }
    CHECK(r.lines[8] == prefix +
                            "6 2030-01-01T00:00:00.000000000Z id=order-6 type=OrderPlaced/2 correlation=checkout-42 "
                            "causation=cart-7 content_type=application/json header.region=eu "
                            "header.tenant=acme corp] orders.placed {\"id\":6}");
  }
  SECTION("--json: one object per line, with sub --json's fields and the rest of the envelope") {
    const auto r = run_log({"log", dir.str(), "--json"});
    INFO("stderr: " << r.err);
    REQUIRE(r.code == 0);
    REQUIRE(r.lines.size() == 9);
    std::vector<std::pair<std::string, std::uint64_t>> streams;
    for (const auto& line : r.lines) {
      INFO(line);
      const auto j = nlohmann::json::parse(line);
      CHECK(j["publisher"] == publisher);
      CHECK(j["epoch"] == epoch);
      CHECK(j["timestamp"].get<std::string>().size() == std::string("2030-01-01T00:00:00.000000000Z").size());
      streams.emplace_back(j["topic"].get<std::string>(), j["sequence"].get<std::uint64_t>());
      const auto seq = static_cast<int>(j["sequence"].get<std::uint64_t>());
      if (seq == 6) continue;
      CHECK(j["id"] == default_id(seq));
      CHECK(j["payload"] == (j["topic"] == "audit.trail" ? "entry " : "order ") + std::to_string(seq));
      CHECK_FALSE(j.contains("correlation_id"));
      CHECK_FALSE(j.contains("headers"));
    }
    CHECK(streams == std::vector<std::pair<std::string, std::uint64_t>>{{"audit.trail", 1},
                                                                         {"audit.trail", 2},
                                                                         {"audit.trail", 3},
                                                                         {"orders.placed", 1},
                                                                         {"orders.placed", 2},
                                                                         {"orders.placed", 3},
                                                                         {"orders.placed", 4},
                                                                         {"orders.placed", 5},
                                                                         {"orders.placed", 6}});
    const auto typed = nlohmann::json::parse(r.lines[8]);
    CHECK(typed["payload"] == R"({"id":6})");
    CHECK(typed["timestamp"] == "2030-01-01T00:00:00.000000000Z");
    CHECK(typed["id"] == "order-6");
    CHECK(typed["type_name"] == "OrderPlaced");
    CHECK(typed["type_version"] == 2);
    CHECK(typed["correlation_id"] == "checkout-42");
    CHECK(typed["causation_id"] == "cart-7");
    CHECK(typed["content_type"] == "application/json");
    CHECK(typed["headers"] == nlohmann::json{{"region", "eu"}, {"tenant", "acme corp"}});
  }
  SECTION("--topic takes a pattern") {
    auto r = run_log({"log", dir.str(), "--topic", "audit.*"});
    REQUIRE(r.code == 0);
    REQUIRE(r.lines.size() == 3);
    CHECK_THAT(r.lines[0], Catch::EndsWith("] audit.trail entry 1"));
    r = run_log({"log", dir.str(), "--topic", "orders.**"});
    CHECK(r.lines.size() == 6);
    r = run_log({"log", dir.str(), "--topic", "*.*"});
    CHECK(r.lines.size() == 9);
    r = run_log({"log", dir.str(), "--topic", "nothing.*"});
    CHECK(r.code == 0);
    CHECK(r.lines.empty());
  }
  SECTION("--since is inclusive, --until exclusive, on the event's timestamp") {
    auto r = run_log({"log", dir.str(), "--since", "2030-01-01T00:00:00Z"});
    REQUIRE(r.code == 0);
    REQUIRE(r.lines.size() == 1);
    CHECK_THAT(r.lines[0], Catch::Contains("id=order-6"));
    r = run_log({"log", dir.str(), "--since", "-10m", "--until", "2030-01-01T00:00:00Z"});
    REQUIRE(r.lines.size() == 8);
    CHECK_THAT(r.lines[7], Catch::EndsWith("] orders.placed order 5"));
    r = run_log({"log", dir.str(), "--until", "2030-01-01T00:00:00.000000001Z", "--topic", "orders.*"});
    CHECK(r.lines.size() == 6);
    r = run_log({"log", dir.str(), "--until", "-10m"});
    CHECK(r.code == 0);
    CHECK(r.lines.empty());
  }
  SECTION("--correlation matches the correlation id exactly") {
    auto r = run_log({"log", dir.str(), "--correlation", "checkout-42", "--json"});
    REQUIRE(r.code == 0);
    REQUIRE(r.lines.size() == 1);
    CHECK(nlohmann::json::parse(r.lines[0])["sequence"] == 6);
    r = run_log({"log", dir.str(), "--correlation", "checkout-4"});
    CHECK(r.code == 0);
    CHECK(r.lines.empty());
  }
}

TEST_CASE("meshbus log reads a node's log while the node runs", "[multiprocess][tool]") {
  temp_dir dir;
  const auto cluster = unique_cluster("toollogrunning");
  child_process pub(tool({"pub", "--cluster", cluster, "--wait", "0", "--data-dir", dir.str(), "--serve",
                          "live.ticks", "tick {n}", "--count", "50"}));
  REQUIRE(eventually(
      [&] {
        pub.poll();
        return pub.err().find("serving the history") != std::string::npos;
      },
      30s));
  const auto r = run_log({"log", dir.str()});
  INFO("stderr: " << r.err);
  REQUIRE(r.code == 0);
  REQUIRE(r.lines.size() == 50);
  for (int i = 1; i <= 50; ++i) {
    CHECK_THAT(r.lines[static_cast<std::size_t>(i - 1)],
               Catch::Contains(" #" + std::to_string(i) + " ") &&
                   Catch::EndsWith("] live.ticks tick " + std::to_string(i)));
  }
  // The node is still running and still holds its directory.
  pub.poll();
  CHECK_FALSE(pub.wait(0ms).has_value());
  pub.signal(SIGTERM);
  CHECK(pub.wait(20s) == 0);
}

TEST_CASE("meshbus log reports a damaged or undecodable record, prints the rest and exits 1", "[integration][tool]") {
  temp_dir dir;
  const auto cluster = unique_cluster("toollogdamage");
  // Three batches (each flush ends one): events 1-3, event 4 alone, events 5-6.
  const std::string marker = "damage-me-";
  {
    Node node(logging_options(cluster, dir));
    for (int i = 1; i <= 3; ++i) REQUIRE(node.publish("t.a", "before " + std::to_string(i)) == PublishResult::ok);
    REQUIRE(node.flush(10s));
    REQUIRE(node.publish("t.a", marker + std::string(3000, 'x')) == PublishResult::ok);
    REQUIRE(node.flush(10s));
    for (int i = 5; i <= 6; ++i) REQUIRE(node.publish("t.a", "after " + std::to_string(i)) == PublishResult::ok);
    REQUIRE(node.flush(10s));
  }
  // One byte of event 4's payload flipped. LMDB leaves earlier copies of rewritten pages on
  // its free pages, so the marker may occur more than once; the live record is one of them,
  // and flipping each (free pages are never read) damages exactly that record.
  const auto file = (dir.path / "log.mdb").string();
  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    std::string bytes(static_cast<std::size_t>(fs::file_size(file)), '\0');
    REQUIRE(f.read(bytes.data(), static_cast<std::streamsize>(bytes.size())));
    std::size_t flipped = 0;
    for (auto at = bytes.find(marker); at != std::string::npos; at = bytes.find(marker, at + 1), ++flipped) {
      f.seekp(static_cast<std::streamoff>(at));
      f.put(static_cast<char>(bytes[at] ^ 0x20));
    }
    REQUIRE(flipped > 0);
    REQUIRE(f.flush());
  }

  SECTION("a record that fails its CRC32C") {
    for (const bool json : {false, true}) {
      const auto r = json ? run_log({"log", dir.str(), "--json"}) : run_log({"log", dir.str()});
      INFO("stderr: " << r.err);
      CHECK(r.code == 1);
      REQUIRE(r.lines.size() == 5);
      CHECK_THAT(r.lines[2], Catch::Contains("before 3"));
      CHECK_THAT(r.lines[3], Catch::Contains("after 5"));
      CHECK_THAT(r.err, Catch::Contains("meshbus: damaged record in " + file + " (CRC32C mismatch): event 4 of t.a"));
      CHECK_THAT(r.err, Catch::Contains("1 damaged record in " + file));
    }
    // Filters cannot look into a damaged record: it is reported whatever they are.
    const auto r = run_log({"log", dir.str(), "--correlation", "none-has-it"});
    CHECK(r.code == 1);
    CHECK(r.lines.empty());
    CHECK_THAT(r.err, Catch::Contains("event 4 of t.a"));
  }
  SECTION("a record whose CRC32C holds but whose frame does not decode") {
    {
      // A writer of its own on the (closed) log: a batch of three events whose frame is not one.
      meshbus::store::store_options o;
      o.dir = dir.str();
      auto log = meshbus::store::log_store::open(o);
      const std::string garbage = "t.b";  // the topic, then nothing: no NUL, no version, no body
      meshbus::store::history_batch b;
      b.topic = "t.b";
      b.first_seq = 1;
      b.count = 3;
      b.timestamp_ns = 1;
      b.frame = meshbus::store::as_span(garbage);
      REQUIRE(log->append(std::span(&b, 1)));
    }
    const auto r = run_log({"log", dir.str(), "--topic", "t.b"});
    INFO("stderr: " << r.err);
    CHECK(r.code == 1);
    CHECK(r.lines.empty());
    CHECK_THAT(r.err, Catch::Contains("record in " + file + " does not decode") &&
                          Catch::Contains("events 1-3 of t.b"));
  }
}

TEST_CASE("meshbus log: what is not a meshbus log is a failure naming the file, bad flags are usage errors",
          "[integration][tool]") {
  temp_dir dir;
  const auto missing = (dir.path / "no-such-dir").string();
  auto r = run_log({"log", missing});
  CHECK(r.code == 1);
  CHECK_THAT(r.err, Catch::StartsWith("meshbus: " + missing + " does not exist"));

  const auto log_file = (dir.path / "log.mdb").string();
  r = run_log({"log", dir.str()});
  CHECK(r.code == 1);
  CHECK_THAT(r.err, Catch::Contains("holds no meshbus log (" + log_file + " does not exist)"));

  {
    std::ofstream f(log_file);
    f << std::string(100000, 'z');
  }
  r = run_log({"log", dir.str()});
  CHECK(r.code == 1);
  CHECK_THAT(r.err, Catch::Contains(log_file + " is not a meshbus log (not an LMDB file)"));
  CHECK(r.lines.empty());

  for (const auto& args : std::vector<std::vector<std::string>>{
           {"log"},
           {"log", dir.str(), "--topic", "a..b"},
           {"log", dir.str(), "--since", "yesterday"},
           {"log", dir.str(), "--until", "2026-13-01"},
           {"log", dir.str(), "--since", "-1h", "--until", "-2h"},
       }) {
    std::vector<std::string> argv{MESHBUS_TOOL};
    argv.insert(argv.end(), args.begin(), args.end());
    child_process bad(argv);
    INFO(args.back());
    CHECK(bad.wait(10s) == 2);
    CHECK_THAT(bad.err(), Catch::StartsWith("meshbus: "));
  }
}

TEST_CASE("meshbus stats reports every node as JSON and text, and meshbus top draws them", "[multiprocess][tool]") {
  const auto cluster = unique_cluster("toolstats");
  Node pub(fast_options(cluster, "pub"));
  Node sub(fast_options(cluster, "sub"));
  std::atomic<int> got{0};
  sub.subscribe("stats.*", [&](const Event&) { ++got; });
  REQUIRE(pub.wait_for_subscribers("stats.a", 1, 20s));
  for (int i = 0; i < 300; ++i) REQUIRE(pub.publish("stats.a", "x") == PublishResult::ok);
  REQUIRE(eventually([&] { return got.load() == 300; }, 20s));

  child_process json_run(fast_tool(cluster, {"stats", "--json"}));
  REQUIRE(json_run.wait(30s) == 0);
  INFO("stats --json: " << json_run.out() << json_run.err());
  const auto doc = nlohmann::json::parse(json_run.out());
  REQUIRE(doc["nodes"].size() == 2);
  CHECK(doc["unanswered"].empty());
  std::map<std::string, nlohmann::json> by_name;
  for (const auto& n : doc["nodes"]) by_name[n["name"].get<std::string>()] = n;
  REQUIRE(by_name.count("pub") == 1);
  REQUIRE(by_name.count("sub") == 1);
  // The same figures as the nodes' own Stats.
  CHECK(by_name["pub"]["id"] == pub.id().to_string());
  CHECK(by_name["pub"]["stats"]["events_published"] == pub.stats().events_published);
  CHECK(by_name["sub"]["stats"]["events_delivered"].get<std::uint64_t>() >= 300);
  CHECK(by_name["pub"]["published"][0]["topic"] == "stats.a");
  CHECK(by_name["pub"]["published"][0]["last_seq"] == 300);
  CHECK(by_name["sub"]["received"][0]["publisher"] == pub.id().to_string());
  CHECK(by_name["sub"]["delivery_latency"]["count"].get<std::uint64_t>() >= 300);

  child_process one(fast_tool(cluster, {"stats", "sub"}));
  REQUIRE(one.wait(30s) == 0);
  INFO("stats sub: " << one.out() << one.err());
  CHECK_THAT(one.out(), Catch::Contains("'sub'") && Catch::Contains("in  stats.a") &&
                            !Catch::Contains("'pub'"));
  child_process nobody(fast_tool(cluster, {"stats", "no-such-node"}));
  CHECK(nobody.wait(30s) == 1);
  CHECK_THAT(nobody.err(), Catch::Contains("no node named 'no-such-node' answered"));

  child_process top(fast_tool(cluster, {"top", "--iterations", "2", "--interval", "0.2", "--sort", "rate"}));
  REQUIRE(top.wait(30s) == 0);
  INFO("top: " << top.out() << top.err());
  const auto screens = top.out();
  std::size_t drawn = 0;  // two screens
  for (auto at = screens.find("meshbus top - "); at != std::string::npos; at = screens.find("meshbus top - ", at + 1)) {
    ++drawn;
  }
  CHECK(drawn == 2);
  CHECK_THAT(screens, Catch::Contains("meshbus top - 2 nodes, 0 silent") && Catch::Contains("sort: rate") &&
                          Catch::Contains("stats.a"));
  child_process bad_sort(fast_tool(cluster, {"top", "--sort", "speed"}));
  CHECK(bad_sort.wait(30s) == 2);
}

namespace {
struct ToolOrderPlaced {
  static constexpr std::string_view event_name = "tool.order.placed";
  static constexpr std::uint32_t event_version = 2;
  std::string order_id;
  int quantity = 0;
  MSGPACK_DEFINE_MAP(order_id, quantity)
};
}  // namespace

TEST_CASE("meshbus request and meshbus serve: echo, a command's output, its failure, no instance",
          "[multiprocess][tool]") {
  const auto cluster = unique_cluster("toolreq");
  child_process echo(fast_tool(cluster, {"serve", "echo.svc", "--echo"}));
  child_process upper(fast_tool(cluster, {"serve", "upper.svc", "--command", "tr a-z A-Z"}));
  child_process failing(fast_tool(cluster, {"serve", "fail.svc", "--command", "echo broken >&2; exit 4"}));
  // Each request waits (up to its --timeout) for an instance to appear.

  child_process r1(fast_tool(cluster, {"request", "echo.svc", "ping 1"}));
  REQUIRE(r1.wait(30s) == 0);
  CHECK(r1.out() == "ping 1\n");
  child_process::options piped;
  piped.stdin_text = "from stdin";
  child_process r2(fast_tool(cluster, {"request", "upper.svc", "--json"}), piped);
  REQUIRE(r2.wait(30s) == 0);
  INFO("request --json: " << r2.out() << r2.err());
  const auto reply = nlohmann::json::parse(r2.out());
  CHECK(reply["payload"] == "FROM STDIN");
  CHECK(reply["service"] == "upper.svc");
  child_process r3(fast_tool(cluster, {"request", "fail.svc", "x"}));
  CHECK(r3.wait(30s) == 1);
  CHECK_THAT(r3.err(), Catch::Contains("exited with 4: broken"));
  child_process r4(fast_tool(cluster, {"request", "nobody.svc", "x", "--timeout", "500"}));
  CHECK(r4.wait(30s) == 3);
  CHECK_THAT(r4.err(), Catch::Contains("no instance of nobody.svc appeared"));
  child_process bad(fast_tool(cluster, {"serve", "x.svc"}));
  CHECK(bad.wait(30s) == 2);
  for (auto* p : {&echo, &upper, &failing}) {
    p->signal(SIGTERM);
    CHECK(p->wait(20s) == 0);
  }
}

TEST_CASE("meshbus pub -H and templates, sub --group shares the events, sub shows flows, headers and typed payloads",
          "[multiprocess][tool]") {
  const auto cluster = unique_cluster("toolflags");
  child_process m1(fast_tool(cluster, {"sub", "--group", "workers", "--json", "job.*"}));
  child_process m2(fast_tool(cluster, {"sub", "--group", "workers", "--json", "job.*"}));
  child_process all(fast_tool(cluster, {"sub", "--json", "--count", "400", "--timeout", "60000", "job.*"}));
  // pub waits for three subscribers of job.x: the two members and the plain one.
  child_process pub(fast_tool(cluster, {"pub", "--subscribers", "3", "--count", "400", "--rate", "400", "-H",
                                        "tenant=acme", "-H", "n={n}", "job.x", "job {n} at {time} r{random}"}));
  // Read the subscribers' output meanwhile: a full pipe would hold up their handlers.
  std::optional<int> pub_code;
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (!(pub_code = pub.wait(20ms)) && std::chrono::steady_clock::now() < deadline) {
    for (auto* p : {&m1, &m2, &all}) p->poll();
  }
  INFO("pub: " << pub.out() << pub.err());
  REQUIRE(pub_code == 0);
  REQUIRE(all.wait(60s) == 0);
  const auto lines = lines_of(all.out());
  REQUIRE(lines.size() == 400);
  const auto first = nlohmann::json::parse(lines[0]);
  INFO(lines[0]);
  CHECK(first["headers"]["tenant"] == "acme");
  CHECK(first["headers"]["n"] == "1");
  const std::string payload = first["payload"];
  CHECK(payload.rfind("job 1 at 20", 0) == 0);  // {time}: an ISO 8601 year
  CHECK(payload.find(" r") != std::string::npos);
  CHECK(payload.find("{random}") == std::string::npos);
  // The group's members shared the 400 events: each at most once, together all.
  REQUIRE(eventually([&] {
    m1.poll();
    m2.poll();
    return lines_of(m1.out()).size() + lines_of(m2.out()).size() >= 400;
  }, 30s));
  m1.signal(SIGTERM);
  m2.signal(SIGTERM);
  REQUIRE(m1.wait(20s) == 0);
  REQUIRE(m2.wait(20s) == 0);
  std::set<std::string> seen;
  for (auto* m : {&m1, &m2}) {
    for (const auto& l : lines_of(m->out())) CHECK(seen.insert(nlohmann::json::parse(l)["headers"]["n"]).second);
  }
  CHECK(seen.size() == 400);
  CHECK(!lines_of(m1.out()).empty());
  CHECK(!lines_of(m2.out()).empty());

  // A typed event with its flow: type, ids and the MessagePack payload as JSON.
  Node node(fast_options(cluster, "typed-publisher"));
  child_process typed_text(fast_tool(cluster, {"sub", "--count", "1", "--timeout", "30000", "tool.order.*"}));
  child_process typed_json(fast_tool(cluster, {"sub", "--json", "--count", "1", "--timeout", "30000", "tool.order.*"}));
  REQUIRE(node.wait_for_subscribers("tool.order.placed", 2, 20s));
  PublishOptions po;
  po.event_id = "order-7-placed";
  po.correlation_id = "checkout-7";
  po.causation_id = "cart-7";
  REQUIRE(node.publish(ToolOrderPlaced{"o-7", 3}, po) == PublishResult::ok);
  REQUIRE(typed_text.wait(30s) == 0);
  CHECK(typed_text.out() == "tool.order.placed [type=tool.order.placed/2 id=order-7-placed corr=checkout-7 "
                            "cause=cart-7] {\"order_id\":\"o-7\",\"quantity\":3}\n");
  REQUIRE(typed_json.wait(30s) == 0);
  const auto typed = nlohmann::json::parse(typed_json.out());
  CHECK(typed["payload"]["order_id"] == "o-7");
  CHECK(typed["payload"]["quantity"] == 3);
  CHECK(typed["type"] == "tool.order.placed");
  CHECK(typed["type_version"] == 2);
  CHECK(typed["id"] == "order-7-placed");
  CHECK(typed["correlation_id"] == "checkout-7");
  CHECK(typed["causation_id"] == "cart-7");
  CHECK(typed["content_type"] == "application/msgpack");
}

TEST_CASE("meshbus bench runs the comparison with raw ZeroMQ", "[multiprocess][tool]") {
  child_process bench(tool({"bench", "throughput", "--size", "64", "--count", "20000"}));
  REQUIRE(bench.wait(120s) == 0);
  INFO(bench.out() << bench.err());
  CHECK_THAT(bench.out(), Catch::Contains("raw ev/s") && Catch::Contains("ratio"));
}

TEST_CASE("meshbus dashboard: an address that is not local or is in use is a clear error", "[multiprocess][tool]") {
  const auto cluster = unique_cluster("tooldash");
  child_process far(fast_tool(cluster, {"dashboard", "--http", "192.0.2.1:8470"}));
  CHECK(far.wait(30s) == 1);
  CHECK_THAT(far.err(), Catch::Contains("192.0.2.1 is not an address of this machine (--http)"));
  child_process first(fast_tool(cluster, {"dashboard", "--http", "127.0.0.1:0"}));
  REQUIRE(printed(first, "meshbus dashboard on http://", 20s));
  const auto out = first.out();
  const auto port = out.substr(out.rfind(':') + 1, out.rfind('/') - out.rfind(':') - 1);
  child_process second(fast_tool(cluster, {"dashboard", "--http", "127.0.0.1:" + port}));
  CHECK(second.wait(30s) == 1);
  CHECK_THAT(second.err(), Catch::Contains("is already in use"));
  // Served only for its own address; a POST only with the page's header.
  const auto port_number = static_cast<std::uint16_t>(std::stoi(port));
  CHECK(status_of(http_exchange(port_number, "GET /api/mesh HTTP/1.1\r\nHost: evil.example:" + port +
                                                 "\r\nConnection: close\r\n\r\n")) == 403);
  CHECK(status_of(http_exchange(port_number, "POST /api/dead-letters/replay?node=ab&id=1 HTTP/1.1\r\nHost: "
                                             "127.0.0.1:" + port + "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")) == 403);
  CHECK(status_of(http_exchange(port_number, "GET / HTTP/1.1\r\nHost: 127.0.0.1:" + port +
                                                 "\r\nConnection: close\r\n\r\n")) == 200);
  child_process garbled(fast_tool(cluster, {"dashboard", "--http", "nowhere"}));
  CHECK(garbled.wait(30s) != 0);
  CHECK_THAT(garbled.err(), Catch::Contains("is not HOST:PORT"));
  first.signal(SIGTERM);
  CHECK(first.wait(20s) == 0);
}
