// Command-line parsing shared by the test programs: "--key value" pairs into a map,
// with typed getters that fail loudly (exit 2) on a bad value.
#pragma once

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>

#include <meshbus/meshbus.hpp>

namespace meshbus::test {

class proc_args {
 public:
  proc_args(int argc, char** argv) {
    for (int i = 1; i + 1 < argc; i += 2) values_[argv[i]] = argv[i + 1];
    if (argc % 2 == 0) fail(std::string("option without a value: ") + argv[argc - 1]);
  }
  std::string text(const std::string& key, const std::string& fallback = "") const {
    auto it = values_.find(key);
    return it == values_.end() ? fallback : it->second;
  }
  std::uint64_t number(const std::string& key, std::uint64_t fallback) const {
    auto it = values_.find(key);
    if (it == values_.end()) return fallback;
    char* end = nullptr;
    const auto v = std::strtoull(it->second.c_str(), &end, 10);
    if (end == nullptr || *end != '\0') fail("not a number: " + key + " " + it->second);
    return v;
  }
  /// Node options common to every test program.
  Options node_options(const std::string& default_name) const {
    Options o;
    o.name = text("--name", default_name);
    o.cluster = text("--cluster", "test");
    o.interface = text("--interface");
    // "--defaults 1": the library's own timing (beacon, expiry, linger), as users run
    // it; otherwise the tests' quicker settings, each overridable.
    const bool defaults = number("--defaults", 0) != 0;
    if (!defaults || values_.count("--beacon-ms") != 0) {
      o.beacon_interval = std::chrono::milliseconds(number("--beacon-ms", 200));
    }
    if (!defaults || values_.count("--expiry-ms") != 0) {
      o.peer_expiry = std::chrono::milliseconds(number("--expiry-ms", 2000));
    }
    o.router_port = static_cast<std::uint16_t>(number("--port", 0));
    if (const auto seeds = text("--seeds"); !seeds.empty()) o.seeds = {seeds};
    if (const auto id = text("--node-id"); !id.empty()) o.node_id = NodeId::parse(id);
    o.window_events = number("--window", o.window_events);
    o.history_events = number("--history", o.history_events);
    o.send_queue_bytes = number("--send-queue-kb", o.send_queue_bytes >> 10) << 10;
    o.data_dir = text("--data-dir");
    if (const auto d = text("--durability"); d == "interval") o.durability = Durability::interval;
    if (const auto d = text("--durability"); d == "none") o.durability = Durability::none;
    if (!defaults || values_.count("--linger-ms") != 0) {
      o.linger = std::chrono::milliseconds(number("--linger-ms", 2000));
    }
    return o;
  }

  [[noreturn]] static void fail(const std::string& what) {
    std::fprintf(stderr, "test program: %s\n", what.c_str());
    std::exit(2);
  }

 private:
  std::map<std::string, std::string> values_;
};

/// Resident memory of this process, in KiB (VmRSS).
inline std::uint64_t rss_kib() {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) return 0;
  char line[256];
  std::uint64_t kib = 0;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    if (std::sscanf(line, "VmRSS: %lu kB", &kib) == 1) break;
  }
  std::fclose(f);
  return kib;
}

}  // namespace meshbus::test
