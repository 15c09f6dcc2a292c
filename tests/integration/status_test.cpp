// Node reports between real nodes (docs/protocol.md §11): every node answers a status
// request on its I/O thread — even while its handlers are stuck — with its counters,
// peers, streams and their rates, the subscribers behind on its streams and its latency
// histograms; an asker that floods is answered at a bounded rate, the rest counted.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <thread>

#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include "tests/support/node_helpers.hpp"

using namespace meshbus;
using namespace meshbus::test;
using namespace std::chrono_literals;

namespace {

const NodeReport* find_report(const MeshReport& m, const NodeId& id) {
  for (const auto& r : m.nodes) {
    if (r.id == id) return &r;
  }
  return nullptr;
}

const StreamReport* find_stream(const std::vector<StreamReport>& v, const std::string& topic) {
  for (const auto& s : v) {
    if (s.topic == topic) return &s;
  }
  return nullptr;
}

}  // namespace

TEST_CASE("every node reports itself: counters, peers, streams, lag and latency", "[integration][status]") {
  const auto cluster = unique_cluster("status");
  Node pub(fast_options(cluster, "pub"));
  Node fast(fast_options(cluster, "fast"));
  Node stuck(fast_options(cluster, "stuck"));
  std::atomic<std::uint64_t> got{0};
  fast.subscribe("st.*", [&](const Event&) { ++got; });
  // The stuck node's only handler thread waits until released: its I/O thread must
  // still answer for it.
  std::atomic<bool> release{false};
  std::atomic<bool> entered{false};
  SubscribeOptions acked;
  acked.delivery = Delivery::acknowledged;
  stuck.subscribe("st.*", [&](const Event&) {
    entered = true;
    while (!release) std::this_thread::sleep_for(1ms);
  }, acked);
  REQUIRE(pub.wait_for_subscribers("st.a", 2, 10s));
  constexpr int n = 500;
  for (int i = 0; i < n; ++i) REQUIRE(pub.publish("st.a", "event") == PublishResult::ok);
  REQUIRE(eventually([&] { return got.load() == n && entered.load(); }, 10s));

  // The stuck node's lag shows at the publisher: its oldest unacknowledged event is
  // at least as old as the wait below.
  std::this_thread::sleep_for(300ms);
  const auto mesh = pub.reports(5s);
  CHECK(mesh.unanswered.empty());
  REQUIRE(mesh.nodes.size() == 3);
  CHECK(mesh.nodes.front().id == pub.id());  // the asker first
  const auto* p = find_report(mesh, pub.id());
  const auto* f = find_report(mesh, fast.id());
  const auto* s = find_report(mesh, stuck.id());
  REQUIRE(p != nullptr);
  REQUIRE(f != nullptr);
  REQUIRE(s != nullptr);  // answered although its handler thread is held up

  CHECK(p->name == "pub");
  CHECK(p->cluster == cluster);
  CHECK(p->stats.events_published >= n);
  CHECK(p->peers.size() == 2);
  const auto* out = find_stream(p->published, "st.a");
  REQUIRE(out != nullptr);
  CHECK(out->last_seq == n);
  CHECK(out->events_per_second > 0);
  REQUIRE(p->lagging.size() == 1);
  CHECK(p->lagging[0].node == stuck.id());
  CHECK(p->lagging[0].name == "stuck");
  CHECK(p->lagging[0].events >= n - 1);
  CHECK(p->lagging[0].lag_ms >= 250);

  const auto* in = find_stream(f->received, "st.a");
  REQUIRE(in != nullptr);
  CHECK(in->publisher == pub.id());
  CHECK(in->last_seq == n);
  CHECK(f->stats.events_delivered >= n);
  CHECK(f->delivery_latency.count >= n);
  CHECK(f->handler_time.count >= n);
  CHECK(f->delivery_latency.quantile_ns(0.5) > 0);
  CHECK(std::find(f->subscriptions.begin(), f->subscriptions.end(), "st.*") != f->subscriptions.end());
  CHECK(s->stats.status_requests_answered >= 1);

  // Released, the stuck node catches up and the publisher's lag goes away.
  release = true;
  REQUIRE(pub.flush(10s).flushed);
  CHECK(pub.report().lagging.empty());
}

