// `meshbus trace` as a user runs it: real node processes (tests/procs/flow_node) carry a
// flow with causation across three processes, one of them with a durable log, and the
// tool asks them all for it and prints the causation tree; then one process is replaced
// by a fresh one (its events are gone) and another holds its handler thread (it cannot
// answer).
#include <catch2/catch.hpp>

#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/support/node_helpers.hpp"

using namespace meshbus;
using namespace meshbus::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

/// A flow_node of `cluster`.
std::vector<std::string> flow_node(const std::string& cluster, const std::string& name,
                                   std::initializer_list<std::string> args) {
  std::vector<std::string> argv{MESHBUS_TEST_FLOW_NODE, "--cluster", cluster, "--name", name};
  argv.insert(argv.end(), args);
  return argv;
}

/// `meshbus trace` in `cluster`, looking for nodes for up to 5 s.
std::vector<std::string> trace_tool(const std::string& cluster, std::initializer_list<std::string> args) {
  std::vector<std::string> argv{MESHBUS_TOOL, "trace", "--cluster", cluster, "--wait", "5000"};
  argv.insert(argv.end(), args);
  return argv;
}

/// The ids flow_node printed for its events on `topic` ("published <topic> id=<id>"), in order.
std::vector<std::string> published_ids(const child_process& p, const std::string& topic) {
  std::vector<std::string> out;
  const auto prefix = "published " + topic + " id=";
  for (const auto& line : lines_of(p.out())) {
    if (line.rfind(prefix, 0) == 0) out.push_back(line.substr(prefix.size()));
  }
  return out;
}

/// Waits until `p` printed `count` events on `topic`.
bool has_published(child_process& p, const std::string& topic, std::size_t count,
                   std::chrono::milliseconds timeout) {
  return p.wait_output([&](const std::string&) { return published_ids(p, topic).size() >= count; }, timeout);
}

/// "<id>@<node_name>" of a tree entry, or "?<id>" for an event no node holds, with its
/// children in brackets: the shape of the tree in one string.
std::string shape(const nlohmann::json& entries) {
  std::string out;
  for (const auto& e : entries) {
    if (!out.empty()) out += ", ";
    out += e.contains("not_held") ? "?" + e["not_held"].get<std::string>()
                                  : e["id"].get<std::string>() + "@" + e["node_name"].get<std::string>();
    if (!e["children"].empty()) out += " [" + shape(e["children"]) + "]";
  }
  return out;
}

/// name -> events of each node that answered, and the names of those that did not.
std::map<std::string, std::uint64_t> answered(const nlohmann::json& doc) {
  std::map<std::string, std::uint64_t> out;
  for (const auto& n : doc["nodes"]["answered"]) {
    CHECK(n["status"] == "complete");
    out[n["name"].get<std::string>()] = n["events"].get<std::uint64_t>();
  }
  return out;
}

std::vector<std::string> silent(const nlohmann::json& doc) {
  std::vector<std::string> out;
  for (const auto& n : doc["nodes"]["silent"]) out.push_back(n["name"].get<std::string>());
  return out;
}

void stop(child_process& p) {
  p.signal(SIGTERM);
  CHECK(p.wait(20s) == 0);
}

}  // namespace

