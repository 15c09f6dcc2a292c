// Which IPv4 interfaces a node announces itself on and binds to.
//
// The default is loopback only: a node never announces itself on a network unless
// asked. A selection names an interface ("eth0"), one of its IPv4 addresses
// ("10.0.0.5"), "loopback", or "all" (every up interface that can broadcast, plus
// loopback). Depends on nothing but the OS.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace meshbus::discovery {

struct interface_address {
  std::string name;
  std::uint32_t address = 0;    ///< host byte order
  std::uint32_t netmask = 0;    ///< host byte order
  std::uint32_t broadcast = 0;  ///< host byte order; subnet broadcast
  bool loopback = false;
  bool multicast = false;
};

struct interface_selection {
  std::string spec;  ///< as given, "" meaning loopback
  std::vector<interface_address> interfaces;
  std::string bind_address;  ///< where PUB and ROUTER bind: an address or "0.0.0.0"
  bool includes(std::uint32_t source) const noexcept;  ///< source inside a chosen subnet
};

/// Resolves a selection; throws meshbus::error(configuration) naming the
/// interfaces that exist when the spec matches none.
interface_selection select_interfaces(std::string_view spec);

/// Every up IPv4 interface, as the OS lists it.
std::vector<interface_address> list_interfaces();

std::string ipv4_to_string(std::uint32_t host_order);
bool parse_ipv4(std::string_view text, std::uint32_t& host_order);

}  // namespace meshbus::discovery
