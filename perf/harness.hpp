// What every meshbus-perf run shares: the modes, the run spec, one clock for both
// processes, the child process (this program re-executed with a hidden subcommand) and
// the line protocol on its stdin and stdout, node options and counters for --verbose.
//
// Lines from the child: "ready [text]" (set up), "warm" (raw throughput only: a warm-up
// message arrived), "result <fields...> [key=value...]" or "error <text>". Lines to it:
// "go" (throughput: t0 is about to be taken), "done" (latency: the last round trip is over).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <zmq.hpp>

#include "meshbus/meshbus.hpp"
#include "support/child_process.hpp"

namespace meshbus_perf {

using namespace std::chrono_literals;
using std::chrono::milliseconds;

constexpr std::string_view data_topic = "perf.data";
constexpr std::string_view ping_topic = "perf.ping";
constexpr std::string_view pong_topic = "perf.pong";
constexpr std::string_view echo_service = "perf.echo";  // latency --mode request
// Hidden subcommands: the child halves of throughput, latency and latency --mode request.
constexpr std::string_view subscriber_command = "_subscriber";
constexpr std::string_view echoer_command = "_echoer";
constexpr std::string_view replier_command = "_replier";

// throughput: first byte of every event: measured, or a raw ZeroMQ warm-up (slow joiner).
constexpr char measured_marker = 'M';
constexpr char warmup_marker = 'W';

constexpr auto idle_timeout = 3s;      // subscriber: nothing new for this long ends a run
constexpr auto setup_timeout = 10s;    // child start-up, warm-up, wait_for_subscribers, instances()
constexpr auto go_timeout = 120s;      // subscriber waiting for the publisher's "go"
constexpr auto report_timeout = 600s;  // driver waiting for the child's result
constexpr auto exit_timeout = 10s;     // child exit after its result (meshbus stop() lingers)
constexpr auto echo_timeout = 10s;     // latency: no echo (reply) for this long fails the run

constexpr std::size_t max_size = std::size_t{8} << 20;
constexpr std::uint64_t bytes_per_run = 200'000'000;
constexpr std::uint64_t min_default_count = 20'000;
constexpr std::uint64_t max_default_count = 5'000'000;
constexpr std::uint64_t default_latency_count = 20'000;
constexpr std::uint64_t default_latency_warmup = 1'000;
constexpr unsigned max_handler_threads = 64;

/// What meshbus is asked to do; both processes receive the mode. best_effort, reliable
/// and acknowledged: events of bytes, subscribed with that delivery (throughput and
/// latency); typed: typed events, reliable (throughput); request: request/reply
/// (latency).
/// durable (throughput only): a reliable subscription of a publisher with a data
/// directory (Durability::always), measured beside raw ZeroMQ and beside reliable.
enum class run_mode : std::uint8_t { best_effort, reliable, acknowledged, typed, request, durable };

constexpr run_mode all_modes[] = {run_mode::best_effort, run_mode::reliable, run_mode::acknowledged,
                                  run_mode::typed, run_mode::request, run_mode::durable};

const char* to_string(run_mode m) noexcept;
std::optional<run_mode> parse_mode(std::string_view text);
/// The delivery of the mode's subscriptions (typed: the library default, reliable;
/// request subscribes to nothing).
meshbus::SubscribeOptions subscribe_options(run_mode m);

/// latency --mode request: how meshbus's requester waits for a reply.
enum class request_api : std::uint8_t {
  future,    ///< request(...).get() on the measuring thread
  callback,  ///< request_async(...): the completion sends the next request
};

/// What one measured run is asked to do; the child process gets all of it.
struct run_spec {
  std::size_t size = 0;      ///< payload bytes (typed: of the encoded event)
  std::uint64_t count = 0;   ///< throughput: events; latency: measured round trips
  std::uint64_t warmup = 0;  ///< latency: untimed round trips first
  run_mode mode = run_mode::reliable;
  unsigned handler_threads = 1;  ///< meshbus Options::handler_threads of both nodes
  request_api api = request_api::future;  ///< latency --mode request; driver only
  std::size_t requested_size = 0;  ///< --size (typed: `size` is the nearest encodable); driver only
};

/// Which side of a row a run measures.
enum class transport : std::uint8_t { raw, meshbus };

/// A run that could not complete; what() says why.
class run_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// CLOCK_MONOTONIC in ns: one clock for every process on this host.
std::int64_t monotonic_ns() noexcept;
double seconds_between(std::int64_t from_ns, std::int64_t to_ns) noexcept;
/// CPU time (user + system, all threads) this process has used, in milliseconds.
double process_cpu_ms() noexcept;
/// "cpu_ms=<CPU time since `since_ms`>", for the --verbose details.
std::string cpu_field(double since_ms);
/// `a` and `b` separated by a space (either may be empty).
std::string joined(std::string a, std::string_view b);
bool parse_uint(std::string_view text, std::uint64_t& out);
std::vector<std::string_view> split(std::string_view text, char sep);

/// Writes `text` (newlines made spaces) and a newline; false when the reader is gone.
bool write_line(int fd, std::string_view text);
/// Child side: waits for the line `word` from the driver on stdin. False when the
/// driver is gone, sent something else or said nothing for `timeout`.
bool await_driver(std::string_view word, milliseconds timeout);

/// The other half of a run, from the driver's side: this program (/proc/self/exe) with a
/// hidden subcommand. We write commands to its stdin and read its reports from its stdout;
/// its stderr is ours. Killed (this child alone, by pid) if still running when destroyed;
/// it also gets SIGKILL should we die first.
class perf_child {
 public:
  perf_child(std::string_view command, const std::vector<std::string>& args);

