// The metrics endpoint (Options::metrics_address): GET /metrics in the Prometheus text
// format, checked against Stats; bad addresses are clear errors at start; malformed,
// oversized and unknown requests are answered 4xx and counted, and the node goes on.
#include <catch2/catch.hpp>


#include <atomic>
#include <map>
#include <set>
#include <sstream>

#include "tests/support/http.hpp"
#include "tests/support/node_helpers.hpp"

using namespace meshbus;
using namespace meshbus::test;
using namespace std::chrono_literals;

namespace {

struct exposition {
  std::map<std::string, std::string> types;             ///< family -> counter, gauge, histogram
  std::set<std::string> helped;                          ///< families with a HELP line
  std::map<std::string, double> samples;                 ///< "name{labels}" -> value
  std::vector<std::string> problems;
};

/// Parses the text format strictly enough: every sample's family has HELP and TYPE
/// lines before it, every sample line is `name{labels} value`.
exposition parse(const std::string& text) {
  exposition e;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    if (line.rfind("# HELP ", 0) == 0) {
      e.helped.insert(line.substr(7, line.find(' ', 7) - 7));
      continue;
    }
    if (line.rfind("# TYPE ", 0) == 0) {
      const auto name = line.substr(7, line.find(' ', 7) - 7);
      e.types[name] = line.substr(line.find(' ', 7) + 1);
      continue;
    }
    const auto brace = line.find('{');
    const auto close = line.rfind('}');
    if (brace == std::string::npos || close == std::string::npos || close + 2 > line.size()) {
      e.problems.push_back("not a sample: " + line);
      continue;
    }
    auto family = line.substr(0, brace);
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      const std::string s(suffix);
      if (family.size() > s.size() && family.compare(family.size() - s.size(), s.size(), s) == 0 &&
          e.types.count(family.substr(0, family.size() - s.size())) != 0 &&
          e.types[family.substr(0, family.size() - s.size())] == "histogram") {
        family = family.substr(0, family.size() - s.size());
      }
    }
    if (e.types.count(family) == 0 || e.helped.count(family) == 0) e.problems.push_back("no HELP/TYPE: " + line);
    e.samples[line.substr(0, close + 1)] = std::stod(line.substr(close + 2));
  }
  return e;
}

Options with_metrics(const std::string& cluster, const std::string& name) {
  auto o = fast_options(cluster, name);
  o.metrics_address = "127.0.0.1:0";
  return o;
}

}  // namespace

