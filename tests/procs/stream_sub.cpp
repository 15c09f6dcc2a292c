// A test subscriber: checks that every stream (publisher, epoch, topic) arrives in
// order with payloads matching sequence numbers, optionally slowly (--sleep-us per
// event), records loss notices (and prints "loss E FROM TO REASON" for each; an
// open-ended one has TO = 18446744073709551615), and prints "progress N" every 1000
// events and "epoch-complete E N" when an epoch's stream reached --expect-per-epoch. With
// --group G it is a member of service group G (a stream's events are then shared
// with the other members, so order is not checked) and --print-ids 1 prints
// "handled <sequence>" for every event it handled. Ends when --expect events
// arrived, on SIGTERM, or at --timeout-ms, with a JSON summary. With --durable NAME
// (and --data-dir) it is a durable subscription; --record FILE appends each handled
// sequence to FILE (one write per event, so a SIGKILL loses none of them) and it
// prints "durable-redeliveries N" whenever that counter grew, before recording.
#include <fcntl.h>
#include <unistd.h>

#include <csignal>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "tests/procs/proc_args.hpp"

using namespace std::chrono_literals;
using namespace meshbus;

namespace {
std::atomic<bool> terminated{false};
void on_term(int) { terminated = true; }

struct stream_state {
  std::uint64_t first = 0;
  std::uint64_t last = 0;            // the last sequence delivered or announced lost
  std::uint64_t last_delivered = 0;  // the last sequence delivered
  std::uint64_t count = 0;
};
}  // namespace

