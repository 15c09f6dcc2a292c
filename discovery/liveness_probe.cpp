// See liveness_probe.hpp.
#include "discovery/liveness_probe.hpp"

#include <arpa/inet.h>
#include <cerrno>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace meshbus::discovery {

liveness_probe& liveness_probe::operator=(liveness_probe&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

void liveness_probe::close() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

liveness_probe::verdict liveness_probe::start(const std::string& host, std::uint16_t port) {
  close();
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  if (port == 0 || ::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) return verdict::inconclusive;
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return verdict::inconclusive;
  if (::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) {
    close();
    return verdict::inconclusive;  // someone listens
  }
  const int err = errno;
  if (err == EINPROGRESS) return verdict::pending;
  close();
  return err == ECONNREFUSED ? verdict::refused : verdict::inconclusive;
}

liveness_probe::verdict liveness_probe::check() {
  if (fd_ < 0) return verdict::inconclusive;
  pollfd p{fd_, POLLOUT, 0};
  if (::poll(&p, 1, 0) == 0) return verdict::pending;
  int err = 0;
  socklen_t len = sizeof err;
  if (::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  close();
  return err == ECONNREFUSED ? verdict::refused : verdict::inconclusive;
}

}  // namespace meshbus::discovery
