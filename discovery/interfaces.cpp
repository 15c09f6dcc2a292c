// Interface enumeration with getifaddrs(3) and the selection rules above.
#include "discovery/interfaces.hpp"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>

#include <fmt/format.h>

#include "meshbus/error.hpp"

namespace meshbus::discovery {

std::string ipv4_to_string(std::uint32_t host_order) {
  return fmt::format("{}.{}.{}.{}", (host_order >> 24) & 0xff, (host_order >> 16) & 0xff,
                     (host_order >> 8) & 0xff, host_order & 0xff);
}

bool parse_ipv4(std::string_view text, std::uint32_t& host_order) {
  const std::string s(text);
  in_addr a{};
  if (inet_pton(AF_INET, s.c_str(), &a) != 1) return false;
  host_order = ntohl(a.s_addr);
  return true;
}

std::vector<interface_address> list_interfaces() {
  std::vector<interface_address> out;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return out;
  for (auto* it = list; it != nullptr; it = it->ifa_next) {
    if (it->ifa_addr == nullptr || it->ifa_addr->sa_family != AF_INET) continue;
    if ((it->ifa_flags & IFF_UP) == 0) continue;
    interface_address ia;
    ia.name = it->ifa_name;
    ia.address = ntohl(reinterpret_cast<sockaddr_in*>(it->ifa_addr)->sin_addr.s_addr);
    ia.netmask = it->ifa_netmask != nullptr
                     ? ntohl(reinterpret_cast<sockaddr_in*>(it->ifa_netmask)->sin_addr.s_addr)
                     : 0xffffffffu;
    ia.loopback = (it->ifa_flags & IFF_LOOPBACK) != 0;
    ia.multicast = (it->ifa_flags & IFF_MULTICAST) != 0 && !ia.loopback;
    if (ia.loopback) {
      ia.broadcast = 0x7fffffffu;  // 127.255.255.255: stays on this host
    } else if ((it->ifa_flags & IFF_BROADCAST) != 0 && it->ifa_broadaddr != nullptr) {
      ia.broadcast = ntohl(reinterpret_cast<sockaddr_in*>(it->ifa_broadaddr)->sin_addr.s_addr);
    } else {
      ia.broadcast = 0;
    }
    out.push_back(std::move(ia));
  }
  freeifaddrs(list);
  return out;
}

bool interface_selection::includes(std::uint32_t source) const noexcept {
  for (const auto& i : interfaces) {
    if (i.loopback && (source >> 24) == 127) return true;
    if ((source & i.netmask) == (i.address & i.netmask)) return true;
  }
  return false;
}

namespace {
interface_address loopback_interface() {
  interface_address lo;
  lo.name = "lo";
  lo.address = 0x7f000001u;
  lo.netmask = 0xff000000u;
  lo.broadcast = 0x7fffffffu;
  lo.loopback = true;
  return lo;
}
}  // namespace

interface_selection select_interfaces(std::string_view spec) {
  interface_selection sel;
  sel.spec = std::string(spec);
  if (spec.empty() || spec == "loopback" || spec == "lo" || spec == "127.0.0.1") {
    sel.interfaces.push_back(loopback_interface());
    sel.bind_address = "127.0.0.1";
    return sel;
  }
  const auto all = list_interfaces();
  if (spec == "all") {
    sel.interfaces.push_back(loopback_interface());
    for (const auto& i : all) {
      if (!i.loopback && i.broadcast != 0) sel.interfaces.push_back(i);
    }
    sel.bind_address = "0.0.0.0";
    return sel;
  }
  std::uint32_t wanted = 0;
  const bool by_address = parse_ipv4(spec, wanted);
  for (const auto& i : all) {
    if ((by_address && i.address == wanted) || (!by_address && i.name == spec)) {
      sel.interfaces.push_back(i);
      sel.bind_address = ipv4_to_string(i.address);
      return sel;
    }
  }
  std::string known;
  for (const auto& i : all) {
    known += fmt::format("{}{} ({})", known.empty() ? "" : ", ", i.name, ipv4_to_string(i.address));
  }
  throw error(errc::configuration,
              fmt::format("interface '{}' (MESHBUS_INTERFACE / Options::interface / --interface) "
                          "matches no up IPv4 interface; use one of: {}, or 'all', or 'loopback'",
                          spec, known.empty() ? "none found" : known));
}

}  // namespace meshbus::discovery
