// A liveness probe for a peer that went silent: a non-blocking TCP connect to its
// ROUTER port. A refused connection means no process listens there any more: the
// peer's process is gone (a crash or a kill; a restarted node has another epoch and,
// unless its ports are fixed, other ports). Anything else (accepted, still pending,
// unreachable, timed out) proves nothing: a stopped process's kernel still accepts,
// and a partition drops. No clock of its own: the caller starts a probe and looks at
// it later (once per beacon interval).
#pragma once

#include <cstdint>
#include <string>

namespace meshbus::discovery {

class liveness_probe {
 public:
  enum class verdict : std::uint8_t { pending, refused, inconclusive };

  liveness_probe() = default;
  liveness_probe(const liveness_probe&) = delete;
  liveness_probe& operator=(const liveness_probe&) = delete;
  liveness_probe(liveness_probe&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  liveness_probe& operator=(liveness_probe&& other) noexcept;
  ~liveness_probe() { close(); }

  /// Starts a connect to host (an IPv4 address):port; a probe already running is
  /// dropped first. `refused` at once when the connect fails at once with ECONNREFUSED.
  verdict start(const std::string& host, std::uint16_t port);
  /// What the connect started last came to, without waiting; `pending` while it goes
  /// on. A finished probe closes its socket.
  verdict check();
  bool running() const noexcept { return fd_ >= 0; }

 private:
  void close() noexcept;
  int fd_ = -1;
};

}  // namespace meshbus::discovery