int main(int argc, char** argv) {
  const test::proc_args args(argc, argv);
  std::signal(SIGTERM, on_term);
  const auto pattern = args.text("--pattern", "stream.**");
  const auto expect = args.number("--expect", 0);
  const auto per_epoch = args.number("--expect-per-epoch", 0);
  const auto sleep_us = args.number("--sleep-us", 0);
  const auto timeout = std::chrono::milliseconds(args.number("--timeout-ms", 60000));
  SubscribeOptions so;
  const auto mode = args.text("--mode", "reliable");
  so.delivery = mode == "acknowledged" ? Delivery::acknowledged
                : mode == "best_effort" ? Delivery::best_effort
                                        : Delivery::reliable;
  so.group = args.text("--group");
  const bool print_ids = args.number("--print-ids", 0) != 0;
  so.durable_name = args.text("--durable");
  const auto record_path = args.text("--record");
  const int record_fd = record_path.empty() ? -1 : ::open(record_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  std::uint64_t redeliveries_seen = 0;
  const auto start = args.text("--start", "now");
  so.start = start == "earliest" ? StartFrom::earliest()
             : start == "now"    ? StartFrom::now()
                                 : StartFrom::at(std::stoull(start));

  std::mutex mu;
  std::condition_variable cv;
  std::map<std::string, stream_state> streams;  // "<publisher>/<epoch>/<topic>"
  std::map<std::uint64_t, bool> epochs;
  std::uint64_t total = 0;
  std::uint64_t out_of_order = 0;
  std::string first_jump = "null";  // the first event out of order, to say where it went wrong
  std::string losses;
  try {
    Node node(args.node_options("sub"));
    node.on_loss([&](const LossNotice& n) {
      std::lock_guard lock(mu);
      const auto key = n.publisher.to_string() + "/" + std::to_string(n.epoch) + "/" + n.topic;
      losses += (losses.empty() ? "" : ",") + std::string("{\"epoch\":") + std::to_string(n.epoch) +
                ",\"from\":" + std::to_string(n.from) + ",\"to\":" + std::to_string(n.to) + ",\"reason\":\"" +
                to_string(n.reason) + "\",\"stream\":\"" + key + "\"}";
      std::printf("loss %llu %llu %llu %s\n", static_cast<unsigned long long>(n.epoch),
                  static_cast<unsigned long long>(n.from), static_cast<unsigned long long>(n.to), to_string(n.reason));
      std::fflush(stdout);
      // A loss is a jump the order check must accept.
      auto& s = streams[key];
      if (s.last + 1 == n.from || s.count == 0) s.last = n.to;
    });
    node.subscribe(pattern, [&](const Event& e) {
      if (sleep_us > 0) std::this_thread::sleep_for(std::chrono::microseconds(sleep_us));
      if (record_fd >= 0) {
        // Counted when the batch was handed over, so before this handler runs.
        if (const auto r = node.stats().durable_redeliveries; r != redeliveries_seen) {
          redeliveries_seen = r;
          std::printf("durable-redeliveries %llu\n", static_cast<unsigned long long>(r));
          std::fflush(stdout);
        }
        const auto line = std::to_string(e.sequence()) + "\n";
        if (::write(record_fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) std::abort();
      }
      const std::string text(e.text());
      const auto value = std::stoull(text.substr(0, text.find('.')));
      std::lock_guard lock(mu);
      auto& s = streams[e.publisher().to_string() + "/" + std::to_string(e.epoch()) + "/" + std::string(e.topic())];
      const bool first_of_stream = s.count == 0 && s.last == 0;
      const bool in_order = so.group.empty() ? first_of_stream || e.sequence() == s.last + 1 : true;
      if (!in_order || value != e.sequence()) {
        if (out_of_order == 0) {
          first_jump = "{\"epoch\":" + std::to_string(e.epoch()) + ",\"expected\":" + std::to_string(s.last + 1) +
                       ",\"got\":" + std::to_string(e.sequence()) + ",\"value\":" + std::to_string(value) + "}";
        }
        ++out_of_order;
      }
      if (print_ids) std::printf("handled %llu\n", static_cast<unsigned long long>(e.sequence()));
      if (first_of_stream) s.first = e.sequence();
      s.last = e.sequence();
      s.last_delivered = e.sequence();
      ++s.count;
      ++total;
      if (!epochs.count(e.epoch())) epochs[e.epoch()] = false;
      if (per_epoch != 0 && s.count == per_epoch && !epochs[e.epoch()]) {
        epochs[e.epoch()] = true;
        std::printf("epoch-complete %llu %llu\n", static_cast<unsigned long long>(e.epoch()),
                    static_cast<unsigned long long>(s.count));
        std::fflush(stdout);
      }
      if (total % 1000 == 0) std::printf("progress %llu\n", static_cast<unsigned long long>(total));
      if (print_ids || total % 1000 == 0) std::fflush(stdout);
      cv.notify_all();
    }, so);
    std::printf("subscribed\n");
    std::fflush(stdout);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    {
      std::unique_lock lock(mu);
      while (!terminated && std::chrono::steady_clock::now() < deadline && (expect == 0 || total < expect)) {
        cv.wait_for(lock, 20ms);
      }
    }
    const auto st = node.stats();
    node.stop();
    std::lock_guard lock(mu);
    std::string per_stream;
    for (const auto& [key, s] : streams) {
      per_stream += (per_stream.empty() ? "" : ",") + std::string("{\"stream\":\"") + key +
                    "\",\"first\":" + std::to_string(s.first) + ",\"last\":" + std::to_string(s.last) +
                    ",\"count\":" + std::to_string(s.count) +
                    ",\"last_delivered\":" + std::to_string(s.last_delivered) + "}";
    }
    std::printf(
        "{\"received\":%llu,\"out_of_order\":%llu,\"first_jump\":%s,\"epochs\":%zu,\"events_lost\":%llu,\"duplicates\":%llu,"
        "\"nacks_sent\":%llu,\"repairs_received\":%llu,\"handler_errors\":%llu,\"rejected\":%llu,"
        "\"losses\":[%s],\"streams\":[%s]}\n",
        static_cast<unsigned long long>(total), static_cast<unsigned long long>(out_of_order), first_jump.c_str(),
        epochs.size(),
        static_cast<unsigned long long>(st.events_lost), static_cast<unsigned long long>(st.duplicates_dropped),
        static_cast<unsigned long long>(st.nacks_sent), static_cast<unsigned long long>(st.repairs_received),
        static_cast<unsigned long long>(st.handler_errors), static_cast<unsigned long long>(st.rejected_sequences),
        losses.c_str(), per_stream.c_str());
    std::fflush(stdout);
    return expect == 0 || total >= expect ? 0 : 1;
  } catch (const error& e) {
    std::fprintf(stderr, "stream_sub: %s\n", e.what());
    return 3;
  }
}
