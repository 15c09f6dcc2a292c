// meshbus: the command-line tool. `peers` lists the nodes of a cluster, `sub` prints events (and
// loss notices) as they arrive, `pub` publishes an argument or stdin lines, `dlq list` shows the
// dead letters the nodes still announce in their history and `dlq replay` asks one node to deliver
// one again. Each run starts one Node; handlers only hand results to the main thread (exit_latch),
// and only main() turns outcomes into exit codes.
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <iostream>
#include <iterator>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

// GCC 12 reports a false -Wnull-dereference inside CLI11's inlined string splitting.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <CLI/CLI.hpp>
#pragma GCC diagnostic pop

#include "meshbus/meshbus.hpp"

#ifndef MESHBUS_VERSION
#error "MESHBUS_VERSION is defined by tools/CMakeLists.txt from the project version"
#endif

namespace {

using std::chrono::milliseconds;
using steady = std::chrono::steady_clock;

namespace exit_code {
constexpr int ok = 0;
constexpr int failure = 1;  ///< runtime failure: meshbus::error, I/O
constexpr int usage = 2;    ///< bad flags, topic or pattern syntax
constexpr int timeout = 3;  ///< a count, peer or subscriber target not reached in time
}  // namespace exit_code

/// A command-line mistake found after parsing (topic or pattern syntax): exit 2.
class usage_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

void print_error(std::string_view message) {
  std::cerr << "meshbus: " << message << std::endl;
}

std::string to_ms_text(milliseconds d) {
  return std::to_string(d.count()) + " ms";
}

// ---------------------------------------------------------------------------
// Options every subcommand takes

/// Number checks with a plain message (CLI11's PositiveNumber names its 1.8e308 bound).
CLI::Validator number_at_least(double minimum, const std::string& description) {
  return CLI::Validator(
      [minimum, description](std::string& text) -> std::string {
        double value = 0;
        if (!CLI::detail::lexical_cast(text, value) || value < minimum)
          return "must be " + description + ", not " + text;
        return {};
      },
      "", "");
}

struct node_flags {
  std::string interface;
  std::string cluster;
  std::string peers;
  std::string name;
  std::string log_level;
  std::uint16_t beacon_port = 0;
  std::uint16_t router_port = 0;
  std::uint16_t pub_port = 0;
  std::int64_t beacon_interval_ms = 0;  ///< 0: the library's default
};

/// The node options, on `app` and on every subcommand (so they may come before or after the
/// subcommand name). All of them are bound to the one `flags`.
void add_node_flags(CLI::App& app, node_flags& flags) {
  const std::string group = "Node options (override MESHBUS_* variables)";
  app.add_option("--interface", flags.interface,
                 "Where to announce and listen: an interface name, one of its IPv4 addresses, "
                 "'loopback' (the default) or 'all'")
      ->type_name("NAME|IPV4|loopback|all")
      ->group(group);
  app.add_option("--cluster", flags.cluster, "Cluster name; nodes talk only within one (default: meshbus)")
      ->type_name("NAME")
      ->group(group);
  app.add_option("--beacon-port", flags.beacon_port, "UDP beacon port (default: 5670)")
      ->type_name("PORT")
      ->check(CLI::Range(1, 65535))
      ->group(group);
  app.add_option("--peers", flags.peers,
                 "Seed nodes, host:port[,host:port...], for networks without broadcast")
      ->type_name("HOST:PORT,...")
      ->group(group);
  app.add_option("--name", flags.name, "This node's name as peers see it (default: <hostname>-<pid>)")
      ->type_name("NAME")
      ->group(group);
  app.add_option("--port", flags.router_port, "Fixed ROUTER port, so that this node can serve as a seed")
      ->type_name("PORT")
      ->check(CLI::Range(1, 65535))
      ->group(group);
  app.add_option("--pub-port", flags.pub_port, "Fixed PUB port")
      ->type_name("PORT")
      ->check(CLI::Range(1, 65535))
      ->group(group);
  app.add_option("--beacon-interval", flags.beacon_interval_ms, "Beacon interval in ms (default: 1000)")
      ->type_name("MS")
      ->check(CLI::Range(std::int64_t{10}, std::int64_t{3'600'000}))
      ->group(group);
  app.add_option("--log-level", flags.log_level, "Library log level on stderr (default: warn)")
      ->type_name("LEVEL")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}))
      ->group(group);
}

milliseconds beacon_interval(const node_flags& flags) {
  return flags.beacon_interval_ms > 0 ? milliseconds(flags.beacon_interval_ms)
                                      : meshbus::Options{}.beacon_interval;
}

/// --wait when given, else 1.5 beacon intervals: long enough to hear every live node once.
milliseconds discovery_wait(const node_flags& flags, std::int64_t wait_ms) {
  return wait_ms >= 0 ? milliseconds(wait_ms) : beacon_interval(flags) * 3 / 2;
}

/// Starts a node from the flags on top of `options`; unset flags leave the MESHBUS_* variables
/// (read by the library) in charge. Throws meshbus::error.
std::unique_ptr<meshbus::Node> start_node(const node_flags& flags, meshbus::Options options) {
  // The library reads MESHBUS_LOG once, when the first Node logs; no Node (and no thread that
  // reads the environment) exists yet.
  if (!flags.log_level.empty())
    ::setenv("MESHBUS_LOG", flags.log_level.c_str(), 1);  // NOLINT(concurrency-mt-unsafe)
  options.interface = flags.interface;
  options.cluster = flags.cluster;
  options.name = flags.name;
  options.beacon_port = flags.beacon_port;
  options.router_port = flags.router_port;
  options.pub_port = flags.pub_port;
  if (!flags.peers.empty()) options.seeds.push_back(flags.peers);
  // The library derives the peer expiry from the interval.
  if (flags.beacon_interval_ms > 0) options.beacon_interval = milliseconds(flags.beacon_interval_ms);
  return std::make_unique<meshbus::Node>(std::move(options));
}

// ---------------------------------------------------------------------------
// Hand-over from handler and signal threads to the main thread

/// Set once by whoever decides the run is over (count reached, signal, output closed); the
/// main thread waits on it. The eventfd lets poll() loops (stdin) wake up too.
class exit_latch {
 public:
  exit_latch() : wake_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    if (wake_fd_ < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
  }
  ~exit_latch() { ::close(wake_fd_); }
  exit_latch(const exit_latch&) = delete;
  exit_latch& operator=(const exit_latch&) = delete;

  /// Any thread. The first call sets the exit code; later calls change nothing.
  void finish(int code) noexcept {
    {
      std::lock_guard lock(mu_);
      if (finished_.load(std::memory_order_relaxed)) return;
      code_ = code;
      finished_.store(true, std::memory_order_release);
    }
    done_.notify_all();
    const std::uint64_t one = 1;
    [[maybe_unused]] const auto n = ::write(wake_fd_, &one, sizeof one);
  }
  bool finished() const noexcept { return finished_.load(std::memory_order_acquire); }
  int code() const {
    std::lock_guard lock(mu_);
    return code_;
  }
  /// True when finished before `deadline`.
  bool wait_until(steady::time_point deadline) {
    std::unique_lock lock(mu_);
    return done_.wait_until(lock, deadline, [&] { return finished(); });
  }
  void wait() {
    std::unique_lock lock(mu_);
    done_.wait(lock, [&] { return finished(); });
  }
  /// Readable once finished.
  int wake_fd() const noexcept { return wake_fd_; }

 private:
  mutable std::mutex mu_;
  std::condition_variable done_;
  std::atomic<bool> finished_{false};
  int code_ = exit_code::ok;
  int wake_fd_;
};

/// SIGINT/SIGTERM finish the latch with exit 0 (repeats change nothing: every wait is
/// interruptible and stop() is bounded by Options::linger). Must be created before any Node:
/// it blocks the signals, and the Node's threads inherit that mask, so only this watcher's
/// sigwait() ever sees them.
class signal_watcher {
 public:
  explicit signal_watcher(exit_latch& latch) {
    sigemptyset(&signals_);
    sigaddset(&signals_, SIGINT);
    sigaddset(&signals_, SIGTERM);
    sigaddset(&signals_, SIGUSR1);  // our own wake-up at exit
    pthread_sigmask(SIG_BLOCK, &signals_, nullptr);
    thread_ = std::thread([this, &latch] { watch(latch); });
  }
  ~signal_watcher() {
    stopping_.store(true, std::memory_order_release);
    pthread_kill(thread_.native_handle(), SIGUSR1);
    thread_.join();
  }
  signal_watcher(const signal_watcher&) = delete;
  signal_watcher& operator=(const signal_watcher&) = delete;

