// Test support: Options for fast, isolated test clusters, and a thread-safe event log.
#pragma once

#include <meshbus/meshbus.hpp>

#include <unistd.h>

#include <condition_variable>
#include <filesystem>
#include <random>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/process.hpp"

namespace meshbus::test {

/// Loopback (the default), a cluster of its own, short beacon interval and expiry.
inline Options fast_options(const std::string& cluster, const std::string& name) {
  Options o;
  o.cluster = cluster;
  o.name = name;
  o.beacon_interval = std::chrono::milliseconds(100);
  o.peer_expiry = std::chrono::milliseconds(1000);
  o.use_environment = false;
  return o;
}

/// Polls `condition` until it holds or `timeout` passes; true if it held.
template <typename Condition>
bool eventually(Condition condition, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

/// The non-zero statistics of a node, "name=value ...", for failure messages.
inline std::string nonzero_stats(const Node& node) {
  std::string out;
  for_each_stat(node.stats(), [&](const StatInfo& info, std::uint64_t value) {
    if (value == 0) return;
    out += std::string(info.name) + "=" + std::to_string(value) + " ";
  });
  return out;
}

/// A fresh directory under the system's temporary directory, removed with
/// everything in it when this goes out of scope.
struct temp_dir {
  std::filesystem::path path;
  explicit temp_dir(const std::string& prefix = "meshbus") {
    std::random_device rd;
    path = std::filesystem::temp_directory_path() /
           (prefix + "-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
    std::filesystem::create_directories(path);
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  std::string str() const { return path.string(); }
};

struct received_event {
  std::string topic;
  std::string payload;
  NodeId publisher;
  std::uint64_t sequence = 0;
};

/// Collects events from handlers; waits for counts with a deadline.
class event_log {
 public:
  Handler handler() {
    return [this](const Event& e) {
      std::lock_guard lock(mu_);
      events_.push_back({std::string(e.topic()), std::string(e.text()), e.publisher(), e.sequence()});
      cv_.notify_all();
    };
  }
  bool wait_for(std::size_t n, std::chrono::milliseconds timeout = std::chrono::milliseconds(10000)) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return events_.size() >= n; });
  }
  std::vector<received_event> events() const {
    std::lock_guard lock(mu_);
    return events_;
  }
  std::size_t size() const {
    std::lock_guard lock(mu_);
    return events_.size();
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<received_event> events_;
};

}  // namespace meshbus::test
