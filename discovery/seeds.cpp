// Seed list parsing and resolution.
#include "discovery/seeds.hpp"

#include <arpa/inet.h>
#include <netdb.h>

#include <charconv>

#include <fmt/format.h>

#include "discovery/interfaces.hpp"
#include "meshbus/error.hpp"

namespace meshbus::discovery {

std::string seed_address::endpoint() const { return fmt::format("tcp://{}:{}", host, port); }

std::vector<seed_address> parse_seeds(std::string_view list) {
  std::vector<seed_address> out;
  std::size_t start = 0;
  while (start <= list.size()) {
    auto end = list.find(',', start);
    if (end == std::string_view::npos) end = list.size();
    auto item = list.substr(start, end - start);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    start = end + 1;
    if (item.empty()) continue;
    const auto colon = item.rfind(':');
    unsigned port = 0;
    const auto port_text = colon == std::string_view::npos ? std::string_view{} : item.substr(colon + 1);
    const auto [p, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (colon == std::string_view::npos || colon == 0 || ec != std::errc{} ||
        p != port_text.data() + port_text.size() || port == 0 || port > 65535) {
      throw error(errc::configuration,
                  fmt::format("seed '{}' is not host:port (MESHBUS_PEERS / Options::seeds / --peers "
                              "take a comma-separated list such as 10.0.0.5:7000,seed2:7000, "
                              "where the port is the seed's fixed ROUTER port)",
                              item));
    }
    out.push_back({std::string(item.substr(0, colon)), static_cast<std::uint16_t>(port)});
  }
  return out;
}

bool resolve_ipv4(const std::string& host, std::uint32_t& out) {
  if (parse_ipv4(host, out)) return true;
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), nullptr, &hints, &res) != 0 || res == nullptr) return false;
  out = ntohl(reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr.s_addr);
  freeaddrinfo(res);
  return true;
}

}  // namespace meshbus::discovery
