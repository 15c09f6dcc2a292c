// The UDP socket that sends and receives beacons on the selected interfaces.
//
// One socket bound to 0.0.0.0:port with SO_REUSEADDR/SO_REUSEPORT, so that every
// node on a host receives every beacon. Sends go to each selected interface's
// subnet broadcast address (127.255.255.255 for loopback, which never leaves the
// host) and, on non-loopback interfaces, to the multicast group too. Received
// datagrams from outside the selected subnets are refused. Non-blocking; the node
// loop polls fd().
#pragma once

#include <cstdint>
#include <vector>

#include "discovery/interfaces.hpp"
#include "lib/wire/msgpack_codec.hpp"

namespace meshbus::discovery {

inline constexpr std::uint16_t default_beacon_port = 5670;
inline constexpr std::uint32_t beacon_multicast_group = 0xefff4d4du;  // 239.255.77.77

class beacon_socket {
 public:
  /// Throws meshbus::error(network) when the socket cannot be set up.
  beacon_socket(const interface_selection& selection, std::uint16_t port);
  ~beacon_socket();
  beacon_socket(const beacon_socket&) = delete;
  beacon_socket& operator=(const beacon_socket&) = delete;

  int fd() const noexcept { return fd_; }
  std::uint16_t port() const noexcept { return port_; }

  /// Sends one datagram to every selected interface. Returns how many sends failed.
  int send(wire::byte_view datagram);
  /// Unicast to one address (used to answer a newcomer quickly). Best effort.
  bool send_to(wire::byte_view datagram, std::uint32_t address);

  enum class receive_result { none, datagram, foreign };
  /// Reads one datagram if any; `foreign` when it came from outside the selection.
  receive_result receive(wire::bytes& buffer, std::uint32_t& source);

 private:
  interface_selection selection_;
  std::uint16_t port_;
  int fd_ = -1;
};

}  // namespace meshbus::discovery
