// Two nodes in one process over real sockets on 127.0.0.1: discovery by beacon,
// ordered delivery with wildcards, local delivery, unsubscribe, peer lifecycle,
// poll_once mode, handler faults and API misuse.
#include <catch2/catch.hpp>

#include <atomic>
#include <set>
#include <thread>

#include "tests/support/node_helpers.hpp"

using namespace meshbus;
using namespace meshbus::test;
using namespace std::chrono_literals;

TEST_CASE("two nodes discover each other and deliver events in order", "[integration]") {
  const auto cluster = unique_cluster("two");
  Node a(fast_options(cluster, "a"));
  Node b(fast_options(cluster, "b"));
  event_log all;
  event_log placed;
  b.subscribe("orders.**", all.handler());
  b.subscribe("orders.*.placed", placed.handler());
  REQUIRE(a.wait_for_subscribers("orders.eu.placed", 1, 10s));
  REQUIRE(a.wait_for_subscribers("orders.eu.shipped", 1, 10s));
  const int n = 20000;
  for (int i = 1; i <= n; ++i) {
    // Runs of 100 per topic: a batch holds events of one stream only.
    REQUIRE(a.publish((i / 100) % 2 ? "orders.eu.placed" : "orders.eu.shipped", std::to_string(i)) ==
            PublishResult::ok);
  }
  REQUIRE(all.wait_for(n));
  REQUIRE(placed.wait_for(n / 2));
  CHECK(placed.size() == n / 2);
  const auto events = all.events();
  std::uint64_t last_placed = 0;
  std::uint64_t last_shipped = 0;
  for (std::size_t i = 0; i < events.size(); ++i) {
    CHECK(events[i].payload == std::to_string(i + 1));  // one publisher: global order kept
    CHECK(events[i].publisher == a.id());
    auto& last = events[i].topic == "orders.eu.placed" ? last_placed : last_shipped;
    CHECK(events[i].sequence == last + 1);  // contiguous per stream
    last = events[i].sequence;
  }
  for (const auto& e : placed.events()) CHECK(e.topic == "orders.eu.placed");
  const auto sa = a.stats();
  const auto sb = b.stats();
  CHECK(sa.events_published == static_cast<std::uint64_t>(n));
  CHECK(sb.gaps == 0);
  CHECK(sb.duplicates_dropped == 0);
  CHECK(sb.events_delivered == static_cast<std::uint64_t>(n + n / 2));
  CHECK(sa.batches_sent < static_cast<std::uint64_t>(n));  // small events were batched
}

TEST_CASE("events flow both ways and peers see each other's names and metadata", "[integration]") {
  const auto cluster = unique_cluster("both");
  auto oa = fast_options(cluster, "alpha");
  oa.metadata = {{"role", "orders"}};
  Node a(oa);
  Node b(fast_options(cluster, "beta"));
  event_log at_a;
  event_log at_b;
  a.subscribe("to.a", at_a.handler());
  b.subscribe("to.b", at_b.handler());
  REQUIRE(a.wait_for_subscribers("to.b", 1, 10s));
  REQUIRE(b.wait_for_subscribers("to.a", 1, 10s));
  REQUIRE(a.publish("to.b", "hello b") == PublishResult::ok);
  REQUIRE(b.publish("to.a", "hello a") == PublishResult::ok);
  REQUIRE(at_a.wait_for(1));
  REQUIRE(at_b.wait_for(1));
  CHECK(at_a.events()[0].payload == "hello a");
  CHECK(at_b.events()[0].payload == "hello b");
  const auto peers = b.peers();
  REQUIRE(peers.size() == 1);
  CHECK(peers[0].name == "alpha");
  CHECK(peers[0].id == a.id());
  CHECK(peers[0].address == "127.0.0.1");
  CHECK(peers[0].metadata.at("role") == "orders");
  CHECK(peers[0].subscriptions == std::vector<std::string>{"to.a"});
}

TEST_CASE("a node delivers its own events to its own subscriptions", "[integration]") {
  Node a(fast_options(unique_cluster("local"), "a"));
  event_log log;
  a.subscribe("self.*", log.handler());
  REQUIRE(a.publish("self.x", "1") == PublishResult::ok);
  REQUIRE(a.publish("self.x", "2") == PublishResult::ok);
  REQUIRE(log.wait_for(2));
  CHECK(log.events()[1].sequence == 2);
  CHECK(log.events()[0].publisher == a.id());
}