 private:
  void watch(exit_latch& latch) {
    for (;;) {
      int sig = 0;
      if (sigwait(&signals_, &sig) != 0) continue;
      if (sig == SIGUSR1) {
        if (stopping_.load(std::memory_order_acquire)) return;
        continue;
      }
      latch.finish(exit_code::ok);
    }
  }

  sigset_t signals_{};
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

/// Runs `step` (a bounded library wait returning true when satisfied) in slices until it is
/// satisfied, `deadline` passes or the latch finishes, so Ctrl-C is never ignored for long.
bool wait_interruptibly(const exit_latch& latch, steady::time_point deadline,
                        const std::function<bool(milliseconds)>& step) {
  constexpr milliseconds slice{50};
  for (;;) {
    const auto left = std::chrono::ceil<milliseconds>(deadline - steady::now());
    if (step(std::clamp(left, milliseconds(0), slice))) return true;
    if (latch.finished() || steady::now() >= deadline) return false;
  }
}

using peer_filter = std::function<bool(const std::vector<meshbus::PeerInfo>&)>;

/// Listens for peers until `wait` passes, or earlier: once a peer joined, `wanted` (when given)
/// holds for the known peers and no further peer joined for 100 ms. Live nodes answer a new
/// node's first beacon at once, so the rest of them join within moments of the first.
void discover_peers(meshbus::Node& node, milliseconds wait, const exit_latch& latch,
                    const peer_filter& wanted = {}) {
  const auto deadline = steady::now() + wait;
  if (!wait_interruptibly(latch, deadline, [&](milliseconds step) { return node.wait_for_peers(1, step); })) {
    return;
  }
  constexpr milliseconds settle{100};
  while (!latch.finished() && steady::now() < deadline) {
    const auto known = node.peers();
    const auto left = std::chrono::ceil<milliseconds>(deadline - steady::now());
    const bool joined = node.wait_for_peers(known.size() + 1, std::min(settle, left));
    if (!joined && (!wanted || wanted(known))) return;
  }
}

enum class publish_outcome : std::uint8_t { published, timed_out, interrupted };

/// Calls `publish` (returning meshbus::PublishResult) until it is accepted, retrying while the
/// send queue stays full (each try blocks up to Options::send_timeout), until `deadline` or the
/// latch.
template <typename Publish>
publish_outcome publish_retrying(Publish&& publish, steady::time_point deadline, const exit_latch& latch) {
  for (;;) {
    if (publish() == meshbus::PublishResult::ok) return publish_outcome::published;
    if (latch.finished()) return publish_outcome::interrupted;
    if (steady::now() >= deadline) return publish_outcome::timed_out;
  }
}

// ---------------------------------------------------------------------------
// Text: escaping, JSON, times

/// Length of the valid UTF-8 sequence at s[i] (its code point in `cp`), or 0 if invalid.
std::size_t utf8_sequence(std::string_view s, std::size_t i, char32_t& cp) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  std::size_t len = 0;
  char32_t min = 0;
  if (b0 < 0x80) {
    cp = b0;
    return 1;
  } else if ((b0 & 0xE0) == 0xC0) {
    len = 2, cp = b0 & 0x1Fu, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3, cp = b0 & 0x0Fu, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4, cp = b0 & 0x07u, min = 0x10000;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  for (std::size_t k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b & 0x3Fu);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}

bool is_printable(char32_t cp) {
  return cp >= 0x20 && cp != 0x7F && !(cp >= 0x80 && cp <= 0x9F);
}

bool is_valid_utf8(std::string_view s) {
  char32_t cp = 0;
  for (std::size_t i = 0; i < s.size();) {
    const auto len = utf8_sequence(s, i, cp);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

bool is_printable_utf8(std::string_view s) {
  char32_t cp = 0;
  for (std::size_t i = 0; i < s.size();) {
    const auto len = utf8_sequence(s, i, cp);
    if (len == 0 || !is_printable(cp)) return false;
    i += len;
  }
  return true;
}

void append_hex_byte(std::string& out, std::string_view prefix, unsigned char b) {
  constexpr std::string_view digits = "0123456789abcdef";
  out += prefix;
  out += digits[b >> 4];
  out += digits[b & 0x0F];
}

/// Printable UTF-8 as it is; anything else with \\, \n, \r, \t and \xNN escapes, so that an
/// event is always one line.
void append_display_text(std::string& out, std::string_view s) {
  if (is_printable_utf8(s)) {
    out += s;
    return;
  }
  char32_t cp = 0;
  for (std::size_t i = 0; i < s.size();) {
    const auto len = utf8_sequence(s, i, cp);
    if (len != 0 && is_printable(cp)) {
      if (cp == U'\\') {
        out += "\\\\";
      } else {
        out.append(s.substr(i, len));
      }
      i += len;
      continue;
    }
    const auto b = static_cast<unsigned char>(s[i]);
    switch (b) {
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default: {
        // An invalid byte, or every byte of a non-printable character.
        const std::size_t n = len == 0 ? 1 : len;
        for (std::size_t k = 0; k < n; ++k) append_hex_byte(out, "\\x", static_cast<unsigned char>(s[i + k]));
        i += n;
        continue;
      }
    }
    ++i;
  }
}

std::string display_text(std::string_view s) {
  std::string out;
  append_display_text(out, s);
  return out;
}

/// A JSON string literal; invalid UTF-8 bytes become U+FFFD.
void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  char32_t cp = 0;
  for (std::size_t i = 0; i < s.size();) {
    const auto len = utf8_sequence(s, i, cp);
    if (len == 0) {
      out += "\\ufffd";
      ++i;
      continue;
    }
    switch (cp) {
      case U'"': out += "\\\""; break;
      case U'\\': out += "\\\\"; break;
      case U'\n': out += "\\n"; break;
      case U'\r': out += "\\r"; break;
      case U'\t': out += "\\t"; break;
      case U'\b': out += "\\b"; break;
      case U'\f': out += "\\f"; break;
      default:
        if (cp < 0x20 || cp == 0x7F) {
          append_hex_byte(out, "\\u00", static_cast<unsigned char>(cp));
        } else {
          out.append(s.substr(i, len));
        }
    }
    i += len;
  }
  out += '"';
}

void append_base64(std::string& out, std::string_view s) {
  constexpr std::string_view alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::size_t i = 0;
  for (; i + 3 <= s.size(); i += 3) {
    const auto v = (std::uint32_t{static_cast<unsigned char>(s[i])} << 16) |
                   (std::uint32_t{static_cast<unsigned char>(s[i + 1])} << 8) |
                   static_cast<unsigned char>(s[i + 2]);
    for (int shift = 18; shift >= 0; shift -= 6) out += alphabet[(v >> shift) & 0x3F];
  }
  const auto rest = s.size() - i;
  if (rest == 0) return;
  std::uint32_t v = std::uint32_t{static_cast<unsigned char>(s[i])} << 16;
  if (rest == 2) v |= std::uint32_t{static_cast<unsigned char>(s[i + 1])} << 8;
  out += alphabet[(v >> 18) & 0x3F];
  out += alphabet[(v >> 12) & 0x3F];
  out += rest == 2 ? alphabet[(v >> 6) & 0x3F] : '=';
  out += '=';
}

/// `,"payload":"..."` for UTF-8, else `,"payload_base64":"..."`.
void append_json_payload(std::string& out, std::string_view payload) {
  if (is_valid_utf8(payload)) {
    out += ",\"payload\":";
    append_json_string(out, payload);
  } else {
    out += ",\"payload_base64\":\"";
    append_base64(out, payload);
    out += '"';
  }
}

/// ISO-8601 UTC with microseconds: 2024-05-01T12:34:56.789012Z.
std::string iso8601_utc(std::chrono::system_clock::time_point t) {
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  auto seconds = us / 1'000'000;
  auto fraction = us % 1'000'000;
  if (fraction < 0) {
    fraction += 1'000'000;
    --seconds;
  }
  const auto tt = static_cast<std::time_t>(seconds);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<long long>(fraction));
  return buf;
}

/// "850ms", "3.2s", "4m05s", "2h07m".
std::string human_duration(steady::duration d) {
  const auto ms = std::max<std::int64_t>(0, std::chrono::duration_cast<milliseconds>(d).count());
  char buf[64];
  if (ms < 1000) {
    std::snprintf(buf, sizeof buf, "%lldms", static_cast<long long>(ms));
  } else if (ms < 60'000) {
    std::snprintf(buf, sizeof buf, "%.1fs", static_cast<double>(ms) / 1000.0);
  } else if (ms < 3'600'000) {
    std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(ms / 60'000),
                  static_cast<long long>(ms / 1000 % 60));
  } else {
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", static_cast<long long>(ms / 3'600'000),
                  static_cast<long long>(ms / 60'000 % 60));
  }
  return buf;
}

std::string join(const std::vector<std::string>& items, std::string_view separator) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += separator;
    out += item;
  }
  return out;
}

