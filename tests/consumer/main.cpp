// Uses an installed meshbus: one node publishes to its own subscription, and a typed
// event drives a saga (typed.cpp).
#include <meshbus/meshbus.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>
#include <unistd.h>

bool typed_flow_completes(meshbus::Node& node);

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
  if (got != "consumer.check works") return 1;
  lock.unlock();
  if (!typed_flow_completes(node)) return 1;
  std::printf("typed saga flow completed\n");
  return 0;
}
