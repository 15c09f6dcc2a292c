// The meshbus tool and the demo, run as a user would: real processes, real pipes.
#include <catch2/catch.hpp>

#include <signal.h>

#include "tests/support/node_helpers.hpp"

using namespace meshbus;
using namespace meshbus::test;
using namespace std::chrono_literals;

namespace {
std::vector<std::string> tool(std::initializer_list<std::string> args) {
  std::vector<std::string> argv{MESHBUS_TOOL};
  argv.insert(argv.end(), args);
  return argv;
}
}  // namespace

TEST_CASE("meshbus pub from stdin reaches meshbus sub: all 6,000 lines, in order", "[multiprocess][tool]") {
  const auto cluster = unique_cluster("tool");
  child_process sub(tool({"sub", "--cluster", cluster, "demo.**", "--count", "6000", "--timeout", "60000"}));
  // Start the publisher once the subscriber exists (it may also start first: pub waits).
  std::string lines;
  for (int i = 1; i <= 6000; ++i) lines += std::to_string(i) + "\n";
  child_process::options po;
  po.stdin_text = lines;
  child_process pub(tool({"pub", "--cluster", cluster, "--subscribers", "1", "demo.lines"}), po);
  const auto pub_code = pub.wait(60s);
  INFO("pub stderr: " << pub.err());
  REQUIRE(pub_code == 0);
  CHECK_THAT(pub.err(), Catch::Contains("published 6000 events"));
  const auto sub_code = sub.wait(60s);
  INFO("sub stderr: " << sub.err());
  REQUIRE(sub_code == 0);
  const auto out = lines_of(sub.out());
  REQUIRE(out.size() == 6000);
  for (int i = 1; i <= 6000; ++i) {
    if (out[static_cast<std::size_t>(i - 1)] != "demo.lines " + std::to_string(i)) {
      FAIL("line " << i << " is '" << out[static_cast<std::size_t>(i - 1)] << "'");
    }
  }
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

TEST_CASE("the demo runs five processes that end with every event delivered", "[multiprocess][demo]") {
  child_process demo({MESHBUS_DEMO, "--quiet"});
  const auto code = demo.wait(60s);
  INFO("stdout: " << demo.out() << "\nstderr: " << demo.err());
  REQUIRE(code == 0);
  CHECK_THAT(demo.out(), Catch::Contains("OK: every event arrived once and in order"));
}