// ---------------------------------------------------------------------------
// peers

struct peers_flags {
  std::int64_t wait_ms = -1;  ///< -1: discovery_wait's default
  std::size_t expect = 0;     ///< 0: no expectation
  bool json = false;
};

/// Rows as columns aligned with two spaces between them; the first row is the header.
void print_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> widths;
  for (const auto& row : rows) {
    widths.resize(std::max(widths.size(), row.size()), 0);
    for (std::size_t c = 0; c < row.size(); ++c) widths[c] = std::max(widths[c], row[c].size());
  }
  std::string out;
  for (const auto& row : rows) {
    for (std::size_t c = 0; c < row.size(); ++c) {
      out += row[c];
      if (c + 1 < row.size()) out.append(widths[c] - row[c].size() + 2, ' ');
    }
    out += '\n';
  }
  std::cout << out << std::flush;
}

void print_peer_table(const std::vector<meshbus::PeerInfo>& peers, steady::time_point now) {
  std::vector<std::vector<std::string>> rows{
      {"ID", "NAME", "ADDRESS", "STATE", "AGE", "LAST SEEN", "SUBSCRIPTIONS"}};
  for (const auto& p : peers) {
    rows.push_back({p.id.short_string(), display_text(p.name),
                    p.address + ":" + std::to_string(p.router_port),
                    p.state == meshbus::PeerState::alive ? "alive" : "suspect",
                    human_duration(now - p.joined_at), human_duration(now - p.last_heard) + " ago",
                    p.subscriptions.empty() ? "-" : display_text(join(p.subscriptions, ","))});
  }
  print_table(rows);
}

void print_peer_json(const std::vector<meshbus::PeerInfo>& peers, steady::time_point now) {
  std::string out = "[";
  for (std::size_t i = 0; i < peers.size(); ++i) {
    const auto& p = peers[i];
    out += i == 0 ? "\n  {" : ",\n  {";
    out += "\"id\":\"" + p.id.to_string() + "\",\"short_id\":\"" + p.id.short_string() + "\",\"name\":";
    append_json_string(out, p.name);
    out += ",\"address\":";
    append_json_string(out, p.address);
    out +=
        ",\"router_port\":" + std::to_string(p.router_port) + ",\"pub_port\":" + std::to_string(p.pub_port);
    out += ",\"epoch\":" + std::to_string(p.epoch);
    out += std::string(",\"state\":\"") + (p.state == meshbus::PeerState::alive ? "alive" : "suspect") + "\"";
    out +=
        ",\"age_ms\":" + std::to_string(std::chrono::duration_cast<milliseconds>(now - p.joined_at).count());
    out += ",\"last_seen_ms\":" +
           std::to_string(std::chrono::duration_cast<milliseconds>(now - p.last_heard).count());
    out += ",\"subscriptions\":[";
    for (std::size_t k = 0; k < p.subscriptions.size(); ++k) {
      if (k != 0) out += ',';
      append_json_string(out, p.subscriptions[k]);
    }
    out += "],\"metadata\":{";
    bool first = true;
    for (const auto& [key, value] : p.metadata) {
      if (!first) out += ',';
      first = false;
      append_json_string(out, key);
      out += ':';
      append_json_string(out, value);
    }
    out += "}}";
  }
  out += peers.empty() ? "]\n" : "\n]\n";
  std::cout << out << std::flush;
}

int run_peers(const node_flags& node_opts, const peers_flags& flags, exit_latch& latch) {
  auto node = start_node(node_opts, {});
  const auto wait = discovery_wait(node_opts, flags.wait_ms);
  const auto deadline = steady::now() + wait;
  bool expected_met = true;
  if (flags.expect > 0) {
    expected_met = wait_interruptibly(
        latch, deadline, [&](milliseconds step) { return node->wait_for_peers(flags.expect, step); });
  } else {
    latch.wait_until(deadline);
  }
  auto peers = node->peers();
  std::sort(peers.begin(), peers.end(), [](const meshbus::PeerInfo& a, const meshbus::PeerInfo& b) {
    return std::tie(a.name, a.id) < std::tie(b.name, b.id);
  });
  const auto now = steady::now();
  if (flags.json) {
    print_peer_json(peers, now);
  } else {
    print_peer_table(peers, now);
    if (peers.empty() && !latch.finished()) {
      print_error("no peers in cluster '" + node->cluster() + "' within " + to_ms_text(wait));
    }
  }
  const auto cluster = node->cluster();
  node->stop();
  if (!expected_met && !latch.finished()) {
    print_error("expected " + std::to_string(flags.expect) + " peers in cluster '" + cluster + "', " +
                std::to_string(peers.size()) + " joined within " + to_ms_text(wait));
    return exit_code::timeout;
  }
  return exit_code::ok;
}

// ---------------------------------------------------------------------------
// sub

struct sub_flags {
  std::vector<std::string> patterns;
  std::uint64_t count = 0;      ///< 0: unlimited
  std::int64_t timeout_ms = 0;  ///< 0: none
  bool json = false;
  bool meta = false;
  std::string mode = "reliable";  ///< best_effort | reliable | acknowledged (checked by CLI11)
  std::string start = "now";      ///< now | earliest | a sequence number (checked by start_check)
};

meshbus::Delivery delivery_of(std::string_view mode) {
  if (mode == "best_effort") return meshbus::Delivery::best_effort;
  if (mode == "acknowledged") return meshbus::Delivery::acknowledged;
  return meshbus::Delivery::reliable;
}

/// "now", "earliest" or a sequence number of at least 1; nullopt for anything else.
std::optional<meshbus::StartFrom> start_from(std::string_view text) {
  if (text == "now") return meshbus::StartFrom::now();
  if (text == "earliest") return meshbus::StartFrom::earliest();
  std::uint64_t seq = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), seq);
  if (ec != std::errc{} || end != text.data() + text.size() || seq == 0) return std::nullopt;
  return meshbus::StartFrom::at(seq);
}

CLI::Validator start_check() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        return start_from(text) ? std::string()
                                : "must be now, earliest or a sequence number (1 or more), not " + text;
      },
      "", "");
}

/// For --json: the reason as a stable word, not the library's sentence.
std::string_view reason_code(meshbus::LossNotice::Reason reason) {
  switch (reason) {
    case meshbus::LossNotice::Reason::gap: return "gap";
    case meshbus::LossNotice::Reason::not_in_history: return "not_in_history";
    case meshbus::LossNotice::Reason::publisher_gone: return "publisher_gone";
  }
  return "unknown";
}

/// Publisher names for --meta/--json, filled from peer events (handler thread) and the peer list.
class peer_names {
 public:
  void remember(const meshbus::PeerInfo& peer) {
    std::lock_guard lock(mu_);
    names_[peer.id] = peer.name;
  }
  std::optional<std::string> find(const meshbus::NodeId& id) const {
    std::lock_guard lock(mu_);
    const auto it = names_.find(id);
    if (it == names_.end()) return std::nullopt;
    return it->second;
  }

 private:
  mutable std::mutex mu_;
  std::unordered_map<meshbus::NodeId, std::string> names_;
};

