// A node of a flow with causation, for multi-process tests of `meshbus trace`: for
// each event on --on TOPIC its handler publishes one event on each topic of --then
// (comma-separated), so they carry the handled event's flow (correlation id) and name it
// as their cause; --start TOPIC publishes the flow's first event once --peers peers have
// joined and one of them subscribes to TOPIC. --stall TOPIC subscribes to TOPIC with a
// handler that does not return until SIGTERM, and publishes one event there: with the one
// handler thread held, the node stays in the mesh but answers nothing. Subscriptions
// start at the earliest event each publisher holds, so start order does not matter.
// Prints "node <id> epoch <epoch>", "published <topic> id=<event id>" for every event it
// publishes (each the first of its stream, so its default id is known), and runs until
// SIGTERM.
#include <csignal>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/procs/proc_args.hpp"

using namespace std::chrono_literals;
using namespace meshbus;

namespace {

std::atomic<bool> terminated{false};
void on_term(int) {
  terminated = true;
}

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < text.size()) {
    auto end = text.find(',', start);
    if (end == std::string::npos) end = text.size();
    if (end > start) out.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

/// Publishes and prints what it published with its default id ("<node>-<epoch>-<sequence>").
class publisher {
 public:
  explicit publisher(Node& node) : node_(node) {}
  void publish(const std::string& topic, const std::string& text) {
    std::lock_guard lock(mu_);
    while (node_.publish(topic, text) != PublishResult::ok) {
    }
    const auto seq = ++sequences_[topic];
    std::printf("published %s id=%s-%llu-%llu\n", topic.c_str(), node_.id().to_string().c_str(),
                static_cast<unsigned long long>(node_.epoch()), static_cast<unsigned long long>(seq));
    std::fflush(stdout);
  }

 private:
  Node& node_;
  std::mutex mu_;
  std::map<std::string, std::uint64_t> sequences_;
};

}  // namespace

int main(int argc, char** argv) {
  const test::proc_args args(argc, argv);
  std::signal(SIGTERM, on_term);
  try {
    Node node(args.node_options("flow"));
    std::printf("node %s epoch %llu\n", node.id().to_string().c_str(),
                static_cast<unsigned long long>(node.epoch()));
    std::fflush(stdout);
    publisher out(node);
    SubscribeOptions from_start;
    from_start.start = StartFrom::earliest();
    if (const auto on = args.text("--on"); !on.empty()) {
      const auto then = split(args.text("--then"));
      node.subscribe(
          on,
          [&out, then](const Event& e) {
            for (const auto& topic : then) out.publish(topic, "after " + std::string(e.topic()));
          },
          from_start);
    }
    if (const auto stall = args.text("--stall"); !stall.empty()) {
      node.subscribe(stall, [](const Event&) {
        while (!terminated) std::this_thread::sleep_for(10ms);
      });
      out.publish(stall, "hold the handler thread");
    }
    if (const auto start = args.text("--start"); !start.empty()) {
      const auto peers = args.number("--peers", 1);
      if (!node.wait_for_peers(peers, 30s) || !node.wait_for_subscribers(start, 1, 30s)) {
        std::fprintf(stderr, "flow_node: no peers or no subscriber of %s\n", start.c_str());
        return 3;
      }
      out.publish(start, "the first event");
    }
    while (!terminated) std::this_thread::sleep_for(10ms);
    node.stop();
    return 0;
  } catch (const error& e) {
    std::fprintf(stderr, "flow_node: %s\n", e.what());
    return 3;
  }
}
