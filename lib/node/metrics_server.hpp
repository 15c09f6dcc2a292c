// The metrics endpoint (Options::metrics_address, MESHBUS_METRICS): an HTTP server of
// its own threads (cpp-httplib) that answers GET /metrics with the node's report in
// the Prometheus text format. Off unless an address is given; the address is checked
// at start (an address that is not this machine's, or a port in use, is a clear
// error naming the option).
//
// Bounds: a report is made at most every 100 ms (requests in between get the last
// one), requests have 5 s to arrive whole, request lines and headers are bounded by
// cpp-httplib (8 KiB each) and bodies to 64 KiB. Anything it does not serve — a
// malformed or oversized request, another path or method — is answered 4xx and
// counted (Stats::metrics_requests_rejected); the node's messaging is not involved.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "lib/node/counters.hpp"

namespace httplib {
class Server;
}

namespace meshbus::detail {

/// A listening address for meshbus's HTTP endpoints: "HOST:PORT", ":PORT" or "PORT"
/// (host 127.0.0.1). Throws error(invalid_argument) naming `option` when it does not
/// parse, error(network) when it is not this machine's address or the port is in use.
struct listen_address {
  std::string host;
  std::uint16_t port = 0;
};
listen_address check_listen_address(const std::string& address, std::string_view option);

/// Binds `s` to `where` (port 0: a free one) and returns the port; throws
/// error(network) naming `address` when it cannot.
std::uint16_t bind_http(httplib::Server& s, const listen_address& where, const std::string& address);
/// Serves `s` on a new thread until s.stop(), returning once it listens (or gave up):
/// stop() does nothing to a server that is not listening yet.
std::thread listen_http(httplib::Server& s);

class metrics_server {
 public:
  /// Makes the report's text (any thread).
  using render = std::function<std::string()>;

  /// Binds `address` ("HOST:PORT", "PORT" or ":PORT"; host 127.0.0.1 when left out;
  /// port 0 picks a free one) and starts serving. Throws error(invalid_argument) for an
  /// address it cannot parse, error(network) for one it cannot bind.
  metrics_server(const std::string& address, render make_text, node_counters& counters);
  ~metrics_server();
  metrics_server(const metrics_server&) = delete;
  metrics_server& operator=(const metrics_server&) = delete;

  std::uint16_t port() const noexcept { return port_; }
  /// Stops serving and joins its threads. Idempotent.
  void stop();

 private:
  std::string text();

  render make_text_;
  node_counters& counters_;
  std::unique_ptr<httplib::Server> server_;
  std::uint16_t port_ = 0;
  std::thread thread_;
  std::mutex cache_mu_;
  std::string cached_;
  std::chrono::steady_clock::time_point cached_at_{};
};

}  // namespace meshbus::detail