/// Formats and writes events and loss notices, one flushed line each; stops at the count limit
/// or when stdout is gone. Called on a meshbus handler thread.
class event_printer {
 public:
  event_printer(const sub_flags& flags, const peer_names& names, exit_latch& latch)
      : flags_(flags), names_(names), latch_(latch) {}

  void print(const meshbus::Event& event) {
    std::lock_guard lock(mu_);
    if (latch_.finished() || (flags_.count != 0 && printed_ >= flags_.count)) return;
    line_.clear();
    if (flags_.json) {
      append_json(event);
    } else {
      append_text(event);
    }
    if (!write_line()) return;
    printed_.store(printed_.load(std::memory_order_relaxed) + 1, std::memory_order_release);
    if (flags_.count != 0 && printed_ >= flags_.count) latch_.finish(exit_code::ok);
  }

  /// A line on stderr; with --json also a {"lost":true,...} line on stdout, in order with events.
  void print_loss(const meshbus::LossNotice& loss) {
    std::lock_guard lock(mu_);
    if (latch_.finished()) return;
    const auto lost = loss.to - loss.from + 1;
    print_error("lost " + std::to_string(lost) + " event" + (lost == 1 ? "" : "s") + " of " + loss.topic +
                " from " + loss.publisher.short_string() + " (" + meshbus::to_string(loss.reason) + ")");
    if (!flags_.json) return;
    line_ = "{\"lost\":true,\"topic\":";
    append_json_string(line_, loss.topic);
    line_ += ",\"publisher\":\"" + loss.publisher.to_string() + '"';
    append_json_publisher_name(loss.publisher);
    line_ += ",\"epoch\":" + std::to_string(loss.epoch);
    line_ += ",\"from\":" + std::to_string(loss.from) + ",\"to\":" + std::to_string(loss.to);
    line_ += ",\"count\":" + std::to_string(lost);
    line_ += ",\"reason\":\"" + std::string(reason_code(loss.reason)) + "\",\"pattern\":";
    append_json_string(line_, loss.pattern);
    line_ += '}';
    write_line();
  }

  std::uint64_t printed() const noexcept { return printed_.load(std::memory_order_acquire); }

 private:
  /// Writes line_ and a newline; false (and the latch finished) when stdout is gone.
  bool write_line() {
    line_ += '\n';
    if (std::fwrite(line_.data(), 1, line_.size(), stdout) == line_.size() && std::fflush(stdout) == 0)
      return true;
    const int err = errno;
    if (err == EPIPE) {
      latch_.finish(exit_code::ok);  // the reader (head, ...) has all it wanted
    } else {
      print_error("writing to stdout: " + std::generic_category().message(err));
      latch_.finish(exit_code::failure);
    }
    return false;
  }

  void append_text(const meshbus::Event& event) {
    if (flags_.meta) {
      line_ += '[' + event.publisher().short_string() + " #" + std::to_string(event.sequence());
      if (auto name = names_.find(event.publisher())) line_ += ' ' + display_text(*name);
      line_ += "] ";
    }
    line_ += event.topic();
    line_ += ' ';
    append_display_text(line_, event.text());
  }

  void append_json_publisher_name(const meshbus::NodeId& publisher) {
    if (auto name = names_.find(publisher)) {
      line_ += ",\"publisher_name\":";
      append_json_string(line_, *name);
    }
  }

  void append_json(const meshbus::Event& event) {
    line_ += "{\"topic\":";
    append_json_string(line_, event.topic());
    append_json_payload(line_, event.text());
    line_ += ",\"publisher\":\"" + event.publisher().to_string() + '"';
    append_json_publisher_name(event.publisher());
    line_ += ",\"epoch\":" + std::to_string(event.epoch());
    line_ += ",\"sequence\":" + std::to_string(event.sequence());
    line_ += ",\"timestamp\":\"" + iso8601_utc(event.timestamp()) + "\"}";
  }

  const sub_flags& flags_;
  const peer_names& names_;
  exit_latch& latch_;
  std::mutex mu_;
  std::string line_;
  std::atomic<std::uint64_t> printed_{0};
};

int run_sub(const node_flags& node_opts, const sub_flags& flags, exit_latch& latch) {
  for (const auto& pattern : flags.patterns) {
    if (auto err = meshbus::pattern_error(pattern); !err.empty()) {
      throw usage_error(err);  // the sentence names the pattern
    }
  }
  meshbus::SubscribeOptions subscribe_options;
  subscribe_options.delivery = delivery_of(flags.mode);
  subscribe_options.start = start_from(flags.start).value_or(meshbus::StartFrom::now());
  // Declared before the node, so the node (and its handler threads) goes first.
  peer_names names;
  event_printer printer(flags, names, latch);
  meshbus::Options options;
  options.handler_threads = 1;  // one thread: lines keep the order events arrive in
  auto node = start_node(node_opts, std::move(options));
  node->on_peer([&names](const meshbus::PeerEvent& change) {
    if (change.kind == meshbus::PeerEvent::Kind::joined) names.remember(change.peer);
  });
  for (const auto& peer : node->peers()) names.remember(peer);  // joined before on_peer
  node->on_loss([&printer](const meshbus::LossNotice& loss) { printer.print_loss(loss); });
  for (const auto& pattern : flags.patterns) {
    node->subscribe(
        pattern, [&printer](const meshbus::Event& event) { printer.print(event); }, subscribe_options);
  }

  bool finished = true;
  const milliseconds timeout(flags.timeout_ms);
  if (flags.timeout_ms > 0) {
    finished = latch.wait_until(steady::now() + timeout);
  } else {
    latch.wait();
  }
  node->stop();
  if (!finished && flags.count != 0) {
    print_error("timed out after " + to_ms_text(timeout) + ": received " + std::to_string(printer.printed()) +
                " of " + std::to_string(flags.count) + " events");
    return exit_code::timeout;
  }
  return finished ? latch.code() : exit_code::ok;
}

// ---------------------------------------------------------------------------
// pub

struct pub_flags {
  std::string topic;
  std::string payload;
  bool has_payload = false;
  std::uint64_t count = 1;  ///< with PAYLOAD: how many; from stdin: at most this many when given
  bool count_given = false;
  double rate = 0;  ///< events/s; 0: as fast as possible
  std::size_t subscribers = 0;
  std::int64_t wait_ms = -1;  ///< -1: discovery_wait's default
  std::int64_t timeout_ms = 10'000;
};

/// Lines of stdin without their '\n' (a last line without one counts too). Stops early when
/// the latch finishes, even while waiting for input.
class stdin_lines {
 public:
  explicit stdin_lines(int wake_fd) : wake_fd_(wake_fd) {}

  bool next(std::string& line) {
    for (;;) {
      if (const auto nl = buffer_.find('\n', pos_); nl != std::string::npos) {
        line.assign(buffer_, pos_, nl - pos_);
        pos_ = nl + 1;
        return true;
      }
      if (eof_) {
        if (pos_ >= buffer_.size()) return false;
        line.assign(buffer_, pos_);
        pos_ = buffer_.size();
        return true;
      }
      buffer_.erase(0, pos_);
      pos_ = 0;
      if (!fill()) return false;
    }
  }

