// A test publisher: N numbered events ("1", "2", ... padded to --size bytes) on one
// topic, at a rate or as fast as flow control allows, after waiting for K ready
// subscribers; then flush() and a JSON summary with what it cost (peak memory,
// window waits) and what flush() reported. Prints "progress N" every 1000 events.
// With --flush-every K it flushes after every K events and prints "flushed N" (N events
// published so far) once flush() returned true. Exit 0 when flushed.
#include <atomic>
#include <cstdio>
#include <string>
#include <thread>

#include "tests/procs/proc_args.hpp"

using namespace std::chrono_literals;
using namespace meshbus;

int main(int argc, char** argv) {
  const test::proc_args args(argc, argv);
  const auto topic = args.text("--topic", "stream.data");
  const auto count = args.number("--count", 10000);
  const auto rate = args.number("--rate", 0);
  const auto size = args.number("--size", 0);
  const auto subscribers = args.number("--subscribers", 1);
  const auto timeout = std::chrono::milliseconds(args.number("--timeout-ms", 60000));
  const auto flush_every = args.number("--flush-every", 0);
  try {
    Node node(args.node_options("pub"));
    std::atomic<bool> sampling{true};
    std::atomic<std::uint64_t> peak{test::rss_kib()};
    std::thread sampler([&] {
      while (sampling) {
        const auto now = test::rss_kib();
        if (now > peak) peak = now;
        std::this_thread::sleep_for(5ms);
      }
    });
    const bool ready = node.wait_for_subscribers(topic, subscribers, timeout);
    std::printf("ready %s\n", ready ? "yes" : "no");
    std::fflush(stdout);
    const auto start = std::chrono::steady_clock::now();
    std::uint64_t published = 0;
    std::string payload;
    for (std::uint64_t i = 1; ready && i <= count; ++i) {
      if (rate > 0) {
        std::this_thread::sleep_until(start + std::chrono::microseconds(i * 1'000'000 / rate));
      }
      payload = std::to_string(i);
      if (payload.size() < size) payload.resize(size, '.');
      while (node.publish(topic, payload) != PublishResult::ok) {
      }
      ++published;
      if (flush_every != 0 && published % flush_every == 0 && node.flush(timeout)) {
        std::printf("flushed %llu\n", static_cast<unsigned long long>(published));
        std::fflush(stdout);
      }
      if (published % 1000 == 0) {
        std::printf("progress %llu\n", static_cast<unsigned long long>(published));
        std::fflush(stdout);
      }
    }
    // flush() reports a subscriber that went away for good without acknowledging
    // everything (flushed false, and it names it).
    const auto flush = ready ? node.flush(timeout) : FlushResult{};
    const bool flushed = flush.flushed;
    const auto st = node.stats();
    sampling = false;
    sampler.join();
    node.stop();
    std::printf(
        "{\"published\":%llu,\"flushed\":%s,\"peak_rss_kib\":%llu,\"window_waits\":%llu,\"unacknowledged\":%zu,"
        "\"history_events\":%zu,\"repairs_sent\":%llu,\"redeliveries\":%llu,\"flush_report\":\"%s\"}\n",
        static_cast<unsigned long long>(published), flushed ? "true" : "false",
        static_cast<unsigned long long>(peak.load()), static_cast<unsigned long long>(st.window_waits),
        st.unacknowledged_events, st.history_events, static_cast<unsigned long long>(st.repairs_sent),
        static_cast<unsigned long long>(st.redeliveries), flush.describe().c_str());
    std::fflush(stdout);
    return flushed ? 0 : 1;
  } catch (const error& e) {
    std::fprintf(stderr, "stream_pub: %s\n", e.what());
    return 3;
  }
}