TEST_CASE("unsubscribe stops delivery to that handler only", "[integration]") {
  const auto cluster = unique_cluster("unsub");
  Node a(fast_options(cluster, "a"));
  Node b(fast_options(cluster, "b"));
  event_log first;
  event_log second;
  auto s1 = b.subscribe("t.*", first.handler());
  b.subscribe("t.x", second.handler());
  REQUIRE(a.wait_for_subscribers("t.x", 1, 10s));
  REQUIRE(a.publish("t.x", "1") == PublishResult::ok);
  REQUIRE(second.wait_for(1));
  REQUIRE(first.wait_for(1));
  b.unsubscribe(s1);
  b.unsubscribe(s1);  // twice is harmless
  REQUIRE(a.publish("t.x", "2") == PublishResult::ok);
  REQUIRE(second.wait_for(2));
  CHECK(first.size() == 1);
}

TEST_CASE("peer events report joined and, after a goodbye, left at once", "[integration]") {
  const auto cluster = unique_cluster("peers");
  Node a(fast_options(cluster, "a"));
  std::mutex mu;
  std::vector<std::pair<PeerEvent::Kind, std::string>> seen;
  a.on_peer([&](const PeerEvent& e) {
    std::lock_guard lock(mu);
    seen.emplace_back(e.kind, e.peer.name);
  });
  auto count = [&](PeerEvent::Kind k) {
    std::lock_guard lock(mu);
    return std::count_if(seen.begin(), seen.end(), [&](const auto& p) { return p.first == k; });
  };
  {
    auto ob = fast_options(cluster, "b");
    ob.peer_expiry = 60s;  // so that only the goodbye can explain a quick "left"
    Node b(ob);
    REQUIRE(a.wait_for_peers(1, 10s));
    REQUIRE(eventually([&] { return count(PeerEvent::Kind::joined) == 1; }, 5s));
  }  // b stops: goodbye
  REQUIRE(eventually([&] { return count(PeerEvent::Kind::left) == 1; }, 900ms));
  CHECK(a.peers().empty());
  CHECK(a.stats().peers_left == 1);
}

TEST_CASE("a peer that falls silent turns suspect, then is gone", "[integration]") {
  const auto cluster = unique_cluster("silent");
  Node a(fast_options(cluster, "a"));
  auto ob = fast_options(cluster, "b");
  ob.background_thread = false;  // b only lives while polled
  Node b(ob);
  std::atomic<int> suspect{0};
  std::atomic<int> left{0};
  a.on_peer([&](const PeerEvent& e) {
    if (e.kind == PeerEvent::Kind::suspect) ++suspect;
    if (e.kind == PeerEvent::Kind::left) ++left;
  });
  REQUIRE(b.wait_for_peers(1, 10s));  // polls b while waiting
  REQUIRE(a.wait_for_peers(1, 10s));
  // b stops polling: no beacons, no pings.
  REQUIRE(eventually([&] { return suspect == 1; }, 3s));
  CHECK(a.peers().at(0).state == PeerState::suspect);
  REQUIRE(eventually([&] { return left == 1; }, 3s));
  CHECK(a.peers().empty());
}

TEST_CASE("poll_once runs the loop and the handlers on the caller's thread", "[integration]") {
  const auto cluster = unique_cluster("poll");
  Node a(fast_options(cluster, "a"));
  auto ob = fast_options(cluster, "b");
  ob.background_thread = false;
  Node b(ob);
  std::vector<std::thread::id> threads;
  std::vector<std::string> payloads;
  b.subscribe("p.q", [&](const Event& e) {
    threads.push_back(std::this_thread::get_id());
    payloads.emplace_back(e.text());
  });
  bool ready = false;
  std::thread waiter([&] { ready = a.wait_for_subscribers("p.q", 1, 10s); });
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (waiter.joinable() && std::chrono::steady_clock::now() < deadline) {
    b.poll_once(5ms);
    if (ready) break;
  }
  waiter.join();
  REQUIRE(ready);
  for (int i = 0; i < 100; ++i) REQUIRE(a.publish("p.q", std::to_string(i)) == PublishResult::ok);
  while (payloads.size() < 100 && std::chrono::steady_clock::now() < deadline) b.poll_once(5ms);
  REQUIRE(payloads.size() == 100);
  CHECK(payloads[99] == "99");
  for (const auto& t : threads) CHECK(t == std::this_thread::get_id());
}