 private:
  /// Reads more input; false when woken by the latch.
  bool fill() {
    pollfd fds[2] = {{STDIN_FILENO, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    for (;;) {
      if (::poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        throw std::system_error(errno, std::generic_category(), "waiting for stdin");
      }
      if ((fds[1].revents & POLLIN) != 0) return false;
      char chunk[65536];
      const auto n = ::read(STDIN_FILENO, chunk, sizeof chunk);
      if (n > 0) {
        buffer_.append(chunk, static_cast<std::size_t>(n));
        return true;
      }
      if (n == 0) {
        eof_ = true;
        return true;
      }
      if (errno != EINTR && errno != EAGAIN)
        throw std::system_error(errno, std::generic_category(), "reading stdin");
    }
  }

  int wake_fd_;
  std::string buffer_;
  std::size_t pos_ = 0;
  bool eof_ = false;
};

std::size_t matching_subscribers(const std::vector<meshbus::PeerInfo>& peers, std::string_view topic) {
  return static_cast<std::size_t>(std::count_if(peers.begin(), peers.end(), [&](const meshbus::PeerInfo& p) {
    return std::any_of(p.subscriptions.begin(), p.subscriptions.end(), [&](const std::string& pattern) {
      try {
        return meshbus::topic_matches(pattern, topic);
      } catch (const meshbus::error&) {
        return false;  // a peer's pattern we cannot parse cannot match here either
      }
    });
  }));
}

/// Makes sure the subscribers of the topic that exist are ready before the first event (no
/// slow-joiner loss). Returns how many there are; nullopt when --subscribers N did not appear.
std::optional<std::size_t> await_subscribers(meshbus::Node& node, const pub_flags& flags, milliseconds wait,
                                             const exit_latch& latch) {
  const milliseconds timeout(flags.timeout_ms);
  if (flags.subscribers > 0) {
    if (!wait_interruptibly(latch, steady::now() + timeout, [&](milliseconds step) {
          return node.wait_for_subscribers(flags.topic, flags.subscribers, step);
        })) {
      return std::nullopt;
    }
  } else {
    discover_peers(node, wait, latch);
  }
  // Every known subscriber of the topic: wait until its subscription is in effect at our PUB.
  std::size_t known = 0;
  const bool ready = wait_interruptibly(latch, steady::now() + timeout, [&](milliseconds step) {
    known = std::max(flags.subscribers, matching_subscribers(node.peers(), flags.topic));
    return node.wait_for_subscribers(flags.topic, known, step);
  });
  if (!ready && !latch.finished()) {
    print_error("warning: not all " + std::to_string(known) + " subscribers of " + flags.topic +
                " were ready within " + to_ms_text(timeout) + "; publishing anyway");
  }
  return known;
}

/// PAYLOAD --count times with {n} replaced by 1..count, or the lines of stdin.
std::function<bool(std::string&)> payload_source(const pub_flags& flags, const exit_latch& latch) {
  if (!flags.has_payload) {
    auto lines = std::make_shared<stdin_lines>(latch.wake_fd());
    auto limit = flags.count_given ? flags.count : UINT64_MAX;
    return [lines, limit, taken = std::uint64_t{0}](std::string& payload) mutable {
      return taken++ < limit && lines->next(payload);
    };
  }
  std::vector<std::string> parts;  // PAYLOAD split at each {n}
  for (std::size_t start = 0;;) {
    const auto at = flags.payload.find("{n}", start);
    parts.push_back(flags.payload.substr(start, at == std::string::npos ? std::string::npos : at - start));
    if (at == std::string::npos) break;
    start = at + 3;
  }
  return [parts = std::move(parts), count = flags.count, n = std::uint64_t{0}](std::string& payload) mutable {
    if (n >= count) return false;
    ++n;
    payload = parts[0];
    for (std::size_t i = 1; i < parts.size(); ++i) payload += std::to_string(n) + parts[i];
    return true;
  };
}

int run_pub(const node_flags& node_opts, const pub_flags& flags, exit_latch& latch) {
  if (auto err = meshbus::topic_error(flags.topic); !err.empty()) {
    throw usage_error(err);  // the sentence names the topic
  }
  const milliseconds timeout(flags.timeout_ms);
  meshbus::Options options;
  options.send_timeout = std::min(timeout, milliseconds(200));  // publish_event retries up to timeout
  auto node = start_node(node_opts, std::move(options));
  const auto wait = discovery_wait(node_opts, flags.wait_ms);

  const auto subscribers = await_subscribers(*node, flags, wait, latch);
  if (latch.finished()) return exit_code::ok;  // interrupted while waiting
  if (!subscribers) {
    node->stop();
    print_error("timed out after " + to_ms_text(timeout) + " waiting for " +
                std::to_string(flags.subscribers) + " subscribers of " + flags.topic + " (" +
                std::to_string(matching_subscribers(node->peers(), flags.topic)) + " known)");
    return exit_code::timeout;
  }
  if (!flags.has_payload && ::isatty(STDIN_FILENO) != 0) {
    std::cerr << "meshbus: publishing each line of input on " << flags.topic << " (Ctrl-D to end)"
              << std::endl;
  }

  const auto next_payload = payload_source(flags, latch);
  const auto start = steady::now();
  const std::chrono::duration<double> interval(flags.rate > 0 ? 1.0 / flags.rate : 0.0);
  std::uint64_t published = 0;
  std::string payload;
  while (!latch.finished() && next_payload(payload)) {
    if (flags.rate > 0) {
      // The n-th event goes at start + n/rate, so pacing does not drift.
      const auto due =
          start + std::chrono::duration_cast<steady::duration>(interval * static_cast<double>(published));
      if (latch.wait_until(due)) break;
    }
    const auto outcome =
        publish_retrying([&] { return node->publish(flags.topic, payload); }, steady::now() + timeout, latch);
    if (outcome == publish_outcome::interrupted) break;
    if (outcome == publish_outcome::timed_out) {
      node->stop();
      print_error("timed out after " + to_ms_text(timeout) + ": the send queue stayed full after " +
                  std::to_string(published) + " events on " + flags.topic);
      return exit_code::timeout;
    }
    ++published;
  }
  // The guarantee: flush() returns once every reliable subscriber acknowledged every event.
  const bool flushed = wait_interruptibly(latch, steady::now() + timeout,
                                          [&](milliseconds step) { return node->flush(step); });
  const std::chrono::duration<double, std::milli> took = steady::now() - start;
  const auto unflushed = node->stats();
  // After a flush stop() only says goodbye; after a failed one it lingers (Options::linger).
  node->stop();
  char took_text[32];
  std::snprintf(took_text, sizeof took_text, "%.1f", took.count());
  std::cerr << "published " << published << " event" << (published == 1 ? "" : "s") << " on " << flags.topic
            << " to " << *subscribers << " subscriber" << (*subscribers == 1 ? "" : "s") << " in "
            << took_text << " ms" << std::endl;
  if (*subscribers == 0 && published > 0) {
    print_error("note: no subscriber of " + flags.topic + " was found within " + to_ms_text(wait) +
                " (check --cluster and --interface, or use --subscribers N)");
  }
  if (!flushed && !latch.finished()) {
    print_error("timed out after " + to_ms_text(timeout) +
                " waiting for the subscribers to acknowledge every event (" +
                std::to_string(unflushed.unacknowledged_events) + " unacknowledged, " +
                std::to_string(unflushed.send_queue_bytes) +
                " bytes not yet sent); some may not have arrived");
    return exit_code::timeout;
  }
  return exit_code::ok;
}

// ---------------------------------------------------------------------------
// dlq: the dead letters of a cluster (docs/protocol.md §6)

/// Every dead letter is announced on "$dlq.<topic>" (or "$dlq" for very long topics).
constexpr std::string_view dlq_pattern = "$dlq.**";
/// Every node subscribes the requests and answers those addressed to it on the answer topic.
constexpr std::string_view replay_request_topic = "$meshbus.dlq.replay";
constexpr std::string_view replay_answer_topic = "$meshbus.dlq.replayed";

struct dlq_list_flags {
  std::int64_t wait_ms = -1;  ///< -1: discovery_wait's default
  bool json = false;
};

struct dlq_replay_flags {
  std::string node;  ///< 32 hex digits, or a prefix of a known peer's id
  std::uint64_t id = 0;
  std::int64_t wait_ms = -1;  ///< -1: discovery_wait's default
  std::int64_t timeout_ms = 10'000;
};

std::optional<std::uint64_t> number_of(std::string_view text) {
  std::uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
  return value;
}

/// One announcement from "$dlq.**".
struct dead_letter_entry {
  std::string node;  ///< the node that holds it (32 hex digits)
  std::uint64_t id = 0;
  std::string topic;
  std::uint64_t attempts = 0;
  std::string reason;
  std::string pattern;
  std::string publisher;
  std::uint64_t sequence = 0;
  std::string payload;
  std::chrono::system_clock::time_point failed_at;
};

/// Collects announcements on a handler thread for the main thread, one per (node, id), sorted.
class dead_letter_collector {
 public:
  void add(const meshbus::Event& event) {
    received_.fetch_add(1, std::memory_order_release);
    const auto id = number_of(event.header("dlq-id").value_or(""));
    const auto node = event.header("dlq-node");
    if (!id || !node) return;  // not an announcement meshbus made
    dead_letter_entry e;
    e.node = std::string(*node);
    e.id = *id;
    e.topic = std::string(event.header("original-topic").value_or(event.topic()));
    e.attempts = number_of(event.header("dlq-attempts").value_or("")).value_or(0);
    e.reason = std::string(event.header("dlq-reason").value_or(""));
    e.pattern = std::string(event.header("dlq-pattern").value_or(""));
    e.publisher = std::string(event.header("original-publisher").value_or(""));
    e.sequence = number_of(event.header("original-sequence").value_or("")).value_or(0);
    e.payload = std::string(event.text());
    e.failed_at = event.timestamp();
    std::lock_guard lock(mu_);
    entries_.insert_or_assign({e.node, e.id}, std::move(e));
  }
  std::vector<dead_letter_entry> entries() const {
    std::lock_guard lock(mu_);
    std::vector<dead_letter_entry> out;
    for (const auto& [key, entry] : entries_) out.push_back(entry);
    return out;
  }
  /// Events received so far, well-formed or not: tells the main thread that history still flows.
  std::uint64_t received() const noexcept { return received_.load(std::memory_order_acquire); }

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::uint64_t>, dead_letter_entry> entries_;
  std::atomic<std::uint64_t> received_{0};
};

/// After discovery: waits until every known peer has completed its handshake with this node and
/// then nothing new (a peer, an announcement, a repair) came for `quiet`. There is no API that
/// says a publisher's READY (and so its history) reached us; a handshake shows up as the peer
/// being a ready subscriber of the replay requests (every node subscribes them), and the READY
/// goes out in the same exchange. False when still busy after `limit`.
bool wait_until_settled(meshbus::Node& node, const dead_letter_collector& letters, exit_latch& latch,
                        milliseconds quiet, milliseconds limit) {
  const auto deadline = steady::now() + limit;
  auto activity_of = [&] {
    const auto stats = node.stats();
    return std::array<std::uint64_t, 5>{static_cast<std::uint64_t>(node.peers().size()), letters.received(),
                                        stats.batches_received, stats.repairs_received, stats.nacks_sent};
  };
  auto last = activity_of();
  auto quiet_since = steady::now();
  while (!latch.finished()) {
    const auto now = steady::now();
    const auto peers = node.peers().size();
    if (now - quiet_since >= quiet &&
        node.wait_for_subscribers(replay_request_topic, peers, milliseconds(0))) {
      return true;
    }
    if (now >= deadline) return false;
    latch.wait_until(std::min(deadline, now + milliseconds(50)));
    if (const auto current = activity_of(); current != last) {
      last = current;
      quiet_since = steady::now();
    }
  }
  return true;
}

const meshbus::PeerInfo* find_peer(const std::vector<meshbus::PeerInfo>& peers, std::string_view node_hex) {
  const auto it = std::find_if(peers.begin(), peers.end(),
                               [&](const meshbus::PeerInfo& p) { return p.id.to_string() == node_hex; });
  return it == peers.end() ? nullptr : &*it;
}

void print_dead_letter_table(const std::vector<dead_letter_entry>& entries) {
  std::vector<std::vector<std::string>> rows{{"NODE", "ID", "TOPIC", "ATTEMPTS", "REASON", "PAYLOAD"}};
  for (const auto& e : entries) {
    rows.push_back({e.node.substr(0, 8), std::to_string(e.id), display_text(e.topic),
                    std::to_string(e.attempts), display_text(e.reason), display_text(e.payload)});
  }
  print_table(rows);
}

void print_dead_letter_json(const std::vector<dead_letter_entry>& entries,
                            const std::vector<meshbus::PeerInfo>& peers) {
  std::string out = "[";
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const auto& e = entries[i];
    out += i == 0 ? "\n  {" : ",\n  {";
    out += "\"node\":";
    append_json_string(out, e.node);
    out += ",\"node_short_id\":";
    append_json_string(out, e.node.substr(0, 8));
    if (const auto* peer = find_peer(peers, e.node)) {
      out += ",\"node_name\":";
      append_json_string(out, peer->name);
    }
    out += ",\"id\":" + std::to_string(e.id) + ",\"topic\":";
    append_json_string(out, e.topic);
    out += ",\"attempts\":" + std::to_string(e.attempts) + ",\"reason\":";
    append_json_string(out, e.reason);
    out += ",\"pattern\":";
    append_json_string(out, e.pattern);
    out += ",\"publisher\":";
    append_json_string(out, e.publisher);
    out += ",\"sequence\":" + std::to_string(e.sequence);
    out += ",\"failed_at\":\"" + iso8601_utc(e.failed_at) + '"';
    append_json_payload(out, e.payload);
    out += '}';
  }
  out += entries.empty() ? "]\n" : "\n]\n";
  std::cout << out << std::flush;
}

int run_dlq_list(const node_flags& node_opts, const dlq_list_flags& flags, exit_latch& latch) {
  // After discovery: quiet this long with every handshake done, but not longer than the limit.
  constexpr milliseconds settle_quiet{250};
  constexpr milliseconds settle_limit{10'000};
  dead_letter_collector letters;  // before the node, so the node goes first
  auto node = start_node(node_opts, {});
  meshbus::SubscribeOptions subscribe_options;
  subscribe_options.start = meshbus::StartFrom::earliest();  // what each node's history still holds
  node->subscribe(
      dlq_pattern, [&letters](const meshbus::Event& event) { letters.add(event); }, subscribe_options);
  const auto wait = discovery_wait(node_opts, flags.wait_ms);
  latch.wait_until(steady::now() + wait);  // every live node, as `peers` waits
  const bool settled = wait_until_settled(*node, letters, latch, settle_quiet, settle_limit);
  const auto peers = node->peers();
  const auto entries = letters.entries();
  const auto cluster = node->cluster();
  node->stop();
  if (flags.json) {
    print_dead_letter_json(entries, peers);
  } else if (!entries.empty()) {
    print_dead_letter_table(entries);
  }
  if (!settled && !latch.finished()) {
    print_error("warning: dead letters were still arriving after " + to_ms_text(wait + settle_limit) +
                "; the list may be incomplete");
  }
  if (entries.empty() && !flags.json && !latch.finished()) {
    print_error("no dead letters in the history of the " + std::to_string(peers.size()) + " node" +
                (peers.size() == 1 ? "" : "s") + " of cluster '" + cluster + "'");
  }
  return exit_code::ok;
}

/// Hex digits only, at most 32: a node id or a prefix of one.
CLI::Validator node_id_check() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        const bool hex = std::all_of(text.begin(), text.end(), [](char c) {
          return std::isxdigit(static_cast<unsigned char>(c)) != 0;
        });
        if (text.empty() || text.size() > 32 || !hex) {
          return "must be a node id (32 hex digits) or a prefix of one, not '" + text + "'";
        }
        std::transform(text.begin(), text.end(), text.begin(),
                       [](char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); });
        return {};
      },
      "", "");
}

