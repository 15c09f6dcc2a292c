// Options resolution; see options.hpp.
#include "lib/node/options.hpp"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <random>

#include <fmt/format.h>

#include "discovery/beacon_socket.hpp"
#include "lib/node/log.hpp"
#include "lib/wire/topic.hpp"
#include "meshbus/error.hpp"

namespace meshbus::detail {
namespace {

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : nullptr;
}

std::uint16_t parse_port(const char* var, std::string_view text) {
  unsigned v = 0;
  const auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || p != text.data() + text.size() || v > 65535) {
    throw error(errc::configuration,
                fmt::format("{}='{}' is not a port number (0-65535)", var, text));
  }
  return static_cast<std::uint16_t>(v);
}

/// A message size limit: whole bytes, at least `minimum`, at most what ZMQ_MAXMSGSIZE holds.
std::size_t parse_message_bytes(const char* var, std::string_view text, std::size_t minimum) {
  constexpr auto maximum = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  std::uint64_t v = 0;
  const auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || p != text.data() + text.size() || v < minimum || v > maximum) {
    throw error(errc::configuration,
                fmt::format("{}='{}' is not a message size: give a number of bytes from {} (at least "
                            "Options::max_batch_bytes) to {}, e.g. 67108864 for 64 MiB",
                            var, text, minimum, maximum));
  }
  return static_cast<std::size_t>(v);
}

void require(bool ok, const std::string& message) {
  if (!ok) throw error(errc::configuration, message);
}

}  // namespace

NodeId random_node_id() {
  std::random_device rd;
  NodeId id;
  for (std::size_t i = 0; i < 16; i += 4) {
    const auto v = rd();
    for (std::size_t k = 0; k < 4; ++k) id.bytes[i + k] = static_cast<std::uint8_t>(v >> (8 * k));
  }
  return id;
}

resolved_options resolve_options(const Options& given) {
  resolved_options r;
  Options& o = r.options;
  o = given;
  const bool use_env = given.use_environment;
  check_log_variable();  // read by the process-wide logger whatever use_environment says
  if (o.name.empty() && use_env && env("MESHBUS_NAME")) o.name = env("MESHBUS_NAME");
  if (o.name.empty()) {
    char host[256] = {};
    if (gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
    o.name = fmt::format("{}-{}", host[0] != '\0' ? host : "node", getpid());
  }
  if (o.cluster.empty() && use_env && env("MESHBUS_CLUSTER")) o.cluster = env("MESHBUS_CLUSTER");
  if (o.cluster.empty()) o.cluster = "meshbus";
  if (o.interface.empty() && use_env && env("MESHBUS_INTERFACE")) o.interface = env("MESHBUS_INTERFACE");
  if (o.beacon_port == 0 && use_env && env("MESHBUS_BEACON_PORT")) {
    o.beacon_port = parse_port("MESHBUS_BEACON_PORT", env("MESHBUS_BEACON_PORT"));
  }
  if (o.beacon_port == 0) o.beacon_port = discovery::default_beacon_port;
  if (o.router_port == 0 && use_env && env("MESHBUS_PORT")) {
    o.router_port = parse_port("MESHBUS_PORT", env("MESHBUS_PORT"));
  }
  if (o.pub_port == 0 && use_env && env("MESHBUS_PUB_PORT")) {
    o.pub_port = parse_port("MESHBUS_PUB_PORT", env("MESHBUS_PUB_PORT"));
  }
  // The default stands for "not set": an explicit other value wins over the variable.
  if (o.max_message_bytes == Options{}.max_message_bytes && use_env && env("MESHBUS_MAX_MESSAGE_BYTES")) {
    o.max_message_bytes = parse_message_bytes("MESHBUS_MAX_MESSAGE_BYTES", env("MESHBUS_MAX_MESSAGE_BYTES"),
                                              std::max<std::size_t>(4096, o.max_batch_bytes));
  }
  for (const auto& s : o.seeds) {
    auto parsed = discovery::parse_seeds(s);
    r.seeds.insert(r.seeds.end(), parsed.begin(), parsed.end());
  }
  if (o.seeds.empty() && use_env && env("MESHBUS_PEERS")) {
    r.seeds = discovery::parse_seeds(env("MESHBUS_PEERS"));
  }

  if (o.data_dir.empty() && use_env && env("MESHBUS_DATA_DIR")) o.data_dir = env("MESHBUS_DATA_DIR");
  if (o.metrics_address.empty() && use_env && env("MESHBUS_METRICS")) o.metrics_address = env("MESHBUS_METRICS");
  if (o.durability == Durability::always && use_env && env("MESHBUS_DURABILITY")) {
    const std::string_view d = env("MESHBUS_DURABILITY");
    if (d == "interval") {
      o.durability = Durability::interval;
    } else if (d == "none") {
      o.durability = Durability::none;
    } else {
      require(d == "always", fmt::format("MESHBUS_DURABILITY is '{}'; it must be always, interval or none", d));
    }
  }
  require(o.sync_interval.count() >= 1, "Options::sync_interval must be at least 1 ms");
  require(o.store_max_bytes >= (std::size_t{1} << 20), "Options::store_max_bytes must be at least 1 MiB");
  for (const auto& rule : o.retention) {
    wire::pattern p;
    std::string err;
    require(wire::pattern::compile(rule.pattern, p, err),
            fmt::format("Options::retention pattern '{}': {}", rule.pattern.substr(0, 64), err));
  }

  if (o.peer_expiry.count() == 0) {
    o.peer_expiry = std::max(std::chrono::milliseconds(5000), o.beacon_interval * (o.suspect_after_missed + 2));
  }
  require(o.name.size() <= 255, "Options::name is longer than 255 bytes");
  require(o.cluster.size() <= 255, "Options::cluster is longer than 255 bytes");
  require(o.beacon_interval.count() >= 10,
          fmt::format("Options::beacon_interval is {} ms; it must be at least 10 ms",
                      o.beacon_interval.count()));
  require(o.suspect_after_missed >= 1, "Options::suspect_after_missed must be at least 1");
  require(o.peer_expiry > o.beacon_interval * o.suspect_after_missed,
          fmt::format("Options::peer_expiry ({} ms) must be longer than suspect_after_missed x "
                      "beacon_interval ({} ms)",
                      o.peer_expiry.count(), (o.beacon_interval * o.suspect_after_missed).count()));
  require(o.handler_threads <= 256, "Options::handler_threads must be at most 256");
  require(o.max_message_bytes >= 4096,
          "Options::max_message_bytes must be at least 4096 bytes");
  require(o.max_batch_bytes >= 1024 && o.max_batch_bytes <= o.max_message_bytes,
          "Options::max_batch_bytes must be between 1024 and max_message_bytes");
  require(o.send_queue_bytes >= o.max_batch_bytes,
          "Options::send_queue_bytes must be at least max_batch_bytes");
  require(o.receive_queue_bytes >= 4096, "Options::receive_queue_bytes must be at least 4096");
  require(o.zmq_hwm >= 1, "Options::zmq_hwm must be at least 1");
  require(o.metadata.size() <= 64, "Options::metadata holds at most 64 entries");
  for (const auto& [k, v] : o.metadata) {
    require(k.size() <= 255 && v.size() <= 1024,
            fmt::format("Options::metadata entry '{}' is too long (keys 255, values 1024 bytes)",
                        k.substr(0, 40)));
  }
  return r;
}

}  // namespace meshbus::detail