TEST_CASE("a throwing handler is counted and the node goes on", "[integration]") {
  const auto cluster = unique_cluster("throw");
  std::atomic<int> errors_reported{0};
  std::atomic<int> reported_code{0};
  auto oa = fast_options(cluster, "a");
  oa.on_error = [&](std::error_code code, const std::string&) {
    ++errors_reported;
    reported_code = code.value();
  };
  Node a(oa);
  event_log ok;
  std::atomic<int> calls{0};
  a.subscribe("h.*", [&](const Event& e) {
    ++calls;
    if (e.sequence() % 2 == 0) throw std::runtime_error("even events are bad");
  });
  a.subscribe("h.*", ok.handler());
  for (int i = 0; i < 10; ++i) REQUIRE(a.publish("h.x", "e") == PublishResult::ok);
  REQUIRE(ok.wait_for(10));
  REQUIRE(eventually([&] { return calls == 10; }, 5s));
  CHECK(a.stats().handler_errors == 5);
  CHECK(errors_reported == 1);  // reported at most once per quiet period (10 s), counted every time
  CHECK(reported_code == static_cast<int>(errc::handler_failed));
}

TEST_CASE("optional event fields and headers reach the handler", "[integration]") {
  Node a(fast_options(unique_cluster("fields"), "a"));
  std::mutex mu;
  std::string seen;
  a.subscribe("f.g", [&](const Event& e) {
    std::lock_guard lock(mu);
    seen = std::string(e.type_name()) + "/" + std::to_string(e.type_version()) + "/" + std::string(e.id()) + "/" +
           std::string(e.correlation_id()) + "/" + std::string(e.causation_id()) + "/" +
           std::string(e.content_type()) + "/" + std::string(e.header("tenant").value_or("?")) + "/" +
           std::to_string(e.headers().size()) + "/" +
           std::to_string(std::chrono::duration_cast<std::chrono::seconds>(e.timestamp().time_since_epoch()).count());
  });
  const Header headers[] = {{"tenant", "acme"}, {"trace", "t1"}};
  PublishOptions po;
  po.type_name = "OrderPlaced";
  po.type_version = 2;
  po.event_id = "evt-1";
  po.correlation_id = "c-1";
  po.causation_id = "k-1";
  po.content_type = "text/plain";
  po.headers = headers;
  po.timestamp = std::chrono::system_clock::time_point(std::chrono::seconds(1700000000));
  REQUIRE(a.publish("f.g", "x", po) == PublishResult::ok);
  REQUIRE(eventually([&] { std::lock_guard lock(mu); return !seen.empty(); }, 5s));
  CHECK(seen == "OrderPlaced/2/evt-1/c-1/k-1/text/plain/acme/2/1700000000");
}

TEST_CASE("the default event id is publisher, epoch and sequence", "[integration]") {
  Node a(fast_options(unique_cluster("ids"), "a"));
  std::mutex mu;
  std::string id;
  a.subscribe("i.d", [&](const Event& e) {
    std::lock_guard lock(mu);
    id = e.id();
  });
  REQUIRE(a.publish("i.d", "x") == PublishResult::ok);
  REQUIRE(eventually([&] { std::lock_guard lock(mu); return !id.empty(); }, 5s));
  CHECK(id == a.id().to_string() + "-" + std::to_string(a.epoch()) + "-1");
}

