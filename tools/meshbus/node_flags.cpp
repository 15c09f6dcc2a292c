// The node options of every subcommand and the Node started from them; see node_flags.hpp.
#include "node_flags.hpp"

#include <charconv>
#include <cstdlib>
#include <limits>
#include <string_view>
#include <utility>

namespace meshbus_tool {
namespace {

using std::chrono::milliseconds;

/// A whole number of bytes from `minimum` up to what ZeroMQ's message size limit holds.
CLI::Validator byte_count_from(std::uint64_t minimum) {
  constexpr auto maximum = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  return CLI::Validator(
      [minimum](std::string& text) -> std::string {
        std::uint64_t value = 0;
        const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
        if (ec != std::errc{} || end != text.data() + text.size() || value < minimum || value > maximum) {
          return "must be a number of bytes from " + std::to_string(minimum) + " to " + std::to_string(maximum) +
                 ", not " + text;
        }
        return {};
      },
      "", "");
}

void add_discovery_flags(CLI::App& app, node_flags& flags, const std::string& group) {
  app.add_option("--interface", flags.interface,
                 "Where to announce and listen: an interface name, one of its IPv4 addresses, "
                 "'loopback' (the default) or 'all'")
      ->type_name("NAME|IPV4|loopback|all")
      ->group(group);
  app.add_option("--cluster", flags.cluster, "Cluster name; nodes talk only within one (default: meshbus)")
      ->type_name("NAME")
      ->group(group);
  app.add_option("--beacon-port", flags.beacon_port, "UDP beacon port (default: 5670)")
      ->type_name("PORT")
      ->check(CLI::Range(1, 65535))
      ->group(group);
  app.add_option("--peers", flags.peers,
                 "Seed nodes, host:port[,host:port...], for networks without broadcast")
      ->type_name("HOST:PORT,...")
      ->group(group);
}

void add_identity_flags(CLI::App& app, node_flags& flags, const std::string& group) {
  app.add_option("--name", flags.name, "This node's name as peers see it (default: <hostname>-<pid>)")
      ->type_name("NAME")
      ->group(group);
  app.add_option("--port", flags.router_port, "Fixed ROUTER port, so that this node can serve as a seed")
      ->type_name("PORT")
      ->check(CLI::Range(1, 65535))
      ->group(group);
  app.add_option("--pub-port", flags.pub_port, "Fixed PUB port")
      ->type_name("PORT")
      ->check(CLI::Range(1, 65535))
      ->group(group);
  app.add_option("--beacon-interval", flags.beacon_interval_ms, "Beacon interval in ms (default: 1000)")
      ->type_name("MS")
      ->check(CLI::Range(std::int64_t{10}, std::int64_t{3'600'000}))
      ->group(group);
}

void add_limit_flags(CLI::App& app, node_flags& flags, const std::string& group) {
  // At least the largest batch (Options::max_batch_bytes, 64 KiB), which must fit in a message.
  const auto min_bytes = meshbus::Options{}.max_batch_bytes;
  app.add_option("--max-message-bytes", flags.max_message_bytes,
                 "Largest message accepted and largest event published, in bytes; every node of a "
                 "cluster must use the same (default: " +
                     std::to_string(meshbus::Options{}.max_message_bytes) + ")")
      ->type_name("BYTES")
      ->check(byte_count_from(min_bytes))
      ->group(group);
  app.add_option("--metrics", flags.metrics,
                 "Serve GET /metrics (Prometheus text format) at HOST:PORT while the command runs "
                 "(MESHBUS_METRICS; host 127.0.0.1 when left out)")
      ->type_name("ADDR")
      ->group(group);
  app.add_option("--log-level", flags.log_level, "Library log level on stderr (default: warn)")
      ->type_name("LEVEL")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}))
      ->group(group);
}

void add_store_flags(CLI::App& app, node_flags& flags, const std::string& group) {
  app.add_option("--data-dir", flags.data_dir,
                 "Keep this node's durable log here: its id, its history (served to late joiners from "
                 "disk), durable subscriptions and dead letters survive restarts (MESHBUS_DATA_DIR)")
      ->type_name("DIR")
      ->group(group);
  app.add_option("--durability", flags.durability,
                 "When the log reaches the disk: always (every batch synced before it is sent; the "
                 "default), interval (every 100 ms), none (left to the OS) (MESHBUS_DURABILITY)")
      ->type_name("always|interval|none")
      ->check(CLI::IsMember({"always", "interval", "none"}))
      ->group(group);
}

}  // namespace

void add_node_flags(CLI::App& app, node_flags& flags) {
  const std::string group = "Node options (override MESHBUS_* variables)";
  add_discovery_flags(app, flags, group);
  add_identity_flags(app, flags, group);
  add_limit_flags(app, flags, group);
  add_store_flags(app, flags, group);
}

milliseconds discovery_wait(const node_flags& flags, std::int64_t wait_ms) {
  const auto interval =
      flags.beacon_interval_ms > 0 ? milliseconds(flags.beacon_interval_ms) : meshbus::Options{}.beacon_interval;
  return wait_ms >= 0 ? milliseconds(wait_ms) : interval * 3 / 2;
}

std::unique_ptr<meshbus::Node> start_node(const node_flags& flags, meshbus::Options options) {
  // The library reads MESHBUS_LOG once, when the first Node logs; no Node (and no thread that
  // reads the environment) exists yet.
  if (!flags.log_level.empty())
    ::setenv("MESHBUS_LOG", flags.log_level.c_str(), 1);  // NOLINT(concurrency-mt-unsafe)
  options.interface = flags.interface;
  options.cluster = flags.cluster;
  options.name = flags.name;
  options.beacon_port = flags.beacon_port;
  options.router_port = flags.router_port;
  options.pub_port = flags.pub_port;
  if (!flags.peers.empty()) options.seeds.push_back(flags.peers);
  // The library derives the peer expiry from the interval.
  if (flags.beacon_interval_ms > 0) options.beacon_interval = milliseconds(flags.beacon_interval_ms);
  if (flags.max_message_bytes > 0) options.max_message_bytes = static_cast<std::size_t>(flags.max_message_bytes);
  if (!flags.data_dir.empty()) options.data_dir = flags.data_dir;
  if (!flags.metrics.empty()) options.metrics_address = flags.metrics;
  if (flags.durability == "interval") options.durability = meshbus::Durability::interval;
  if (flags.durability == "none") options.durability = meshbus::Durability::none;
  if (flags.durability == "always") {
    options.durability = meshbus::Durability::always;
    ::setenv("MESHBUS_DURABILITY", "always", 1);  // explicit: wins over the variable  NOLINT(concurrency-mt-unsafe)
  }
  return std::make_unique<meshbus::Node>(std::move(options));
}

}  // namespace meshbus_tool