TEST_CASE("GET /metrics serves every statistic in the Prometheus text format, as Stats has it",
          "[integration][metrics]") {
  const auto cluster = unique_cluster("metrics");
  Node pub(fast_options(cluster, "pub"));
  Node sub(with_metrics(cluster, "sub \"quoted\""));
  REQUIRE(sub.metrics_port() != 0);
  CHECK(pub.metrics_port() == 0);  // off by default
  std::atomic<int> got{0};
  sub.subscribe("m.*", [&](const Event&) { ++got; });
  REQUIRE(pub.wait_for_subscribers("m.a", 1, 10s));
  for (int i = 0; i < 200; ++i) REQUIRE(pub.publish("m.a", "x") == PublishResult::ok);
  REQUIRE(pub.flush(10s).flushed);
  REQUIRE(eventually([&] { return got.load() == 200; }, 10s));

  const auto response = get(sub.metrics_port(), "/metrics");
  REQUIRE(status_of(response) == 200);
  CHECK_THAT(response, Catch::Contains("Content-Type: text/plain; version=0.0.4"));
  const auto e = parse(body_of(response));
  INFO(body_of(response));
  CHECK(e.problems.empty());
  const auto labels = "{node=\"sub \\\"quoted\\\"\",node_id=\"" + sub.id().to_string() + "\"}";
  const auto stats = sub.stats();
  for_each_stat(stats, [&](const StatInfo& info, std::uint64_t) {
    const auto name = "meshbus_" + std::string(info.name) + (info.kind == StatKind::counter ? "_total" : "");
    CHECK(e.types.count(name) == 1);
    CHECK(e.types.at(name) == (info.kind == StatKind::counter ? "counter" : "gauge"));
    CHECK(e.samples.count(name + labels) == 1);
  });
  // Counters that no longer move equal Stats.
  CHECK(e.samples.at("meshbus_events_delivered_total" + labels) == 200);
  CHECK(e.samples.at("meshbus_events_received_total" + labels) == static_cast<double>(stats.events_received));
  CHECK(e.samples.at("meshbus_peers_alive" + labels) == 1);
  const auto stream = "meshbus_stream_events_total{node=\"sub \\\"quoted\\\"\",node_id=\"" + sub.id().to_string() +
                      "\",direction=\"in\",topic=\"m.a\",publisher=\"" + pub.id().to_string() + "\"}";
  CHECK(e.samples.at(stream) == 200);
  // The histograms: cumulative buckets ending in +Inf, equal to _count.
  CHECK(e.types.at("meshbus_delivery_latency_seconds") == "histogram");
  const auto inf = "meshbus_delivery_latency_seconds_bucket{node=\"sub \\\"quoted\\\"\",node_id=\"" +
                   sub.id().to_string() + "\",le=\"+Inf\"}";
  CHECK(e.samples.at(inf) >= 200);
  CHECK(e.samples.at(inf) == e.samples.at("meshbus_delivery_latency_seconds_count" + labels));
  for (const auto& [key, value] : e.samples) {
    if (key.rfind("meshbus_handler_seconds_bucket", 0) == 0) {
      CHECK(value <= e.samples.at("meshbus_handler_seconds_count" + labels));
    }
  }
  CHECK(sub.stats().metrics_requests >= 1);
}

TEST_CASE("the metrics endpoint: bad addresses fail at start, bad requests are refused and counted",
          "[integration][metrics]") {
  const auto cluster = unique_cluster("metricsbad");
  Node node(with_metrics(cluster, "node"));
  const auto port = node.metrics_port();
  REQUIRE(port != 0);

  // At start: a port in use, an address that is not this machine's, one that is no address.
  auto taken = fast_options(cluster, "taken");
  taken.metrics_address = "127.0.0.1:" + std::to_string(port);
  CHECK_THROWS_WITH(Node(taken), Catch::Contains("already in use"));
  taken.metrics_address = "192.0.2.1:9464";  // TEST-NET-1: never local
  CHECK_THROWS_WITH(Node(taken), Catch::Contains("not an address of this machine"));
  taken.metrics_address = "over:there";
  CHECK_THROWS_WITH(Node(taken), Catch::Contains("is not HOST:PORT"));

  // Requests it does not serve: answered 4xx, counted, nothing else disturbed.
  const auto before = node.stats().metrics_requests_rejected;
  CHECK(status_of(http_exchange(port, "GARBAGE\r\n\r\n")) == 400);
  CHECK(status_of(get(port, "/nope")) == 404);
  const auto huge = http_exchange(port, "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(100000, 'a') +
                                            "\r\nConnection: close\r\n\r\n");
  CHECK((huge.empty() || status_of(huge) >= 400));  // refused, or the connection dropped
  CHECK(status_of(http_exchange(port, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n"
                                      "Connection: close\r\n\r\n" +
                                          std::string(1000000, 'b'))) >= 400);
  REQUIRE(eventually([&] { return node.stats().metrics_requests_rejected >= before + 3; }, 5s));

  // Still serving, and the node still delivers.
  CHECK(status_of(get(port, "/metrics")) == 200);
  Node peer(fast_options(cluster, "peer"));
  std::atomic<int> got{0};
  node.subscribe("after.*", [&](const Event&) { ++got; });
  REQUIRE(peer.wait_for_subscribers("after.x", 1, 10s));
  REQUIRE(peer.publish("after.x", "still here") == PublishResult::ok);
  CHECK(eventually([&] { return got.load() == 1; }, 10s));
}