  void send(std::string_view line);
  meshbus::support::line_reader::status poll_line(std::string& line, milliseconds timeout) {
    return reader_.read_line(line, timeout);
  }
  /// Reads the next line, which must start with `word`; returns the rest of it.
  std::string expect(std::string_view word, milliseconds timeout);
  /// `line` without its leading `word`; a child's "error" line becomes a run_error.
  static std::string rest_of(const std::string& line, std::string_view word);
  /// Waits for the child to exit; kills it after `timeout`. Returns its exit status.
  int wait_exit(milliseconds timeout);

 private:
  meshbus::support::child_process process_;
  meshbus::support::line_reader reader_;
};

/// Starts the child half of a run: `command`, the spec, the transport's own arguments.
std::unique_ptr<perf_child> start_child(std::string_view command, const char* transport, const run_spec& spec,
                                        std::vector<std::string> extra);

/// What the child halves are given (see start_child()).
struct child_config {
  std::string transport;
  std::string endpoint;  ///< raw: the driver's PUB socket
  std::string cluster;   ///< meshbus
  run_spec spec;
};

/// The numeric field `index` of a child's result line.
std::int64_t parse_field(const std::vector<std::string_view>& fields, std::size_t index);
/// Appends the child's key=value counters (result fields from `first` on) and a
/// non-zero exit status to `details`.
void append_child_details(std::string& details, const std::vector<std::string_view>& fields, std::size_t first,
                          const char* role, int exit_status);

meshbus::Options node_options(const std::string& cluster, const char* role, unsigned handler_threads);
/// The counters of a meshbus node worth showing with --verbose, as key=value pairs.
std::string node_counters(const meshbus::Stats& s);
/// The request/reply counters of a meshbus node, for --verbose.
std::string request_counters(const meshbus::Stats& s);
/// A private cluster name for each meshbus run.
std::string next_cluster();
/// `size` bytes: `marker`, then zeros.
std::string marked_payload(std::size_t size, char marker);

/// A fresh data directory under /tmp (on the disk /tmp is on), removed when this goes;
/// none (an empty path) unless `wanted`. Throws run_error when it cannot be created.
class scratch_dir {
 public:
  explicit scratch_dir(bool wanted = true);
  ~scratch_dir();
  scratch_dir(const scratch_dir&) = delete;
  scratch_dir& operator=(const scratch_dir&) = delete;
  const std::string& path() const noexcept { return path_; }

 private:
  std::string path_;
};

/// One side of a row: an outcome, or why the run could not complete.
template <typename outcome_type>
struct side_result {
  std::optional<outcome_type> outcome;
  std::string error;
};

/// Builds the transport's driver half (which may fail: no socket, no Node) and runs it.
template <typename outcome_type, typename make_driver, typename run_driver>
side_result<outcome_type> run_transport(make_driver make, run_driver run) {
  side_result<outcome_type> r;
  try {
    auto driver = make();
    r.outcome = run(*driver);
  } catch (const std::exception& e) {
    r.error = e.what();
  }
  return r;
}

/// Runs `receive` (a loop until its stop flag is set) on its own thread while `watch`
/// runs on this one; then stops and joins the thread, and returns what `watch`
/// returned. A ZeroMQ error on the receiving thread becomes a runtime_error.
template <typename receive_loop, typename watch_loop>
auto with_receiver(receive_loop receive, watch_loop watch) {
  std::atomic<bool> stop{false};
  std::atomic<bool> failed{false};
  std::thread receiver([&] {
    try {
      receive(stop);
    } catch (const zmq::error_t&) {
      failed.store(true);
    }
  });
  decltype(watch()) result{};
  try {
    result = watch();
  } catch (...) {
    stop.store(true);
    receiver.join();
    throw;
  }
  stop.store(true);
  receiver.join();
  if (failed.load()) throw std::runtime_error("a ZeroMQ send or receive failed");
  return result;
}

}  // namespace meshbus_perf