TEST_CASE("an event's id can be given on as a causation id, and each event of a batch has its own",
          "[integration]") {
  Node a(fast_options(unique_cluster("cause"), "a"));
  std::mutex mu;
  std::vector<std::string> ids;
  std::vector<std::string> causes;
  a.subscribe("c.first", [&](const Event& e) {
    PublishOptions po;
    po.causation_id = e.id();  // a view into the event, valid while this handler runs
    po.correlation_id = "flow";
    {
      std::lock_guard lock(mu);
      ids.emplace_back(e.id());
    }
    REQUIRE(a.publish("c.second", "y", po) == PublishResult::ok);
  });
  a.subscribe("c.second", [&](const Event& e) {
    std::lock_guard lock(mu);
    causes.emplace_back(e.causation_id());
  });
  for (int i = 0; i < 20; ++i) REQUIRE(a.publish("c.first", "x") == PublishResult::ok);
  REQUIRE(eventually([&] { std::lock_guard lock(mu); return causes.size() == 20; }, 5s));
  std::lock_guard lock(mu);
  const auto prefix = a.id().to_string() + "-" + std::to_string(a.epoch()) + "-";
  for (std::size_t i = 0; i < ids.size(); ++i) CHECK(ids[i] == prefix + std::to_string(i + 1));
  CHECK(causes == ids);
}

TEST_CASE("wait_for_subscribers counts only peers whose patterns match", "[integration]") {
  const auto cluster = unique_cluster("match");
  Node a(fast_options(cluster, "a"));
  Node b(fast_options(cluster, "b"));
  b.subscribe("orders.**", [](const Event&) {});
  CHECK(a.wait_for_subscribers("orders.x.y", 1, 10s));
  CHECK_FALSE(a.wait_for_subscribers("billing.x", 1, 300ms));
  CHECK_FALSE(a.wait_for_subscribers("orders.x", 2, 300ms));
}

TEST_CASE("many streams over several handler threads keep per-stream order", "[integration]") {
  const auto cluster = unique_cluster("streams");
  Node a(fast_options(cluster, "a"));
  auto ob = fast_options(cluster, "b");
  ob.handler_threads = 4;
  Node b(ob);
  std::mutex mu;
  std::map<std::string, std::uint64_t> last;
  std::atomic<int> bad{0};
  std::atomic<int> total{0};
  b.subscribe("s.*", [&](const Event& e) {
    std::lock_guard lock(mu);
    auto& l = last[std::string(e.topic())];
    if (e.sequence() != l + 1 || std::to_string(e.sequence()) != e.text()) ++bad;
    l = e.sequence();
    ++total;
  });
  REQUIRE(a.wait_for_subscribers("s.0", 1, 10s));
  std::map<int, int> counter;
  for (int i = 0; i < 40000; ++i) {
    const int s = (i * 7) % 16;
    REQUIRE(a.publish("s." + std::to_string(s), std::to_string(++counter[s])) == PublishResult::ok);
  }
  REQUIRE(eventually([&] { return total == 40000; }, 20s));
  CHECK(bad == 0);
}

TEST_CASE("API misuse throws meshbus::error with a message that says what to do", "[integration]") {
  const auto cluster = unique_cluster("misuse");
  auto o = fast_options(cluster, "a");
  Node a(o);
  CHECK_THROWS_MATCHES(a.publish("bad topic", "x"), error, Catch::Matchers::Predicate<error>([](const error& e) {
                         return e.code_value() == errc::invalid_topic;
                       }));
  CHECK_THROWS_WITH(a.publish("a.*", "x"), Catch::Contains("wildcard"));
  CHECK_THROWS_WITH(a.subscribe("a.b*", [](const Event&) {}), Catch::Contains("whole segment"));
  CHECK_THROWS_AS(a.subscribe("a.b", nullptr), error);
  CHECK_THROWS_WITH(a.poll_once(), Catch::Contains("background_thread"));
  const std::string huge(17u << 20, 'x');
  CHECK_THROWS_WITH(a.publish("big", huge), Catch::Contains("max_message_bytes"));
  PublishOptions po;
  const std::string long_id(300, 'i');
  po.event_id = long_id;
  CHECK_THROWS_WITH(a.publish("t", "x", po), Catch::Contains("event_id"));

  auto fixed = fast_options(cluster, "b");
  fixed.router_port = a.router_port();  // taken
  try {
    Node b(fixed);
    FAIL("binding a port in use must throw");
  } catch (const error& e) {
    CHECK(e.code_value() == errc::address_in_use);
    CHECK_THAT(e.what(), Catch::Contains(std::to_string(a.router_port())) && Catch::Contains("choose another port"));
  }
  a.stop();
  a.stop();  // idempotent
  CHECK(a.stopped());
  CHECK_THROWS_WITH(a.publish("t", "x"), Catch::Contains("after stop()"));
  CHECK_THROWS_AS(a.subscribe("t", [](const Event&) {}), error);
}

