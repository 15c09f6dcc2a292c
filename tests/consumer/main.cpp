// Uses an installed meshbus: one node publishes to its own subscription.
#include <meshbus/meshbus.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>
#include <unistd.h>

int main() {
  meshbus::Options options;
  options.cluster = "consumer-" + std::to_string(getpid());
  meshbus::Node node(options);
  std::mutex mu;
  std::condition_variable cv;
  std::string got;
  node.subscribe("consumer.*", [&](const meshbus::Event& e) {
    std::lock_guard lock(mu);
    got = std::string(e.topic()) + " " + std::string(e.text());
    cv.notify_all();
  });
  if (node.publish("consumer.check", "works") != meshbus::PublishResult::ok) return 1;
  std::unique_lock lock(mu);
  if (!cv.wait_for(lock, std::chrono::seconds(10), [&] { return !got.empty(); })) return 1;
  std::printf("%s\n", got.c_str());
  return got == "consumer.check works" ? 0 : 1;
}
