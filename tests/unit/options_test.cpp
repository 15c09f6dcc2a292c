// Options resolution: defaults, environment, explicit values winning, and clear
// errors for invalid settings.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <string>

#include "discovery/interfaces.hpp"
#include "discovery/seeds.hpp"
#include "lib/node/options.hpp"
#include "meshbus/error.hpp"

using namespace meshbus;
using namespace std::chrono_literals;

namespace {
struct env_guard {
  explicit env_guard(const char* name, const char* value) : name_(name) { setenv(name, value, 1); }
  ~env_guard() { unsetenv(name_); }
  const char* name_;
};
}  // namespace

TEST_CASE("defaults: loopback, port 5670, cluster meshbus, a name", "[unit][options]") {
  Options o;
  o.use_environment = false;
  const auto r = detail::resolve_options(o);
  CHECK(r.options.cluster == "meshbus");
  CHECK(r.options.beacon_port == 5670);
  CHECK(r.options.interface.empty());
  CHECK_FALSE(r.options.name.empty());
  CHECK(r.options.peer_expiry == 5s);
  const auto sel = discovery::select_interfaces(r.options.interface);
  CHECK(sel.bind_address == "127.0.0.1");
  REQUIRE(sel.interfaces.size() == 1);
  CHECK(sel.interfaces[0].loopback);
}

TEST_CASE("environment fills unset options and explicit options win", "[unit][options]") {
  env_guard a("MESHBUS_CLUSTER", "from-env");
  env_guard b("MESHBUS_BEACON_PORT", "6001");
  env_guard c("MESHBUS_PEERS", "10.0.0.1:7000, seed2:7001");
  Options o;
  auto r = detail::resolve_options(o);
  CHECK(r.options.cluster == "from-env");
  CHECK(r.options.beacon_port == 6001);
  REQUIRE(r.seeds.size() == 2);
  CHECK(r.seeds[1] == discovery::seed_address{"seed2", 7001});
  o.cluster = "explicit";
  o.beacon_port = 6002;
  r = detail::resolve_options(o);
  CHECK(r.options.cluster == "explicit");
  CHECK(r.options.beacon_port == 6002);
  o.use_environment = false;
  o.cluster.clear();
  CHECK(detail::resolve_options(o).options.cluster == "meshbus");
}

TEST_CASE("invalid environment values name the variable", "[unit][options]") {
  env_guard a("MESHBUS_BEACON_PORT", "seventy");
  try {
    detail::resolve_options(Options{});
    FAIL("expected meshbus::error");
  } catch (const error& e) {
    CHECK(e.code_value() == errc::configuration);
    CHECK_THAT(e.what(), Catch::Contains("MESHBUS_BEACON_PORT"));
  }
}

TEST_CASE("an unknown MESHBUS_LOG level is refused with the valid levels listed", "[unit][options]") {
  for (const char* bad : {"WARN", "warning", "verbose"}) {
    env_guard level("MESHBUS_LOG", bad);
    try {
      detail::resolve_options(Options{});
      FAIL("expected meshbus::error for MESHBUS_LOG=" << bad);
    } catch (const error& e) {
      CHECK(e.code_value() == errc::configuration);
      CHECK_THAT(e.what(), Catch::Contains(std::string("MESHBUS_LOG='") + bad + "'") &&
                               Catch::Contains("trace, debug, info, warn, error, off"));
    }
  }
  for (const char* good : {"trace", "debug", "info", "warn", "error", "off"}) {
    env_guard level("MESHBUS_LOG", good);
    CHECK_NOTHROW(detail::resolve_options(Options{}));
  }
}

TEST_CASE("bad seeds and bad option values are configuration errors", "[unit][options]") {
  CHECK_THROWS_WITH(discovery::parse_seeds("hostonly"), Catch::Contains("host:port"));
  CHECK_THROWS_WITH(discovery::parse_seeds("h:0"), Catch::Contains("host:port"));
  CHECK_THROWS_WITH(discovery::parse_seeds("h:70000"), Catch::Contains("host:port"));
  CHECK(discovery::parse_seeds(" a:1 ,,b:2 ").size() == 2);
  Options o;
  o.use_environment = false;
  o.beacon_interval = 1ms;
  CHECK_THROWS_WITH(detail::resolve_options(o), Catch::Contains("beacon_interval"));
  o = Options{};
  o.use_environment = false;
  o.peer_expiry = 2s;  // shorter than 3 x 1 s
  CHECK_THROWS_WITH(detail::resolve_options(o), Catch::Contains("peer_expiry"));
  o.peer_expiry = 0s;  // derived from a long interval
  o.beacon_interval = 3s;
  CHECK(detail::resolve_options(o).options.peer_expiry == 15s);
  o = Options{};
  o.use_environment = false;
  o.max_batch_bytes = 100;
  CHECK_THROWS_AS(detail::resolve_options(o), error);
}

TEST_CASE("MESHBUS_MAX_MESSAGE_BYTES raises the message limit unless an explicit value is set",
          "[unit][options]") {
  env_guard limit("MESHBUS_MAX_MESSAGE_BYTES", "67108864");
  Options o;
  CHECK(detail::resolve_options(o).options.max_message_bytes == std::size_t{64} << 20);
  o.max_message_bytes = std::size_t{1} << 20;
  CHECK(detail::resolve_options(o).options.max_message_bytes == std::size_t{1} << 20);
  o = Options{};
  o.use_environment = false;
  CHECK(detail::resolve_options(o).options.max_message_bytes == std::size_t{16} << 20);
}

TEST_CASE("a bad MESHBUS_MAX_MESSAGE_BYTES names the variable and the accepted range", "[unit][options]") {
  // Not a number, a unit suffix, below the largest batch (64 KiB), beyond what ZeroMQ holds.
  for (const char* bad : {"lots", "64M", "-1", "1000", "9223372036854775808"}) {
    env_guard limit("MESHBUS_MAX_MESSAGE_BYTES", bad);
    INFO("MESHBUS_MAX_MESSAGE_BYTES=" << bad);
    try {
      detail::resolve_options(Options{});
      FAIL("expected meshbus::error");
    } catch (const error& e) {
      CHECK(e.code_value() == errc::configuration);
      CHECK_THAT(e.what(), Catch::Contains("MESHBUS_MAX_MESSAGE_BYTES='" + std::string(bad) + "'") &&
                               Catch::Contains("number of bytes from 65536"));
    }
  }
}

TEST_CASE("interface selection rejects names that do not exist and lists the real ones", "[unit][options]") {
  try {
    discovery::select_interfaces("no-such-if0");
    FAIL("expected meshbus::error");
  } catch (const error& e) {
    CHECK(e.code_value() == errc::configuration);
    CHECK_THAT(e.what(), Catch::Contains("no-such-if0") && Catch::Contains("lo"));
  }
  const auto all = discovery::select_interfaces("all");
  CHECK(all.bind_address == "0.0.0.0");
  CHECK(all.interfaces.at(0).loopback);
  const auto by_addr = discovery::select_interfaces("127.0.0.1");
  CHECK(by_addr.bind_address == "127.0.0.1");
  CHECK(by_addr.includes(0x7f000001u));
  CHECK_FALSE(by_addr.includes(0x0a000001u));
}
