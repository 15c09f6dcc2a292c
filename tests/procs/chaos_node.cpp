// One node of the randomized fault schedule (tests/chaos/chaos.py): a publisher of
// numbered events on one or more topics, a subscriber in one delivery mode, or a
// member of a service group, which records every fact the checker needs to a file.
//
// Every record line is one write(2) on a file opened with O_APPEND, so a SIGKILL loses
// at most the line being written and lines of different threads never interleave.
// The last field of every line is the time it was written (CLOCK_MONOTONIC, ms), the
// clock the driver uses for its schedule:
//   node <node_id> <epoch> <role> <t>
//   ready <yes|no> <t>                                  publisher: wait_for_subscribers
//   pub <topic> <seq> <t>                               publish() returned ok
//   recv <publisher_id> <epoch> <topic> <seq> <payload_ok 0|1> <t>
//   loss <publisher_id> <epoch> <topic> <from> <to> <gap|not_in_history|publisher_gone> <t>
//   peer <joined|suspect|alive_again|left> <node_id> <epoch> <t>
//   stopped-publishing <t>                              publisher, after SIGUSR1
//   flushed <ms after stopping> <t>                     publisher: flush() completed
//   stat <name> <value>                                 every Stats field, on SIGTERM
//   end <t>                                             clean exit (SIGTERM)
// A publisher publishes until SIGUSR1, then flushes (again and again, until it
// completes) and stays up, serving repairs, until SIGTERM.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <string>
#include <thread>
#include <vector>

#include "tests/procs/proc_args.hpp"

using namespace std::chrono_literals;
using namespace meshbus;

namespace {
std::atomic<bool> terminated{false};
std::atomic<bool> stop_publishing{false};
void on_term(int) { terminated = true; }
void on_usr1(int) { stop_publishing = true; }

std::uint64_t monotonic_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000 + static_cast<std::uint64_t>(ts.tv_nsec) / 1'000'000;
}

/// The record file: one write(2) per line.
class record {
 public:
  explicit record(const std::string& path) : fd_(::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) {
    if (fd_ < 0) test::proc_args::fail("cannot open the record file " + path);
  }
  ~record() { ::close(fd_); }
  record(const record&) = delete;
  record& operator=(const record&) = delete;

  /// Writes `line` with the time appended.
  void line(std::string line) const {
    line += ' ';
    line += std::to_string(monotonic_ms());
    line += '\n';
    const char* p = line.data();
    std::size_t left = line.size();
    while (left > 0) {
      const auto n = ::write(fd_, p, left);
      if (n < 0) {
        if (errno == EINTR) continue;
        return;
      }
      p += n;
      left -= static_cast<std::size_t>(n);
    }
  }
  /// A line without a time (stats).
  void raw(const std::string& line) const {
    const std::string l = line + '\n';
    [[maybe_unused]] const auto n = ::write(fd_, l.data(), l.size());
  }

 private:
  int fd_;
};

const char* reason_token(LossNotice::Reason r) {
  switch (r) {
    case LossNotice::Reason::gap: return "gap";
    case LossNotice::Reason::not_in_history: return "not_in_history";
    case LossNotice::Reason::publisher_gone: return "publisher_gone";
  }
  return "unknown";
}

