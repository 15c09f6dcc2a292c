// UDP beacon socket; see beacon_socket.hpp for what it does and does not do.
#include "discovery/beacon_socket.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "meshbus/error.hpp"

namespace meshbus::discovery {
namespace {
sockaddr_in make_addr(std::uint32_t host_order, std::uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(host_order);
  return a;
}
[[noreturn]] void fail(const char* what, std::uint16_t port) {
  throw error(errc::network,
              fmt::format("beacon socket on UDP port {}: {} failed: {}", port, what, std::strerror(errno)));
}
}  // namespace

beacon_socket::beacon_socket(const interface_selection& selection, std::uint16_t port)
    : selection_(selection), port_(port) {
  fd_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) fail("socket()", port);
  const int on = 1;
  if (setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0 ||
      setsockopt(fd_, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0 ||
      setsockopt(fd_, SOL_SOCKET, SO_BROADCAST, &on, sizeof on) != 0) {
    const int e = errno;
    ::close(fd_);
    errno = e;
    fail("setsockopt(SO_REUSEADDR/SO_REUSEPORT/SO_BROADCAST)", port);
  }
  const auto bind_addr = make_addr(INADDR_ANY, port);
  if (::bind(fd_, reinterpret_cast<const sockaddr*>(&bind_addr), sizeof bind_addr) != 0) {
    const int e = errno;
    ::close(fd_);
    if (e == EADDRINUSE) {
      throw error(errc::address_in_use,
                  fmt::format("beacon socket: UDP port {} is in use by a program that does not share it "
                              "(SO_REUSEPORT); every node of a cluster must use the same beacon port, so move "
                              "the whole cluster to a free one with Options::beacon_port, MESHBUS_BEACON_PORT or "
                              "the tool's --beacon-port",
                              port));
    }
    errno = e;
    fail("bind(0.0.0.0)", port);
  }
  // Multicast: join the group on each chosen LAN interface; never on loopback.
  const unsigned char ttl = 1;
  setsockopt(fd_, IPPROTO_IP, IP_MULTICAST_TTL, &ttl, sizeof ttl);
  const unsigned char loop = 1;
  setsockopt(fd_, IPPROTO_IP, IP_MULTICAST_LOOP, &loop, sizeof loop);
  for (const auto& i : selection_.interfaces) {
    if (!i.multicast) continue;
    ip_mreq mreq{};
    mreq.imr_multiaddr.s_addr = htonl(beacon_multicast_group);
    mreq.imr_interface.s_addr = htonl(i.address);
    setsockopt(fd_, IPPROTO_IP, IP_ADD_MEMBERSHIP, &mreq, sizeof mreq);  // best effort
  }
}

beacon_socket::~beacon_socket() {
  if (fd_ >= 0) ::close(fd_);
}

int beacon_socket::send(wire::byte_view datagram) {
  int failures = 0;
  for (const auto& i : selection_.interfaces) {
    if (i.broadcast != 0) {
      const auto to = make_addr(i.broadcast, port_);
      if (::sendto(fd_, datagram.data(), datagram.size(), 0, reinterpret_cast<const sockaddr*>(&to),
                   sizeof to) < 0) {
        ++failures;
      }
    }
    if (i.multicast) {
      in_addr via{};
      via.s_addr = htonl(i.address);
      setsockopt(fd_, IPPROTO_IP, IP_MULTICAST_IF, &via, sizeof via);
      const auto to = make_addr(beacon_multicast_group, port_);
      if (::sendto(fd_, datagram.data(), datagram.size(), 0, reinterpret_cast<const sockaddr*>(&to),
                   sizeof to) < 0) {
        ++failures;
      }
    }
  }
  return failures;
}

bool beacon_socket::send_to(wire::byte_view datagram, std::uint32_t address) {
  if (!selection_.includes(address)) return false;
  const auto to = make_addr(address, port_);
  return ::sendto(fd_, datagram.data(), datagram.size(), 0, reinterpret_cast<const sockaddr*>(&to),
                  sizeof to) >= 0;
}

beacon_socket::receive_result beacon_socket::receive(wire::bytes& buffer, std::uint32_t& source) {
  // One byte more than the largest valid beacon, so oversized datagrams are seen as such.
  buffer.resize(2048);
  sockaddr_in from{};
  socklen_t len = sizeof from;
  const auto n = ::recvfrom(fd_, buffer.data(), buffer.size(), MSG_TRUNC,
                            reinterpret_cast<sockaddr*>(&from), &len);
  if (n < 0) {
    buffer.clear();
    return receive_result::none;
  }
  buffer.resize(std::min(buffer.size(), static_cast<std::size_t>(n)));
  if (static_cast<std::size_t>(n) > 2048) buffer.push_back(0);  // keep "too large" visible
  source = ntohl(from.sin_addr.s_addr);
  return selection_.includes(source) ? receive_result::datagram : receive_result::foreign;
}

}  // namespace meshbus::discovery
