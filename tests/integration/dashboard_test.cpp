// The dashboard end to end: a small mesh in this process, `meshbus dashboard` as a
// process, and the page in headless Chromium (tests/browser/drive_dashboard.js): the
// nodes and a stream appear, and replaying a dead letter with the page's button
// delivers it again. Run through tests/browser/run.sh, which skips without Chromium.
#include <catch2/catch.hpp>

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "tests/support/node_helpers.hpp"

using namespace meshbus;
using namespace meshbus::test;
using namespace std::chrono_literals;

TEST_CASE("the dashboard in headless Chromium: nodes, a stream between them, a dead letter replayed", "[browser]") {
  const auto cluster = unique_cluster("dashboard");
  Node holder(fast_options(cluster, "holder"));
  Node publisher(fast_options(cluster, "publisher"));
  std::atomic<bool> healed{false};
  std::atomic<int> handled{0};
  SubscribeOptions o;
  o.delivery = Delivery::acknowledged;
  o.max_deliver = 2;
  holder.subscribe("orders.placed", [&](const Event&) {
    if (!healed) throw std::runtime_error("database down");
    ++handled;
  }, o);
  REQUIRE(publisher.wait_for_subscribers("orders.placed", 1, 20s));
  REQUIRE(publisher.publish("orders.placed", "order 42") == PublishResult::ok);
  REQUIRE(eventually([&] { return holder.dead_letters().size() == 1; }, 20s));
  CHECK(holder.stats().dead_letters_held == 1);
  healed = true;  // the replay from the page will succeed

  child_process dashboard({MESHBUS_TOOL, "dashboard", "--http", "127.0.0.1:0", "--cluster", cluster,
                           "--beacon-interval", "100"});
  REQUIRE(printed(dashboard, "meshbus dashboard on http://", 20s));
  const auto out = dashboard.out();
  const auto at = out.find("http://");
  const auto url = out.substr(at, out.find('\n', at) - at);
  const auto screenshot = std::filesystem::path(MESHBUS_TEST_OUTPUT_DIR) / "dashboard.png";
  std::filesystem::remove(screenshot);

  child_process driver({"/usr/bin/env", "node", MESHBUS_DASHBOARD_DRIVER, url, screenshot.string(), "holder", "orders.placed"});
  const auto code = driver.wait(120s);
  INFO("driver: " << driver.out() << driver.err() << "\ndashboard: " << dashboard.out() << dashboard.err());
  REQUIRE(code == 0);
  const auto found = nlohmann::json::parse(driver.out());
  const auto nodes = found["nodes"].get<std::vector<std::string>>();
  CHECK(std::find(nodes.begin(), nodes.end(), "holder") != nodes.end());
  CHECK(std::find(nodes.begin(), nodes.end(), "publisher") != nodes.end());
  const auto topics = found["topics"].get<std::vector<std::string>>();
  CHECK(std::find(topics.begin(), topics.end(), "orders.placed") != topics.end());
  CHECK(found["edges"].get<int>() >= 1);
  CHECK(found["dead_letters"].get<int>() == 1);
  CHECK(found["replayed"] == "yes");
  CHECK(eventually([&] { return handled.load() == 1; }, 20s));  // delivered again, handled this time
  CHECK(std::filesystem::file_size(screenshot) > 10000);
  dashboard.signal(SIGTERM);
  CHECK(dashboard.wait(20s) == 0);
}
