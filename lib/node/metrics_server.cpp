// The metrics endpoint; see metrics_server.hpp.
#include "lib/node/metrics_server.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>

#include <fmt/format.h>
#include <httplib.h>

#include "meshbus/error.hpp"

namespace meshbus::detail {
namespace {

constexpr auto report_interval = std::chrono::milliseconds(100);
constexpr std::size_t max_body = 64 << 10;

using host_port = listen_address;

host_port parse_address(const std::string& address, std::string_view option) {
  const auto usage = [&] {
    return error(errc::invalid_argument,
                 fmt::format("address '{}' is not HOST:PORT (e.g. 127.0.0.1:9464): set {}",
                             address.substr(0, 128), option));
  };
  host_port hp;
  const auto colon = address.rfind(':');
  const std::string_view port_text =
      colon == std::string::npos ? std::string_view(address) : std::string_view(address).substr(colon + 1);
  hp.host = colon == std::string::npos || colon == 0 ? "127.0.0.1" : address.substr(0, colon);
  if (hp.host == "localhost") hp.host = "127.0.0.1";
  unsigned port = 0;
  const auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || ec != std::errc{} || end != port_text.data() + port_text.size() || port > 65535) {
    throw usage();
  }
  in_addr a{};
  if (::inet_pton(AF_INET, hp.host.c_str(), &a) != 1) throw usage();
  hp.port = static_cast<std::uint16_t>(port);
  return hp;
}

/// Binds a socket of our own first, for the reason a bind fails (cpp-httplib only says
/// that it did).
void check_bindable(const host_port& hp, const std::string& address, std::string_view option) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw error(errc::network, "socket() failed for the metrics endpoint");
  const int yes = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(hp.port);
  ::inet_pton(AF_INET, hp.host.c_str(), &sa.sin_addr);
  const int rc = ::bind(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof sa);
  const int err = errno;
  ::close(fd);
  if (rc == 0) return;
  if (err == EADDRINUSE) {
    throw error(errc::network, fmt::format("address {} is already in use: choose another port ({})", address,
                                           option));
  }
  if (err == EADDRNOTAVAIL) {
    throw error(errc::network,
                fmt::format("address {}: {} is not an address of this machine ({})", address, hp.host, option));
  }
  throw error(errc::network, fmt::format("address {} cannot be bound: {} ({})", address, std::strerror(err), option));
}

}  // namespace

listen_address check_listen_address(const std::string& address, std::string_view option) {
  auto hp = parse_address(address, option);
  check_bindable(hp, address, option);
  return hp;
}

std::uint16_t bind_http(httplib::Server& s, const listen_address& where, const std::string& address) {
  int port = -1;
  if (where.port == 0) {
    port = s.bind_to_any_port(where.host);
  } else if (s.bind_to_port(where.host, where.port)) {
    port = where.port;
  }
  if (port <= 0) throw error(errc::network, fmt::format("address {} cannot be bound (in use?)", address));
  return static_cast<std::uint16_t>(port);
}

std::thread listen_http(httplib::Server& s) {
  auto ended = std::make_shared<std::atomic<bool>>(false);
  std::thread t([&s, ended] {
    s.listen_after_bind();
    ended->store(true);
  });
  while (!s.is_running() && !ended->load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return t;
}

metrics_server::metrics_server(const std::string& address, render make_text, node_counters& counters)
    : make_text_(std::move(make_text)), counters_(counters), server_(std::make_unique<httplib::Server>()) {
  const auto hp = check_listen_address(address, "Options::metrics_address, MESHBUS_METRICS or --metrics");
  auto& s = *server_;
  s.set_read_timeout(5, 0);
  s.set_write_timeout(5, 0);
  // A short keep-alive: an idle scraper's connection must not hold up the node's stop().
  s.set_keep_alive_timeout(1);
  s.set_payload_max_length(max_body);
  s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    try {
      res.set_content(text(), "text/plain; version=0.0.4; charset=utf-8");
      bump(counters_.metrics_requests);
    } catch (const std::exception& e) {
      // The node is stopping, or its loop is held up: no figures rather than old ones.
      res.status = 503;
      res.set_content(fmt::format("no report: {}\n", e.what()), "text/plain");
    }
  });
  // Every 4xx and 5xx passes here: malformed requests, oversized ones, other paths.
  s.set_error_handler(httplib::Server::HandlerWithResponse([this](const httplib::Request&, httplib::Response& res) {
    if (res.status >= 500) return httplib::Server::HandlerResponse::Unhandled;  // ours, body set
    bump(counters_.metrics_requests_rejected);
    res.set_content(fmt::format("HTTP {}: this endpoint serves GET /metrics\n", res.status), "text/plain");
    return httplib::Server::HandlerResponse::Handled;
  }));
  port_ = bind_http(s, hp, address);
  thread_ = listen_http(s);
}

metrics_server::~metrics_server() { stop(); }

void metrics_server::stop() {
  if (!thread_.joinable()) return;
  server_->stop();
  thread_.join();
}

std::string metrics_server::text() {
  std::lock_guard lock(cache_mu_);
  const auto now = std::chrono::steady_clock::now();
  if (cached_.empty() || now - cached_at_ >= report_interval) {
    cached_ = make_text_();
    cached_at_ = now;
  }
  return cached_;
}

}  // namespace meshbus::detail