TEST_CASE("a node answers one asker's flood of status requests at a bounded rate", "[integration][status]") {
  const auto cluster = unique_cluster("statusflood");
  Node asker(fast_options(cluster, "asker"));
  Node target(fast_options(cluster, "target"));
  REQUIRE(asker.wait_for_peers(1, 10s));
  REQUIRE(target.wait_for_peers(1, 10s));
  // 100 asks in a row, each waiting briefly: far beyond 10 a second (burst 20).
  const auto started = std::chrono::steady_clock::now();
  for (int i = 0; i < 100; ++i) asker.reports(20ms);
  const auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  REQUIRE(eventually([&] {
    const auto st = target.stats();
    return st.status_requests_answered + st.status_requests_refused == 100;
  }, 10s));
  const auto st = target.stats();
  CHECK(st.status_requests_refused >= 1);
  CHECK(static_cast<double>(st.status_requests_answered) <= 20 + 10 * seconds + 1);
  // The target goes on answering others, and traffic is unaffected.
  Node other(fast_options(cluster, "other"));
  REQUIRE(other.wait_for_peers(2, 10s));
  REQUIRE(eventually([&] { return find_report(other.reports(2s), target.id()) != nullptr; }, 10s));
}

TEST_CASE("a node logs to the application's spdlog logger, at a level set through the API",
          "[integration][logging]") {
  auto sink = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(1000);
  auto app_logger = std::make_shared<spdlog::logger>("app", sink);
  app_logger->set_level(spdlog::level::warn);
  const auto cluster = unique_cluster("logging");
  auto o = fast_options(cluster, "logged");
  o.logger = app_logger;
  o.log_level = LogLevel::info;
  auto lines = [&] { return sink->last_formatted(); };
  auto contains = [&](const std::string& what) {
    const auto all = lines();
    return std::any_of(all.begin(), all.end(), [&](const std::string& l) { return l.find(what) != std::string::npos; });
  };
  {
    Node node(o);
    CHECK(app_logger->level() == spdlog::level::info);  // Options::log_level applied to it
    CHECK(contains("node " + node.id().short_string() + " 'logged'"));  // the start line, at info
    node.set_log_level(LogLevel::off);
    CHECK(app_logger->level() == spdlog::level::off);
    const auto before = lines().size();
    node.stop();  // "stopped ..." lines are info: not logged now
    CHECK(lines().size() == before);
  }
  // Without Options::log_level the node leaves the application logger's level alone.
  app_logger->set_level(spdlog::level::warn);
  auto plain = fast_options(cluster, "plain");
  plain.logger = app_logger;
  Node node(plain);
  CHECK(app_logger->level() == spdlog::level::warn);
}

TEST_CASE("a report larger than a message is cut to fit, and says how many streams it left out",
          "[integration][status]") {
  const auto cluster = unique_cluster("statusbig");
  auto small = [&](const std::string& name) {
    auto o = fast_options(cluster, name);
    o.max_message_bytes = 65536;  // the smallest allowed: one batch
    return o;
  };
  Node busy(small("busy"));
  Node asker(small("asker"));
  REQUIRE(asker.wait_for_peers(1, 10s));
  // 3000 topics of 60 bytes: the published list alone is far over 64 KiB.
  const std::string pad(50, 'x');
  for (int i = 0; i < 3000; ++i) REQUIRE(busy.publish("big." + pad + "." + std::to_string(i), "e") == PublishResult::ok);
  REQUIRE(eventually([&] { return busy.report().published.size() >= 1000; }, 10s));
  const auto mesh = asker.reports(5s);
  REQUIRE(find_report(mesh, busy.id()) != nullptr);  // it arrived and decoded
  const auto* r = find_report(mesh, busy.id());
  CHECK(r->published.size() < 1000);
  CHECK(r->streams_omitted >= 3000 - r->published.size());
  CHECK(mesh.unanswered.empty());
}