std::vector<meshbus::PeerInfo> peers_matching(const std::vector<meshbus::PeerInfo>& peers,
                                              std::string_view prefix) {
  std::vector<meshbus::PeerInfo> out;
  std::copy_if(peers.begin(), peers.end(), std::back_inserter(out),
               [&](const meshbus::PeerInfo& p) { return p.id.to_string().starts_with(prefix); });
  return out;
}

/// The one known peer whose id starts with `prefix`; a usage_error naming the candidates otherwise.
meshbus::PeerInfo resolve_node(const std::vector<meshbus::PeerInfo>& peers, const std::string& prefix,
                               const std::string& cluster) {
  const auto matches = peers_matching(peers, prefix);
  if (matches.size() == 1) return matches.front();
  const auto& candidates = matches.empty() ? peers : matches;
  std::string listed;
  for (const auto& p : candidates) listed += "\n  " + p.id.to_string() + "  " + display_text(p.name);
  if (!matches.empty()) throw usage_error("node '" + prefix + "' is ambiguous; it matches:" + listed);
  if (peers.empty()) throw usage_error("no node '" + prefix + "': no peers in cluster '" + cluster + "'");
  throw usage_error("no known node matches '" + prefix + "'; the nodes of cluster '" + cluster +
                    "' are:" + listed);
}