TEST_CASE("with the fail policy a full send queue returns would_block and counts it", "[integration]") {
  auto o = fast_options(unique_cluster("full"), "a");
  o.background_thread = false;  // nobody drains the queue
  o.send_policy = SendPolicy::fail;
  o.send_queue_bytes = 64 << 10;
  o.max_batch_bytes = 16 << 10;
  Node a(o);
  const std::string payload(1000, 'p');
  int accepted = 0;
  PublishResult r = PublishResult::ok;
  while ((r = a.publish("q.x", payload)) == PublishResult::ok) ++accepted;
  CHECK(r == PublishResult::would_block);
  CHECK(accepted >= 60);
  CHECK(accepted < 70);
  CHECK(a.stats().publish_would_block == 1);
  a.poll_once(0ms);  // hands the queue to ZeroMQ
  CHECK(a.publish("q.x", payload) == PublishResult::ok);
}

TEST_CASE("handlers may publish, and a handler may stop its own node", "[integration]") {
  const auto cluster = unique_cluster("reentrant");
  Node a(fast_options(cluster, "a"));
  event_log chained;
  a.subscribe("chain.out", chained.handler());
  a.subscribe("chain.in", [&](const Event& e) {
    REQUIRE(a.publish("chain.out", std::string(e.text()) + "!") == PublishResult::ok);
  });
  for (int i = 0; i < 100; ++i) REQUIRE(a.publish("chain.in", std::to_string(i)) == PublishResult::ok);
  REQUIRE(chained.wait_for(100));
  CHECK(chained.events()[99].payload == "99!");

  std::atomic<bool> stopped_inside{false};
  a.subscribe("chain.stop", [&](const Event&) {
    a.stop();
    stopped_inside = a.stopped();
  });
  REQUIRE(a.publish("chain.stop", "now") == PublishResult::ok);
  REQUIRE(eventually([&] { return stopped_inside.load(); }, 10s));
  CHECK_THROWS_AS(a.publish("chain.in", "x"), error);
}

TEST_CASE("with handler_threads = 0 handlers run on the I/O thread, in order, and may publish and wait",
          "[integration]") {
  const auto cluster = unique_cluster("inline");
  auto oa = fast_options(cluster, "a");
  oa.handler_threads = 0;
  oa.send_queue_bytes = 64 << 10;  // small: a handler's publish will have to wait for room
  Node a(oa);
  Node b(fast_options(cluster, "b"));
  std::mutex mu;
  std::set<std::thread::id> threads;
  std::uint64_t last = 0;
  int bad = 0;
  a.subscribe("in.x", [&](const Event& e) {
    {
      std::lock_guard lock(mu);
      threads.insert(std::this_thread::get_id());
      if (e.sequence() != last + 1) ++bad;
      last = e.sequence();
    }
    // Echo a large event: the small send queue fills, so publish() must turn the loop.
    const std::string big(8000, 'e');
    REQUIRE(a.publish("in.echo", big) == PublishResult::ok);
  });
  event_log echoes;
  b.subscribe("in.echo", echoes.handler());
  REQUIRE(b.wait_for_subscribers("in.x", 1, 10s));
  REQUIRE(a.wait_for_subscribers("in.echo", 1, 10s));
  for (int i = 0; i < 500; ++i) REQUIRE(b.publish("in.x", "ping") == PublishResult::ok);
  REQUIRE(echoes.wait_for(500, 20s));
  std::lock_guard lock(mu);
  CHECK(bad == 0);
  CHECK(threads.size() == 1);
  CHECK(threads.count(std::this_thread::get_id()) == 0);
}

TEST_CASE("an inline handler can stop its node", "[integration]") {
  auto o = fast_options(unique_cluster("inline-stop"), "a");
  o.handler_threads = 0;
  Node a(o);
  std::atomic<bool> asked{false};
  a.subscribe("s.now", [&](const Event&) {
    a.stop();  // only asks; completes after this handler returns
    asked = true;
  });
  REQUIRE(a.publish("s.now", "x") == PublishResult::ok);
  REQUIRE(eventually([&] { return asked.load(); }, 5s));
  CHECK_THROWS_AS(a.publish("s.now", "again"), error);
  a.stop();  // from this thread: completes
  CHECK(a.stopped());
}