TEST_CASE(
    "meshbus trace prints one flow's causation tree across processes, then what no node holds and who "
    "did not answer",
    "[multiprocess][tool][trace]") {
  const auto cluster = unique_cluster("tooltrace");
  temp_dir orders_dir;
  // orders: shop.placed -> payments: two pay.steps -> shipping: one shop.shipped each ->
  // orders: one shop.completed each. orders keeps a durable log, the others memory only.
  child_process payments(
      flow_node(cluster, "payments", {"--on", "shop.placed", "--then", "pay.steps,pay.steps"}));
  child_process shipping(flow_node(cluster, "shipping", {"--on", "pay.steps", "--then", "shop.shipped"}));
  child_process orders(flow_node(cluster, "orders",
                                 {"--data-dir", orders_dir.str(), "--on", "shop.shipped", "--then",
                                  "shop.completed", "--start", "shop.placed", "--peers", "2"}));
  const bool flowed = has_published(orders, "shop.completed", 2, 30s) &&
                      has_published(payments, "pay.steps", 2, 5s) &&
                      has_published(shipping, "shop.shipped", 2, 5s);
  INFO("orders: " << orders.out() << orders.err() << "\npayments: " << payments.out() << payments.err()
                  << "\nshipping: " << shipping.out() << shipping.err());
  REQUIRE(flowed);
  const auto placed = published_ids(orders, "shop.placed").at(0);
  const auto completed = published_ids(orders, "shop.completed");
  const auto steps = published_ids(payments, "pay.steps");
  const auto shipped = published_ids(shipping, "shop.shipped");
  // Default ids are "<node>-<epoch>-<sequence>", per topic: the first shop.completed has the id of
  // shop.placed. It has a correlation id of its own, so only shop.placed is the flow's first event.
  REQUIRE(placed == completed[0]);

  SECTION("every node answers: the whole tree, in causation and time order") {
    child_process json_run(trace_tool(cluster, {placed, "--json", "--timeout", "20000"}));
    const auto code = json_run.wait(60s);
    INFO("stdout: " << json_run.out() << "\nstderr: " << json_run.err());
    REQUIRE(code == 0);
    const auto doc = nlohmann::json::parse(json_run.out());
    CHECK(doc["correlation_id"] == placed);
    CHECK(doc["events"] == 7);
    CHECK(shape(doc["tree"]) == placed + "@orders [" +                                                      //
                                    steps[0] + "@payments [" + shipped[0] + "@shipping [" + completed[0] +  //
                                    "@orders]], " +                                                         //
                                    steps[1] + "@payments [" + shipped[1] + "@shipping [" + completed[1] +  //
                                    "@orders]]]");
    const auto& root = doc["tree"][0];
    CHECK(root["topic"] == "shop.placed");
    CHECK_FALSE(root.contains("causation_id"));
    CHECK_FALSE(root.contains("cause_ambiguous"));
    CHECK(root["timestamp"].get<std::string>().size() == std::string("2026-12-02T17:05:00.123Z").size());
    const auto& step = root["children"][0];
    CHECK(step["topic"] == "pay.steps");
    CHECK(step["causation_id"] == placed);
    CHECK(step["correlation_id"] == placed);
    CHECK(step["publisher"] == steps[0].substr(0, 32));
    CHECK(step["node"] == steps[0].substr(0, 32));
    CHECK(step["sequence"] == 1);
    CHECK(step["timestamp_ns"].get<std::int64_t>() >= root["timestamp_ns"].get<std::int64_t>());
    CHECK(answered(doc) ==
          std::map<std::string, std::uint64_t>{{"orders", 3}, {"payments", 2}, {"shipping", 2}});
    CHECK(silent(doc).empty());

    child_process text_run(trace_tool(cluster, {placed}));
    REQUIRE(text_run.wait(60s) == 0);
    const auto lines = lines_of(text_run.out());
    INFO(text_run.out());
    REQUIRE(lines.size() >= 12);
    CHECK_THAT(
        lines[0],
        Catch::Matches(R"(20\d\d-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z orders shop\.placed - id=)" + placed));
    for (std::size_t i = 0; i < 2; ++i) {
      CHECK_THAT(lines[1 + 3 * i],
                 Catch::StartsWith("  20") && Catch::EndsWith(" payments pay.steps - id=" + steps[i]));
      CHECK_THAT(lines[2 + 3 * i],
                 Catch::StartsWith("    20") && Catch::EndsWith(" shipping shop.shipped - id=" + shipped[i]));
      CHECK_THAT(lines[3 + 3 * i], Catch::StartsWith("      20") &&
                                       Catch::EndsWith(" orders shop.completed - id=" + completed[i]));
    }
    CHECK(lines[7].empty());
    CHECK(lines[8] == "nodes that answered (3):");
    CHECK_THAT(text_run.out(),
               Catch::Contains(" orders: 3 events\n") && Catch::Contains(" shipping: 2 events\n"));
    CHECK_THAT(text_run.out(), !Catch::Contains("did not answer"));

    child_process unknown(trace_tool(cluster, {"no-such-flow", "--timeout", "20000"}));
    CHECK(unknown.wait(60s) == 1);
    CHECK_THAT(unknown.err(), Catch::Contains("no events of flow no-such-flow"));
    CHECK_THAT(unknown.out(), Catch::Contains("nodes that answered (3):"));
  }

  SECTION("a node's events gone with its process, and a node that cannot answer") {
    // shipping restarts without a data directory: a new node that holds nothing.
    stop(shipping);
    child_process fresh(flow_node(cluster, "shipping", {}));
    // stuck's one handler thread is held, so it never gets to the trace request.
    child_process stuck(flow_node(cluster, "stuck", {"--stall", "stuck.hold"}));
    REQUIRE(has_published(stuck, "stuck.hold", 1, 10s));
    REQUIRE(fresh.wait_output([](const std::string& out) { return out.rfind("node ", 0) == 0; }, 10s));

    child_process json_run(trace_tool(cluster, {placed, "--json", "--timeout", "4000"}));
    const auto code = json_run.wait(60s);
    INFO("stdout: " << json_run.out() << "\nstderr: " << json_run.err());
    REQUIRE(code == 0);
    const auto doc = nlohmann::json::parse(json_run.out());
    CHECK(doc["events"] == 5);
    CHECK(shape(doc["tree"]) == placed + "@orders [" + steps[0] + "@payments, " + steps[1] + "@payments], ?" +
                                    shipped[0] + " [" + completed[0] + "@orders], ?" + shipped[1] + " [" +
                                    completed[1] + "@orders]");
    CHECK(answered(doc) ==
          std::map<std::string, std::uint64_t>{{"orders", 3}, {"payments", 2}, {"shipping", 0}});
    CHECK(silent(doc) == std::vector<std::string>{"stuck"});

    child_process text_run(trace_tool(cluster, {placed, "--timeout", "4000"}));
    REQUIRE(text_run.wait(60s) == 0);
    INFO(text_run.out());
    const auto lines = lines_of(text_run.out());
    REQUIRE(lines.size() >= 7);
    CHECK(lines[3] == "(not held: " + shipped[0] + ")");
    CHECK_THAT(lines[4],
               Catch::StartsWith("  20") && Catch::EndsWith(" orders shop.completed - id=" + completed[0]));
    CHECK(lines[5] == "(not held: " + shipped[1] + ")");
    CHECK_THAT(text_run.out(),
               Catch::Contains("nodes that did not answer (1):\n  ") && Catch::Contains(" stuck\n"));
    stop(stuck);
    stop(fresh);
  }
  stop(orders);
  stop(payments);
  if (!shipping.wait(0ms)) stop(shipping);
}

TEST_CASE("meshbus trace: a missing, empty or too long ID and a bad timeout are usage errors",
          "[integration][tool]") {
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"trace"},
           {"trace", ""},
           {"trace", std::string(256, 'x')},
           {"trace", "flow-1", "--timeout", "0"},
           {"trace", "flow-1", "--wait", "-1"},
       }) {
    std::vector<std::string> argv{MESHBUS_TOOL};
    argv.insert(argv.end(), args.begin(), args.end());
    child_process bad(argv);
    INFO((args.size() > 1 ? args[1].substr(0, 20) : std::string("no ID")));
    CHECK(bad.wait(10s) == 2);
    CHECK_THAT(bad.err(), Catch::StartsWith("meshbus: "));
  }
}