/// The answer to this run's request, from a handler thread.
class replay_answer {
 public:
  void set(std::string node, std::string id, std::string result) {
    std::lock_guard lock(mu_);
    if (!result_) result_ = {std::move(node), std::move(id), std::move(result)};
  }
  std::optional<std::array<std::string, 3>> get() const {
    std::lock_guard lock(mu_);
    return result_;
  }

 private:
  mutable std::mutex mu_;
  std::optional<std::array<std::string, 3>> result_;  ///< dlq-node, dlq-id, dlq-result
};

int run_dlq_replay(const node_flags& node_opts, const dlq_replay_flags& flags, exit_latch& latch) {
  replay_answer answer;  // before the node, so the node goes first
  auto node = start_node(node_opts, {});
  // Answers name the request as their cause, and a request's event id starts with its
  // publisher's id: this node is new and sends one request, so the prefix singles out its answer.
  const auto cause_prefix = node->id().to_string() + "-";
  // "earliest": if the answer overtakes our subscription at the target's PUB, the target's READY
  // still shows it to us and it is repaired from the target's history; with "now" it would be
  // taken as sent before we subscribed.
  meshbus::SubscribeOptions subscribe_options;
  subscribe_options.start = meshbus::StartFrom::earliest();
  node->subscribe(
      replay_answer_topic,
      [&answer, &latch, cause_prefix](const meshbus::Event& event) {
        if (!event.causation_id().starts_with(cause_prefix)) return;  // another request's answer
        answer.set(std::string(event.header("dlq-node").value_or("")),
                   std::string(event.header("dlq-id").value_or("")),
                   std::string(event.header("dlq-result").value_or("")));
        latch.finish(exit_code::ok);
      },
      subscribe_options);

  discover_peers(*node, discovery_wait(node_opts, flags.wait_ms), latch,
                 [&](const std::vector<meshbus::PeerInfo>& peers) {
                   return !peers_matching(peers, flags.node).empty();
                 });
  if (latch.finished()) return exit_code::ok;
  const auto target = resolve_node(node->peers(), flags.node, node->cluster());
  const auto label = target.id.short_string() + " (" + display_text(target.name) + ")";

  // Every node subscribes the request topic, so wait_for_subscribers() counts them all and
  // cannot single out the target: wait until every known peer, the target among them, is ready.
  const milliseconds timeout(flags.timeout_ms);
  const auto deadline = steady::now() + timeout;
  const bool ready = wait_interruptibly(latch, deadline, [&](milliseconds step) {
    const auto peers = node->peers();
    if (std::none_of(peers.begin(), peers.end(),
                     [&](const meshbus::PeerInfo& p) { return p.id == target.id; })) {
      latch.wait_until(steady::now() + step);  // it left: wait for it to come back
      return false;
    }
    return node->wait_for_subscribers(replay_request_topic, peers.size(), step);
  });
  if (latch.finished()) return exit_code::ok;
  if (!ready) {
    print_error("timed out after " + to_ms_text(timeout) + " waiting for node " + label +
                " to be ready for requests");
    return exit_code::timeout;
  }
  const auto sent = publish_retrying([&] { return node->request_dead_letter_replay(target.id, flags.id); },
                                     deadline, latch);
  if (sent == publish_outcome::published) latch.wait_until(deadline);
  const auto result = answer.get();
  node->stop();
  if (!result) {
    if (latch.finished()) return exit_code::ok;  // interrupted
    print_error("timed out after " + to_ms_text(timeout) + ": node " + label +
                (sent == publish_outcome::published ? " did not answer the replay request"
                                                    : " could not be sent the replay request"));
    return exit_code::timeout;
  }
  const auto& [node_hex, id_text, outcome] = *result;
  if (node_hex != target.id.to_string() || id_text != std::to_string(flags.id)) {
    print_error("node " + label + " answered for dead letter " + display_text(id_text) + " of node " +
                display_text(node_hex) + " instead");
    return exit_code::failure;
  }
  if (outcome == "replayed") {
    std::cout << "replayed dead letter " << flags.id << " on " << label << std::endl;
    return exit_code::ok;
  }
  if (outcome == "unknown") {
    print_error("no dead letter " + std::to_string(flags.id) + " on " + label);
    return exit_code::failure;
  }
  print_error("node " + label + " gave an unexpected answer: " + display_text(outcome));
  return exit_code::failure;
}

// ---------------------------------------------------------------------------
// Command line

constexpr const char* exit_codes_text =
    "Exit codes:\n"
    "  0  success (also after Ctrl-C / SIGTERM)\n"
    "  1  runtime failure (address in use, network, I/O; dlq replay: no such dead letter)\n"
    "  2  usage error (bad flags, invalid topic or pattern, unknown or ambiguous node)\n"
    "  3  timeout (--count, --expect or --subscribers not reached, pub's events not all\n"
    "     acknowledged, or no answer to dlq replay in time)\n";

std::string footer(std::string_view examples) {
  return "\nExamples:\n" + std::string(examples) + "\n" + exit_codes_text;
}

/// what() without the ": <category message>" that std::system_error appends.
std::string sentence_of(const std::system_error& e) {
  std::string_view text = e.what();
  const auto suffix = ": " + e.code().message();
  if (text.size() > suffix.size() && text.substr(text.size() - suffix.size()) == suffix) {
    text.remove_suffix(suffix.size());
  }
  return std::string(text);
}

int exit_code_for(const meshbus::error& e) {
  switch (e.code_value()) {
    case meshbus::errc::invalid_argument:
    case meshbus::errc::invalid_topic:
    case meshbus::errc::configuration: return exit_code::usage;
    case meshbus::errc::timeout: return exit_code::timeout;
    default: return exit_code::failure;
  }
}