std::vector<std::string> split(const std::string& list) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= list.size()) {
    const auto comma = list.find(',', start);
    const auto end = comma == std::string::npos ? list.size() : comma;
    if (end > start) out.push_back(list.substr(start, end - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}
}  // namespace

int main(int argc, char** argv) {
  const test::proc_args args(argc, argv);
  std::signal(SIGTERM, on_term);
  std::signal(SIGUSR1, on_usr1);
  const auto record_path = args.text("--record");
  if (record_path.empty()) test::proc_args::fail("--record PATH is required");
  const auto topics = split(args.text("--publish"));
  const auto pattern = args.text("--subscribe");
  const auto rate = args.number("--rate", 100);  // events per second per topic
  const auto wait_subscribers = args.number("--wait-subscribers", 0);
  const auto wait_timeout = std::chrono::milliseconds(args.number("--wait-ms", 10000));
  const auto mode = args.text("--mode", "reliable");
  SubscribeOptions so;
  so.delivery = mode == "acknowledged" ? Delivery::acknowledged
                : mode == "best_effort" ? Delivery::best_effort
                                        : Delivery::reliable;
  so.group = args.text("--group");
  const std::string role = !topics.empty() ? "publisher"
                           : !so.group.empty() ? "group:" + so.group
                                               : "subscriber:" + mode;

  const record rec(record_path);
  try {
    Node node(args.node_options("chaos"));
    rec.line("node " + node.id().to_string() + " " + std::to_string(node.epoch()) + " " + role);
    node.on_peer([&](const PeerEvent& p) {
      const char* kind = p.kind == PeerEvent::Kind::joined        ? "joined"
                         : p.kind == PeerEvent::Kind::suspect     ? "suspect"
                         : p.kind == PeerEvent::Kind::alive_again ? "alive_again"
                                                                  : "left";
      rec.line(std::string("peer ") + kind + " " + p.peer.id.to_string() + " " + std::to_string(p.peer.epoch));
    });
    if (!pattern.empty()) {
      node.on_loss([&](const LossNotice& n) {
        rec.line("loss " + n.publisher.to_string() + " " + std::to_string(n.epoch) + " " + n.topic + " " +
                 std::to_string(n.from) + " " + std::to_string(n.to) + " " + reason_token(n.reason));
      });
      node.subscribe(pattern, [&](const Event& e) {
        const auto seq = std::to_string(e.sequence());
        rec.line("recv " + e.publisher().to_string() + " " + std::to_string(e.epoch()) + " " + std::string(e.topic()) +
                 " " + seq + " " + (e.text() == seq ? "1" : "0"));
      }, so);
    }
    if (!topics.empty()) {
      bool ready = true;
      for (const auto& t : topics) {
        ready = node.wait_for_subscribers(t, wait_subscribers, wait_timeout) && ready;
      }
      rec.line(std::string("ready ") + (ready ? "yes" : "no"));
      const auto start = std::chrono::steady_clock::now();
      std::vector<std::uint64_t> seq(topics.size(), 0);
      for (std::uint64_t i = 1; !stop_publishing && !terminated; ++i) {
        // After a pause (SIGSTOP) this catches up in a burst: the schedule is by the clock.
        std::this_thread::sleep_until(start + std::chrono::microseconds(i * 1'000'000 / rate));
        for (std::size_t k = 0; k < topics.size() && !stop_publishing && !terminated; ++k) {
          const auto payload = std::to_string(seq[k] + 1);
          if (node.publish(topics[k], payload) != PublishResult::ok) continue;  // not queued: same number next time
          ++seq[k];
          rec.line("pub " + topics[k] + " " + payload);
        }
      }
      // flush() until it completes: an event no subscriber acknowledged keeps it from
      // completing, and a redelivery may come only after a back-off of up to 30 s.
      rec.line("stopped-publishing");
      const auto stopped_at = std::chrono::steady_clock::now();
      while (!terminated) {
        // A flush that completes because SIGTERM stopped the subscribers does not count.
        if (node.flush(1000ms) && !terminated) {
          rec.line("flushed " + std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                    std::chrono::steady_clock::now() - stopped_at).count()));
          break;
        }
      }
    }
    while (!terminated) std::this_thread::sleep_for(20ms);
    const auto st = node.stats();
    node.stop();
    std::string summary;
    for_each_stat(st, [&](const StatInfo& info, std::uint64_t value) {
      rec.raw("stat " + std::string(info.name) + " " + std::to_string(value));
      if (value != 0) summary += (summary.empty() ? "" : " ") + std::string(info.name) + "=" + std::to_string(value);
    });
    std::printf("%s %s: %s\n", role.c_str(), node.id().short_string().c_str(), summary.c_str());
    std::fflush(stdout);
    rec.line("end");
    return 0;
  } catch (const error& e) {
    std::fprintf(stderr, "chaos_node: %s\n", e.what());
    rec.line(std::string("error ") + e.what());
    return 3;
  }
}
