// Seed lists: "host:port,host:port" (MESHBUS_PEERS, Options::seeds, --peers).
// The port is the seed node's ROUTER port (give seeds a fixed one).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace meshbus::discovery {

struct seed_address {
  std::string host;
  std::uint16_t port = 0;
  std::string endpoint() const;  ///< tcp://host:port
  friend bool operator==(const seed_address&, const seed_address&) = default;
};

/// Parses one "host:port" or a comma-separated list; throws meshbus::error(configuration)
/// with the offending entry on bad syntax.
std::vector<seed_address> parse_seeds(std::string_view list);

/// Resolves a host name or dotted quad to IPv4 (host order); false when it cannot.
bool resolve_ipv4(const std::string& host, std::uint32_t& out);

}  // namespace meshbus::discovery