/// Parses the command line and runs the chosen subcommand. Throws for failures main() reports.
int run(int argc, char** argv) {
  const auto positive = number_at_least(std::numeric_limits<double>::min(), "a positive number");
  const auto non_negative = number_at_least(0, "zero or more");
  CLI::App app{
      "meshbus: publish, subscribe to and inspect a meshbus cluster from the shell.\n"
      "Nodes find each other on loopback by default; choose a network with --interface.",
      "meshbus"};
  app.set_version_flag("--version", MESHBUS_VERSION);
  app.require_subcommand(1);
  app.footer(
      footer("  meshbus sub 'sensors.**'\n"
             "  seq 6000 | meshbus pub demo.lines\n"
             "  meshbus pub --interface eth0 sensors.s1.temp 21.5\n"
             "  meshbus peers --json\n"
             "  meshbus dlq list\n"));
  node_flags node_opts;
  add_node_flags(app, node_opts);

  peers_flags peers_opts;
  auto* peers_cmd = app.add_subcommand("peers", "List the live peers of the cluster");
  add_node_flags(*peers_cmd, node_opts);
  peers_cmd
      ->add_option("--wait", peers_opts.wait_ms, "How long to listen, in ms (default: 1.5 x beacon interval)")
      ->type_name("MS")
      ->check(non_negative);
  peers_cmd->add_option("--expect", peers_opts.expect, "Stop as soon as N peers joined; exit 3 if fewer do")
      ->type_name("N")
      ->check(positive);
  peers_cmd->add_flag("--json", peers_opts.json, "Print one JSON array of objects");
  peers_cmd->footer(
      footer("  meshbus peers\n"
             "  meshbus peers --cluster demo --expect 3 --wait 5000 --json\n"));

  sub_flags sub_opts;
  auto* sub_cmd = app.add_subcommand(
      "sub",
      "Print events as they arrive, one line each: <topic> <payload>. Events that will never arrive are\n"
      "reported on stderr: 'meshbus: lost N events of TOPIC from PUBLISHER (reason)'");
  add_node_flags(*sub_cmd, node_opts);
  sub_cmd
      ->add_option("patterns", sub_opts.patterns, "Topic patterns; '*' matches one segment, '**' any number")
      ->type_name("PATTERN...")
      ->required();
  sub_cmd->add_option("--count", sub_opts.count, "Exit 0 after N events")->type_name("N")->check(positive);
  sub_cmd
      ->add_option("--timeout", sub_opts.timeout_ms,
                   "Stop after MS ms: exit 3 if --count was not reached, else exit 0")
      ->type_name("MS")
      ->check(positive);
  sub_cmd->add_flag(
      "--json", sub_opts.json,
      "One JSON object per line: topic, payload (payload_base64 if not UTF-8), publisher, "
      "publisher_name, epoch, sequence, timestamp; lost events as {\"lost\":true, topic, publisher, "
      "epoch, from, to, count, reason, pattern}");
  sub_cmd->add_flag("--meta", sub_opts.meta, "Prefix each line with [publisher-id #sequence publisher-name]");
  sub_cmd
      ->add_option("--mode", sub_opts.mode,
                   "Delivery: best_effort (gaps skipped and reported), reliable (repaired; the default) or "
                   "acknowledged (each event acknowledged once printed)")
      ->type_name("MODE")
      ->check(CLI::IsMember({"best_effort", "reliable", "acknowledged"}));
  sub_cmd
      ->add_option("--start", sub_opts.start,
                   "Where to start on streams already running: now (the default), earliest (what the "
                   "publishers' history still holds) or sequence SEQ of each stream")
      ->type_name("now|earliest|SEQ")
      ->check(start_check());
  sub_cmd->footer(
      footer("  meshbus sub 'sensors.**'\n"
             "  meshbus sub --count 6000 --timeout 20000 'demo.*' > events.txt\n"
             "  meshbus sub --mode best_effort 'metrics.**'\n"
             "  meshbus sub --start earliest --json 'orders.*'\n"));

  pub_flags pub_opts;
  auto* pub_cmd = app.add_subcommand(
      "pub", "Publish PAYLOAD, or each line of stdin (until EOF) when PAYLOAD is left out");
  add_node_flags(*pub_cmd, node_opts);
  pub_cmd->add_option("topic", pub_opts.topic, "Topic to publish on (no wildcards)")
      ->type_name("TOPIC")
      ->required();
  auto* payload_opt =
      pub_cmd
          ->add_option("payload", pub_opts.payload, "Event payload; {n} is replaced by the 1-based counter")
          ->type_name("PAYLOAD");
  auto* count_opt = pub_cmd
                        ->add_option("--count", pub_opts.count,
                                     "Publish PAYLOAD N times (default 1); with stdin, at most N lines")
                        ->type_name("N")
                        ->check(positive);
  pub_cmd->add_option("--rate", pub_opts.rate, "Pace to R events per second")
      ->type_name("R")
      ->check(positive);
  pub_cmd
      ->add_option("--subscribers", pub_opts.subscribers,
                   "Wait (up to --timeout) for N ready subscribers first; exit 3 if they do not appear")
      ->type_name("N")
      ->check(positive);
  pub_cmd
      ->add_option("--wait", pub_opts.wait_ms,
                   "How long to wait for peers before publishing, in ms (default: 1.5 x beacon interval)")
      ->type_name("MS")
      ->check(non_negative);
  pub_cmd
      ->add_option("--timeout", pub_opts.timeout_ms,
                   "Bound in ms for subscriber readiness, a full send queue and the final flush, which waits "
                   "until every subscriber acknowledged every event (default 10000)")
      ->type_name("MS")
      ->check(positive);
  pub_cmd->footer(
      footer("  meshbus pub sensors.s1.temp 21.5\n"
             "  seq 6000 | meshbus pub demo.lines\n"
             "  meshbus pub --count 100 --rate 10 --subscribers 2 demo.ticks 'tick {n}'\n"
             "  meshbus pub --interface eth0 sensors.s1.temp 21.5\n"));

  auto* dlq_cmd =
      app.add_subcommand("dlq", "Inspect and replay dead letters (events whose handler kept failing)");
  add_node_flags(*dlq_cmd, node_opts);
  dlq_cmd->require_subcommand(1);
  dlq_cmd->footer(
      footer("  meshbus dlq list\n"
             "  meshbus dlq replay 1a2b3c4d 7\n"));

  dlq_list_flags dlq_list_opts;
  auto* dlq_list_cmd = dlq_cmd->add_subcommand(
      "list",
      "List the dead letters announced on '$dlq.<topic>' that the nodes' history still holds,\n"
      "one line each: NODE ID TOPIC ATTEMPTS REASON PAYLOAD (one replayed since is still listed)");
  add_node_flags(*dlq_list_cmd, node_opts);
  dlq_list_cmd
      ->add_option("--wait", dlq_list_opts.wait_ms,
                   "How long to listen for nodes, in ms (default: 1.5 x beacon interval); then until every "
                   "node's history arrived and nothing new came for 250 ms")
      ->type_name("MS")
      ->check(non_negative);
  dlq_list_cmd->add_flag("--json", dlq_list_opts.json, "Print one JSON array of objects");
  dlq_list_cmd->footer(
      footer("  meshbus dlq list\n"
             "  meshbus dlq list --cluster orders --wait 3000 --json\n"));

  dlq_replay_flags dlq_replay_opts;
  auto* dlq_replay_cmd = dlq_cmd->add_subcommand(
      "replay", "Ask node NODE to deliver its dead letter DLQ_ID again to the subscription that failed it");
  add_node_flags(*dlq_replay_cmd, node_opts);
  dlq_replay_cmd
      ->add_option("node", dlq_replay_opts.node,
                   "The node holding it: its id (32 hex digits) or a prefix unique among the known peers "
                   "(the NODE column of 'dlq list')")
      ->type_name("NODE")
      ->required()
      ->check(node_id_check());
  dlq_replay_cmd->add_option("id", dlq_replay_opts.id, "The dead letter's id on that node (the ID column)")
      ->type_name("DLQ_ID")
      ->required();
  dlq_replay_cmd
      ->add_option("--wait", dlq_replay_opts.wait_ms,
                   "How long to look for the node, in ms (default: 1.5 x beacon interval)")
      ->type_name("MS")
      ->check(non_negative);
  dlq_replay_cmd
      ->add_option("--timeout", dlq_replay_opts.timeout_ms,
                   "Bound in ms for the node to be ready and to answer (default 10000); exit 3 after it")
      ->type_name("MS")
      ->check(positive);
  dlq_replay_cmd->footer(
      footer("  meshbus dlq replay 1a2b3c4d 7\n"
             "  meshbus dlq replay --cluster orders 1a2b3c4d5e6f708192a3b4c5d6e7f809 7\n"));

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success))
      return app.exit(e);  // --help, --version
    const auto used = app.get_subcommands();
    if (used.empty() && argc > 1 && argv[1][0] != '-') {
      print_error(std::string("unknown command '") + argv[1] +
                  "' (commands: peers, sub, pub, dlq; see 'meshbus --help')");
      return exit_code::usage;
    }
    std::string command = "meshbus";  // with the (nested) subcommands given, for the hint
    for (auto chosen = used; !chosen.empty(); chosen = chosen.front()->get_subcommands()) {
      command += " " + chosen.front()->get_name();
    }
    print_error(std::string(e.what()) + " (see '" + command + " --help')");
    return exit_code::usage;
  }
  pub_opts.has_payload = payload_opt->count() > 0;
  pub_opts.count_given = count_opt->count() > 0;

  std::signal(SIGPIPE, SIG_IGN);  // a closed stdout shows up as EPIPE from write
  exit_latch latch;
  signal_watcher signals(latch);  // before any Node: its threads inherit the signal mask
  if (app.got_subcommand(peers_cmd)) return run_peers(node_opts, peers_opts, latch);
  if (app.got_subcommand(sub_cmd)) return run_sub(node_opts, sub_opts, latch);
  if (dlq_cmd->got_subcommand(dlq_list_cmd)) return run_dlq_list(node_opts, dlq_list_opts, latch);
  if (dlq_cmd->got_subcommand(dlq_replay_cmd)) return run_dlq_replay(node_opts, dlq_replay_opts, latch);
  return run_pub(node_opts, pub_opts, latch);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const usage_error& e) {
    print_error(e.what());
    return exit_code::usage;
  } catch (const meshbus::error& e) {
    print_error(sentence_of(e));
    return exit_code_for(e);
  } catch (const std::exception& e) {
    print_error(e.what());
    return exit_code::failure;
  } catch (...) {
    return exit_code::failure;
  }
}
