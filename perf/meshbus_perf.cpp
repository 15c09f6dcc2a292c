// meshbus-perf: meshbus side by side with raw ZeroMQ, in two processes on TCP loopback.
// This process drives the run; the other half is this program re-executed through
// /proc/self/exe with a hidden subcommand (_subscriber, _echoer or _replier); the two talk
// through the child's stdin and stdout pipes, its stderr is ours. For every size the
// raw ZeroMQ run goes first, then meshbus, each with a fresh child process.
//
// throughput: the time to move N events one way, end to end. The publisher reads
// CLOCK_MONOTONIC (t0) just before its first measured send; the subscriber reads the
// same clock when the last measured event reaches it (t_last: return of zmq_msg_recv
// for raw ZeroMQ, the subscription handler for meshbus) and counts what arrived,
// stopping when it has all N events or when nothing new came for 3 s. meshbus's
// publisher ends with flush() (reliable and acknowledged: until the subscriber has
// acknowledged everything), and the run ends at t_end, the later of t_last and
// flush()'s return. events/s = received / (t_end - t0), MB/s = events/s x size / 1e6
// (payload bytes only), lost = N - received. The rate includes publishing, transport,
// receipt and (meshbus) the acknowledgements. Connecting, discovery and the
// slow-joiner warm-up happen before t0. Raw ZeroMQ is the lossless baseline: PUB with
// ZMQ_XPUB_NODROP=1 and blocking sends, default HWMs, one message per event.
//
// latency: one event in flight at a time. The pinger writes its CLOCK_MONOTONIC
// send time and a sequence number into the payload and sends it on "perf.ping"; the
// echoer, on receipt (return of zmq_msg_recv; the meshbus handler), records its own
// clock minus the embedded time (one-way latency: one clock for every process on
// this host) and sends the payload back on "perf.pong"; the pinger takes the round
// trip when the echo arrives and only then sends the next ping (raw ZeroMQ: blocking
// receive on the main thread; meshbus: the pong handler publishes the next ping).
// Untimed warm-up round trips go first. Reported: p50, p99, p99.9 and max of both.
//
// throughput --mode typed: meshbus publishes a typed event (perf_sample, a MessagePack
// map) whose encoding is the payload size, and the subscriber takes it with
// subscribe<T>(): encoding and decoding are inside the measured time. Raw ZeroMQ sends
// plain bytes of the same size, as in the other modes.
//
// latency --mode request: request/reply, one request in flight at a time, timed here
// only (the child, the replier, takes no times: there is no one-way figure). Raw
// ZeroMQ: a DEALER here, a ROUTER there that sends each request back to its sender;
// meshbus: request("perf.echo").get() here, serve("perf.echo") there.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include <zmq.hpp>

#include "meshbus/meshbus.hpp"
#include "meshbus/typed.hpp"

namespace {

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

const char* const help_text = R"(meshbus-perf: meshbus side by side with raw ZeroMQ, over TCP loopback

Usage:
  meshbus-perf throughput --size S[,S...] [--count N] [--mode M] [--handler-threads T] [--json] [--verbose]
  meshbus-perf latency    --size S[,S...] [--count N] [--warmup W] [--mode M] [--handler-threads T]
                          [--request-api future|callback] [--json] [--verbose]
  meshbus-perf --help

Both commands run this process and a second one (started from this program) over
TCP loopback, first with raw ZeroMQ (PUB/SUB; DEALER/ROUTER for latency --mode
request) and then with meshbus, for each size, and print one row (throughput, and
latency --mode request) or two rows (latency) per size.

  --size S[,S...]  payload sizes in bytes, one or a comma-separated list, e.g.
                   16,64,256,1024,4096,16384,65536 (throughput: 1 to 8388608;
                   throughput --mode typed: 46 to 8388608, 46 being the encoded
                   event's fixed fields and marker; latency: 16 to 8388608, the
                   payload carries a time and a number)
  --count N        throughput: events per run (default: about 200 MB of payload per
                   run, at least 20,000 and at most 5,000,000 events);
                   latency: measured round trips per run (default 20,000)
  --warmup W       latency: untimed round trips before the measured ones (default 1,000)
  --mode M         throughput and latency: best_effort, reliable (the default, as in
                   the library) or acknowledged, the meshbus delivery both processes
                   subscribe with;
                   throughput only: typed, a typed event with reliable delivery
                   (see "throughput --mode typed");
                   latency only: request, request/reply instead of events (see
                   "latency --mode request").
                   Raw ZeroMQ is the same in every mode but request.
  --handler-threads T
                   meshbus Options::handler_threads of both processes (default 1, as
                   in the library); 0 runs handlers (and request handlers) on the
                   node's I/O thread, which saves a thread hand-off per event (see
                   Options::handler_threads)
  --request-api A  latency --mode request: how meshbus's requester waits: future
                   (the default; request(...).get() on the measuring thread) or
                   callback (request_async(...), whose completion sends the next
                   request, as the latency mode's pong handler does)
  --json           one JSON object per size and line instead of the table
  --verbose        per-run details on stderr: time in the send loop and in flush(),
                   CPU time of both processes (cpu_ms), meshbus batch, ack, stall
                   and request counters of both processes

throughput: a publisher (this process) sends count events to a subscriber.
t0 = CLOCK_MONOTONIC just before the first measured send; t_last = the same clock
when the subscriber got the last measured event; t_end = the later of t_last and
the return of meshbus's flush(). events/s = received / (t_end - t0); MB/s =
events/s x size / 1e6 (payload only); lost = count - received (the subscriber
gives up after 3 s without a new event); ratio = meshbus events/s / raw events/s.
meshbus's publisher waits for the subscription (wait_for_subscribers), publishes
every event with publish() and ends with flush(), which for reliable and
acknowledged waits until the subscriber has acknowledged everything.
Raw ZeroMQ: PUB with ZMQ_XPUB_NODROP=1 and blocking sends, so it waits for queue
space instead of dropping; default high-water marks; one message per event; warm-up
messages go first until the subscriber has seen one (slow joiner), not counted.

throughput --mode typed: meshbus publishes a typed event instead of bytes:
"perf.sample" version 1 on "perf.data", the struct {sequence: uint64, sent_ns:
int64, padding: string} with MSGPACK_DEFINE_MAP, published with publish(event),
which encodes it (a MessagePack map with the field names as keys), and received
with subscribe<T>(), which decodes it (checks every field, converts into the struct)
before the handler; both are in the measured time; delivery reliable. sent_ns is
the publisher's clock at publish(); padding is the marker byte and then zeros, as
long as makes the encoded event size bytes; MB/s counts those bytes, not the type
name and version the envelope carries with every typed event (the content type,
implied by the type name, is not carried). MessagePack packs integers in the fewest bytes,
so sequence numbers start at 2^32 and, like the clock, always take 9 bytes. Where
the string header grows (77, 302, 65583 and 65584 bytes cannot be encoded) the
nearest size is used (ties: the smaller): the size column and JSON "size" are the
encoded size that was sent, JSON "requested_size" is S (the table says so when they
differ). Raw ZeroMQ sends plain bytes of that size, as in the other modes.

latency: one event at a time. This process sends a ping (its CLOCK_MONOTONIC send
time in the payload) on "perf.ping"; the echoer (the second process) records its
clock minus that time on receipt (one-way) and sends the payload back on
"perf.pong"; this process takes the round trip on the echo's receipt and then
sends the next ping. p50/p99/p99.9/max in microseconds, nearest rank; ratio =
meshbus p50 / raw p50. Raw ZeroMQ: two PUB/SUB pairs; blocking receives, the
pinger's on its main thread, the echoer's on a thread that also sends the echo.
meshbus: the echoer's ping handler publishes the pong; the pinger's pong handler
takes the round trip and publishes the next ping.

latency --mode request: one request at a time, from this process's main thread.
It writes a sequence number and its CLOCK_MONOTONIC time into the payload and sends
it as a request; the replier (the second process) answers with a copy of it; round
trip = the same clock once the reply is back (raw ZeroMQ: return of the receive;
meshbus: return of future.get()) minus the time in the payload; then the next
request goes. Only round trips are timed: there is no one-way row, and the JSON
fields p50_us, p99_us, ..., baseline_p50_us, ... and ratio_p50 hold the round trip,
as the rtt_ ones do. p50/p99/p99.9/max as for latency; ratio = meshbus p50 / raw
p50. Raw ZeroMQ: a DEALER here, connected to a ROUTER there that sends every request
back to its sender, on a thread doing blocking receives; this process receives
blocking. meshbus: the replier serves "perf.echo" with serve(), its handler
returning Reply{a copy of the payload}; this process waits until
instances("perf.echo") lists it, then calls request("perf.echo", payload).get()
(RequestOptions::timeout 10 s) for each request; with --request-api callback it
calls request_async() instead, and the completion (on a handler thread, or on the
I/O thread with --handler-threads 0) takes the time and sends the next request
while this thread waits for the last one. JSON adds "request_api".

meshbus in both: one Node per process in a private cluster (perf-<pid>-<n>),
loopback discovery, default Options (send_policy block) without MESHBUS_*
variables (MESHBUS_LOG still applies).

Exit status: 0 when every run completed (throughput losses are reported, not
failures), 1 when a run could not complete (setup failure, timeout, nothing
received, an echo or reply that never came), 2 on a usage error.
)";

/// What meshbus is asked to do; both processes receive the mode. best_effort, reliable
/// and acknowledged: events of bytes, subscribed with that delivery (throughput and
/// latency); typed: typed events, reliable (throughput); request: request/reply
/// (latency).
enum class run_mode : std::uint8_t { best_effort, reliable, acknowledged, typed, request };

constexpr run_mode all_modes[] = {run_mode::best_effort, run_mode::reliable, run_mode::acknowledged,
                                  run_mode::typed, run_mode::request};

const char* to_string(run_mode m) noexcept {
  switch (m) {
    case run_mode::best_effort: return "best_effort";
    case run_mode::reliable: return "reliable";
    case run_mode::acknowledged: return "acknowledged";
    case run_mode::typed: return "typed";
    case run_mode::request: return "request";
  }
  return "?";
}

std::optional<run_mode> parse_mode(std::string_view text) {
  for (const auto m : all_modes) {
    if (text == to_string(m)) return m;
  }
  return std::nullopt;
}

/// The delivery of the mode's subscriptions (typed: the library default, reliable;
/// request subscribes to nothing).
meshbus::SubscribeOptions subscribe_options(run_mode m) {
  meshbus::SubscribeOptions o;
  switch (m) {
    case run_mode::best_effort: o.delivery = meshbus::Delivery::best_effort; break;
    case run_mode::reliable:
    case run_mode::typed:
    case run_mode::request: o.delivery = meshbus::Delivery::reliable; break;
    case run_mode::acknowledged: o.delivery = meshbus::Delivery::acknowledged; break;
  }
  return o;
}

/// A run that could not complete; what() says why.
class run_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// CLOCK_MONOTONIC in ns: one clock for every process on this host.
std::int64_t monotonic_ns() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + std::int64_t{ts.tv_nsec};
}

double seconds_between(std::int64_t from_ns, std::int64_t to_ns) noexcept {
  return static_cast<double>(to_ns - from_ns) / 1e9;
}

/// CPU time (user + system, all threads) this process has used, in milliseconds.
double process_cpu_ms() noexcept {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  auto ms = [](const timeval& tv) { return static_cast<double>(tv.tv_sec) * 1e3 + static_cast<double>(tv.tv_usec) / 1e3; };
  return ms(u.ru_utime) + ms(u.ru_stime);
}

/// "cpu_ms=<CPU time since `since_ms`>", for the --verbose details.
std::string cpu_field(double since_ms) {
  char text[48];
  std::snprintf(text, sizeof text, "cpu_ms=%.0f", process_cpu_ms() - since_ms);
  return text;
}

/// `a` and `b` separated by a space (either may be empty).
std::string joined(std::string a, std::string_view b) {
  if (!a.empty() && !b.empty()) a += ' ';
  return a.append(b);
}

bool parse_uint(std::string_view text, std::uint64_t& out) {
  const auto* end = text.data() + text.size();
  const auto [p, ec] = std::from_chars(text.data(), end, out);
  return !text.empty() && ec == std::errc{} && p == end;
}

std::vector<std::string_view> split(std::string_view text, char sep) {
  std::vector<std::string_view> parts;
  for (;;) {
    const auto at = text.find(sep);
    parts.push_back(text.substr(0, at));
    if (at == std::string_view::npos) return parts;
    text.remove_prefix(at + 1);
  }
}

/// What one measured run is asked to do; the child process gets all of it.
/// latency --mode request: how meshbus's requester waits for a reply.
enum class request_api : std::uint8_t {
  future,    ///< request(...).get() on the measuring thread
  callback,  ///< request_async(...): the completion sends the next request
};

struct run_spec {
  std::size_t size = 0;      ///< payload bytes (typed: of the encoded event)
  std::uint64_t count = 0;   ///< throughput: events; latency: measured round trips
  std::uint64_t warmup = 0;  ///< latency: untimed round trips first
  run_mode mode = run_mode::reliable;
  unsigned handler_threads = 1;  ///< meshbus Options::handler_threads of both nodes
  request_api api = request_api::future;  ///< latency --mode request; driver only
  std::size_t requested_size = 0;  ///< --size (typed: `size` is the nearest encodable); driver only
};

// ---------------------------------------------------------------------------
// pipes between the two processes: one line per message

/// Writes `text` and a newline; false when the reader is gone.
bool write_line(int fd, std::string_view text) {
  std::string line(text);
  std::replace(line.begin(), line.end(), '\n', ' ');
  line.push_back('\n');
  std::size_t off = 0;
  while (off < line.size()) {
    const auto n = ::write(fd, line.data() + off, line.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<std::size_t>(n);
  }
  return true;
}

/// Reads newline-terminated lines from a pipe, each with a deadline.
class line_reader {
 public:
  enum class status : std::uint8_t { line, timeout, closed };

  explicit line_reader(int fd) : fd_(fd) {}

  status read(std::string& line, milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (const auto nl = buffer_.find('\n'); nl != std::string::npos) {
        line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        return status::line;
      }
      const auto left = std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
      pollfd p{fd_, POLLIN, 0};
      const int ready = ::poll(&p, 1, static_cast<int>(std::max<milliseconds::rep>(left.count(), 0)));
      if (ready < 0 && errno == EINTR) continue;
      if (ready < 0) return status::closed;
      if (ready == 0) {
        if (std::chrono::steady_clock::now() >= deadline) return status::timeout;
        continue;
      }
      char chunk[512];
      const auto n = ::read(fd_, chunk, sizeof chunk);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return status::closed;
      buffer_.append(chunk, static_cast<std::size_t>(n));
    }
  }

 private:
  int fd_;
  std::string buffer_;
};

/// Child side: waits for the line `word` from the driver on stdin. False when the
/// driver is gone, sent something else or said nothing for `timeout`.
bool await_driver(std::string_view word, milliseconds timeout) {
  line_reader control(0);
  std::string line;
  return control.read(line, timeout) == line_reader::status::line && line == word;
}

// ---------------------------------------------------------------------------
// the driver's view of the child process

run_error system_failure(const char* call, int err) {
  return run_error(std::string(call) + " failed: " + std::generic_category().message(err));
}

/// A pipe whose ends are both above stdin/stdout/stderr and close on exec.
void open_pipe(int (&fds)[2]) {
  if (::pipe2(fds, O_CLOEXEC) != 0) throw system_failure("pipe2()", errno);
  for (int& fd : fds) {
    if (fd > 2) continue;
    const int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
    const int err = errno;
    ::close(fd);
    fd = moved;
    if (fd < 0) throw system_failure("fcntl(F_DUPFD_CLOEXEC)", err);
  }
}

/// The other half of a run: this program (/proc/self/exe) with a hidden subcommand.
/// We write commands to its stdin and read its reports from its stdout; its stderr
/// is ours. Killed (this child alone, by pid) if still running when destroyed; it
/// also gets SIGKILL should we die first.
///
/// Lines from the child: "ready [text]" (set up), "warm" (raw throughput only: a
/// warm-up message arrived), "result <fields...> [key=value...]" or "error <text>".
/// Lines to it: "go" (throughput: t0 is about to be taken), "done" (latency: the
/// last round trip is over).
class child_process {
 public:
  child_process(std::string_view command, const std::vector<std::string>& args) {
    std::vector<std::string> strings{"meshbus-perf", std::string(command)};
    strings.insert(strings.end(), args.begin(), args.end());
    std::vector<char*> argv;
    argv.reserve(strings.size() + 1);
    for (auto& s : strings) argv.push_back(s.data());
    argv.push_back(nullptr);
    int to_child[2];
    int from_child[2];
    open_pipe(to_child);
    try {
      open_pipe(from_child);
    } catch (...) {
      ::close(to_child[0]);
      ::close(to_child[1]);
      throw;
    }
    pid_ = ::fork();
    if (pid_ == 0) {
      // Between fork and exec: async-signal-safe calls only.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::dup2(to_child[0], 0) < 0 || ::dup2(from_child[1], 1) < 0) ::_exit(127);
      ::execv("/proc/self/exe", argv.data());
      ::_exit(127);
    }
    const int fork_errno = errno;
    ::close(to_child[0]);
    ::close(from_child[1]);
    to_child_ = to_child[1];
    from_child_ = from_child[0];
    reader_ = line_reader(from_child_);
    if (pid_ < 0) {
      close_pipes();
      throw system_failure("fork()", fork_errno);
    }
  }

  ~child_process() {
    close_pipes();
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
  }

  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  void send(std::string_view line) {
    if (!write_line(to_child_, line)) throw run_error("the child process is gone");
  }

  line_reader::status poll_line(std::string& line, milliseconds timeout) {
    return reader_.read(line, timeout);
  }

  /// Reads the next line, which must start with `word`; returns the rest of it.
  std::string expect(std::string_view word, milliseconds timeout) {
    std::string line;
    switch (reader_.read(line, timeout)) {
      case line_reader::status::line: break;
      case line_reader::status::timeout:
        throw run_error("the child process did not report '" + std::string(word) + "' within " +
                        std::to_string(timeout.count() / 1000) + " s");
      case line_reader::status::closed:
        throw run_error("the child process ended before reporting '" + std::string(word) + "'");
    }
    return rest_of(line, word);
  }

  /// `line` without its leading `word`; a child's "error" line becomes a run_error.
  static std::string rest_of(const std::string& line, std::string_view word) {
    const std::string_view view(line);
    if (view.starts_with("error ")) throw run_error("child: " + line.substr(6));
    if (!view.starts_with(word) || (view.size() > word.size() && view[word.size()] != ' ')) {
      throw run_error("unexpected line from the child process: '" + line + "'");
    }
    return view.size() > word.size() ? line.substr(word.size() + 1) : std::string();
  }

  /// Waits for the child to exit; kills it after `timeout`. Returns its exit status.
  int wait_exit(milliseconds timeout) {
    close_pipes();
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    int status = 0;
    while (::waitpid(pid_, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() >= deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(5ms);
    }
    reaped_ = true;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

 private:
  void close_pipes() noexcept {
    if (to_child_ >= 0) ::close(to_child_);
    if (from_child_ >= 0) ::close(from_child_);
    to_child_ = from_child_ = -1;
  }

  pid_t pid_ = -1;
  bool reaped_ = false;
  int to_child_ = -1;
  int from_child_ = -1;
  line_reader reader_{-1};
};

/// Starts the child half of a run: `command`, the spec, the transport's own arguments.
std::unique_ptr<child_process> start_child(std::string_view command, const char* transport,
                                           const run_spec& spec, std::vector<std::string> extra) {
  std::vector<std::string> args{"--transport", transport,
                                "--size",      std::to_string(spec.size),
                                "--count",     std::to_string(spec.count),
                                "--warmup",    std::to_string(spec.warmup),
                                "--mode",      to_string(spec.mode),
                                "--handler-threads", std::to_string(spec.handler_threads)};
  for (auto& a : extra) args.push_back(std::move(a));
  return std::make_unique<child_process>(command, args);
}

/// The numeric field `index` of a child's result line.
std::int64_t parse_field(const std::vector<std::string_view>& fields, std::size_t index) {
  std::uint64_t v = 0;
  if (index >= fields.size() || !parse_uint(fields[index], v)) {
    throw run_error("malformed result line from the child process");
  }
  return static_cast<std::int64_t>(v);
}

/// Appends the child's key=value counters (result fields from `first` on) and a
/// non-zero exit status to `details`.
void append_child_details(std::string& details, const std::vector<std::string_view>& fields,
                          std::size_t first, const char* role, int exit_status) {
  std::string counters;
  for (std::size_t i = first; i < fields.size(); ++i) counters = joined(std::move(counters), fields[i]);
  if (exit_status != 0) counters = joined(std::move(counters), "(exit status " + std::to_string(exit_status) + ")");
  if (counters.empty()) return;
  details += (details.empty() ? "" : "; ") + std::string(role) + ": " + counters;
}

meshbus::Options node_options(const std::string& cluster, const char* role, unsigned handler_threads) {
  meshbus::Options o;
  o.cluster = cluster;
  o.handler_threads = handler_threads;
  o.name = std::string("meshbus-perf-") + role + "-" + std::to_string(::getpid());
  o.use_environment = false;  // defaults, loopback discovery: the same run everywhere
  return o;
}

/// The counters of a meshbus node worth showing with --verbose, as key=value pairs.
std::string node_counters(const meshbus::Stats& s) {
  char text[512];
  std::snprintf(
      text, sizeof text,
      "batches_sent=%llu batches_received=%llu acks_sent=%llu acks_received=%llu "
      "send_stalls=%llu window_waits=%llu receive_pauses=%llu gaps=%llu nacks_sent=%llu "
      "repairs_sent=%llu redeliveries=%llu duplicates_dropped=%llu events_lost=%llu "
      "handler_errors=%llu dead_letters=%llu",
      static_cast<unsigned long long>(s.batches_sent), static_cast<unsigned long long>(s.batches_received),
      static_cast<unsigned long long>(s.acks_sent), static_cast<unsigned long long>(s.acks_received),
      static_cast<unsigned long long>(s.send_stalls), static_cast<unsigned long long>(s.window_waits),
      static_cast<unsigned long long>(s.receive_pauses), static_cast<unsigned long long>(s.gaps),
      static_cast<unsigned long long>(s.nacks_sent), static_cast<unsigned long long>(s.repairs_sent),
      static_cast<unsigned long long>(s.redeliveries), static_cast<unsigned long long>(s.duplicates_dropped),
      static_cast<unsigned long long>(s.events_lost), static_cast<unsigned long long>(s.handler_errors),
      static_cast<unsigned long long>(s.dead_letters));
  return text;
}

/// The request/reply counters of a meshbus node, for --verbose.
std::string request_counters(const meshbus::Stats& s) {
  char text[160];
  std::snprintf(
      text, sizeof text, "requests_sent=%llu requests_failed=%llu requests_served=%llu late_replies=%llu",
      static_cast<unsigned long long>(s.requests_sent), static_cast<unsigned long long>(s.requests_failed),
      static_cast<unsigned long long>(s.requests_served), static_cast<unsigned long long>(s.late_replies));
  return text;
}

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

/// A private cluster name for each meshbus run.
std::string next_cluster() {
  static unsigned run_number = 0;
  return "perf-" + std::to_string(::getpid()) + "-" + std::to_string(run_number++);
}

/// `size` bytes: `marker`, then zeros.
std::string marked_payload(std::size_t size, char marker) {
  std::string payload(1, marker);
  payload.resize(size, '\0');
  return payload;
}

// ---------------------------------------------------------------------------
// throughput --mode typed: the event

/// The typed event of --mode typed, a MessagePack map of its three fields. `padding`
/// (the measured marker, then zeros) brings the encoding to the payload size.
struct perf_sample {
  static constexpr std::string_view event_name = "perf.sample";
  static constexpr std::uint32_t event_version = 1;
  static constexpr std::string_view event_topic = data_topic;
  std::uint64_t sequence = 0;
  std::int64_t sent_ns = 0;  ///< the publisher's CLOCK_MONOTONIC at publish()
  std::string padding;
  MSGPACK_DEFINE_MAP(sequence, sent_ns, padding)
};

/// MessagePack packs an integer in the fewest bytes it fits: from 2^32 on, 9. So
/// sequence numbers start there and every event encodes to the same size (so does
/// sent_ns, CLOCK_MONOTONIC being past 2^32 ns, 4.3 s after boot).
constexpr std::uint64_t first_sample_sequence = std::uint64_t{1} << 32;

/// A sample with `padding` bytes of padding (at least 1, the marker).
perf_sample make_sample(std::size_t padding) {
  perf_sample sample;
  sample.sequence = first_sample_sequence;
  sample.sent_ns = monotonic_ns();
  sample.padding = marked_payload(padding, measured_marker);
  return sample;
}

std::size_t encoded_sample_size(std::size_t padding) {
  return meshbus::encode_event(make_sample(padding)).size();
}

/// The smallest typed payload: the fixed fields and a padding of just the marker.
std::size_t min_typed_size() {
  return encoded_sample_size(1);
}

/// The padding whose sample encodes nearest to `size` bytes (at least
/// min_typed_size(); ties: the smaller). The encoding grows with the padding by one
/// byte per byte, and by a few more where the string header grows.
std::size_t sample_padding(std::size_t size) {
  const auto min_size = min_typed_size();
  if (size <= min_size) return 1;
  std::size_t padding = size - min_size + 1;  // too long by what the string header adds
  while (padding > 1 && encoded_sample_size(padding) > size) --padding;
  const auto below = encoded_sample_size(padding);
  const auto above = encoded_sample_size(padding + 1);
  return below < size && above - size < size - below ? padding + 1 : padding;
}

// ---------------------------------------------------------------------------
// throughput, publisher side: the transports, and the run around them

struct throughput_outcome {
  std::uint64_t received = 0;
  double seconds = 0;        ///< t_end - t0: to the later of the last receipt and flush()'s return
  double send_seconds = 0;   ///< t0 to the end of the send loop
  double flush_seconds = 0;  ///< meshbus: the end of the send loop to flush()'s return
  double first_seconds = 0;  ///< t0 to the first event at the subscriber
  std::string details;       ///< transport counters, for --verbose

  double events_per_s() const noexcept { return seconds > 0 ? static_cast<double>(received) / seconds : 0; }
};

/// One transport's publishing half. run_throughput() drives it around the shared
/// process and pipe plumbing.
class publisher {
 public:
  virtual ~publisher() = default;
  /// "raw" or "meshbus": the subscriber process takes the same name.
  virtual const char* transport() const noexcept = 0;
  /// How the subscriber reaches us (appended to its arguments).
  virtual std::vector<std::string> subscriber_args() const = 0;
  /// From "the subscriber is set up" to "nothing sent from now on can miss it".
  virtual void await_subscriber(child_process& sub) = 0;
  /// Sends spec.count measured events of spec.size bytes; throws run_error.
  virtual void publish_measured(const run_spec& spec) = 0;
  /// After the send loop: waits for what the transport promises (meshbus: flush()).
  virtual void finish() {}
  /// Counters worth showing with --verbose, as "key=value ..." (may be empty).
  virtual std::string details() const { return {}; }
};

class raw_publisher final : public publisher {
 public:
  explicit raw_publisher(std::size_t size) : socket_(context_, zmq::socket_type::pub), size_(size) {
    socket_.set(zmq::sockopt::xpub_nodrop, 1);
    // A blocked send gives up after this long (the subscriber died): the run fails.
    socket_.set(zmq::sockopt::sndtimeo, 30'000);
    socket_.set(zmq::sockopt::linger, 0);
    socket_.bind("tcp://127.0.0.1:*");
    endpoint_ = socket_.get(zmq::sockopt::last_endpoint);
  }

  const char* transport() const noexcept override { return "raw"; }
  std::vector<std::string> subscriber_args() const override { return {"--endpoint", endpoint_}; }

  void await_subscriber(child_process& sub) override {
    // Slow joiner: PUB drops what it sends before the subscription arrives, so send
    // marked warm-up messages until the subscriber says it got one.
    const auto warmup = marked_payload(size_, warmup_marker);
    const auto deadline = std::chrono::steady_clock::now() + setup_timeout;
    for (;;) {
      zmq::message_t msg(warmup.data(), warmup.size());
      (void)socket_.send(msg, zmq::send_flags::dontwait);
      std::string line;
      switch (sub.poll_line(line, 1ms)) {
        case line_reader::status::line: (void)child_process::rest_of(line, "warm"); return;
        case line_reader::status::timeout:
          if (std::chrono::steady_clock::now() >= deadline) {
            throw run_error("the raw subscriber saw no warm-up message within 10 s");
          }
          break;
        case line_reader::status::closed: throw run_error("the subscriber process ended during the warm-up");
      }
    }
  }

  void publish_measured(const run_spec& spec) override {
    const auto payload = marked_payload(spec.size, measured_marker);
    for (std::uint64_t i = 0; i < spec.count; ++i) {
      zmq::message_t msg(payload.data(), payload.size());
      if (!socket_.send(msg, zmq::send_flags::none)) {
        throw run_error("a raw ZeroMQ send stayed blocked for 30 s after " + std::to_string(i) + " events");
      }
    }
  }

 private:
  zmq::context_t context_{1};
  zmq::socket_t socket_;
  std::size_t size_;  ///< of the warm-up messages
  std::string endpoint_;
};

class meshbus_publisher final : public publisher {
 public:
  meshbus_publisher(std::string cluster, const run_spec& spec)
      : cluster_(std::move(cluster)), mode_(spec.mode),
        node_(node_options(cluster_, "publisher", spec.handler_threads)) {
    if (mode_ != run_mode::typed) return;
    // Set up before t0: finding the padding takes a few encodings.
    sample_ = make_sample(sample_padding(spec.size));
    if (const auto encoded = meshbus::encode_event(sample_).size(); encoded != spec.size) {
      throw run_error("a typed event encodes to " + std::to_string(encoded) + " bytes, not " +
                      std::to_string(spec.size));
    }
  }

  const char* transport() const noexcept override { return "meshbus"; }
  std::vector<std::string> subscriber_args() const override { return {"--cluster", cluster_}; }

  void await_subscriber(child_process&) override {
    if (!node_.wait_for_subscribers(data_topic, 1, setup_timeout)) {
      throw run_error(
          "the subscriber's subscription was not in effect within 10 s (beacon discovery on "
          "loopback, HELLO, READY)");
    }
  }

  void publish_measured(const run_spec& spec) override {
    if (mode_ == run_mode::typed) {
      publish_typed(spec);
      return;
    }
    const auto payload = marked_payload(spec.size, measured_marker);
    const auto view = std::as_bytes(std::span(payload.data(), payload.size()));
    for (std::uint64_t i = 0; i < spec.count; ++i) {
      publish_one(i, [&] { return node_.publish(data_topic, view); });
    }
  }

  void finish() override {
    if (node_.flush(60s)) return;
    throw run_error(mode_ == run_mode::best_effort
                        ? "flush() did not hand everything to ZeroMQ within 60 s"
                        : "flush(): the subscriber did not acknowledge everything within 60 s");
  }

  std::string details() const override {
    const auto s = node_.stats();
    const double per_batch =
        s.batches_sent != 0 ? static_cast<double>(s.events_published) / static_cast<double>(s.batches_sent)
                            : 0.0;
    char text[96];
    std::snprintf(text, sizeof text, "events_per_batch=%.1f would_block=%llu ", per_batch,
                  static_cast<unsigned long long>(would_block_));
    return text + node_counters(s);
  }

 private:
  // --mode typed: publish(event) encodes each event, in the measured loop.
  void publish_typed(const run_spec& spec) {
    for (std::uint64_t i = 0; i < spec.count; ++i) {
      sample_.sequence = first_sample_sequence + i;
      sample_.sent_ns = monotonic_ns();
      publish_one(i, [&] { return node_.publish(sample_); });
    }
  }

  /// Publishes event `index` with `publish` (send_policy block: would_block only
  /// after Options::send_timeout, 10 s, without space); gives up after 3 refusals.
  template <typename publish_call>
  void publish_one(std::uint64_t index, publish_call publish) {
    unsigned refusals = 0;
    while (publish() == meshbus::PublishResult::would_block) {
      ++would_block_;
      if (++refusals == 3) {
        throw run_error("publish() returned would_block for 30 s after " + std::to_string(index) + " events");
      }
    }
  }

  std::string cluster_;
  run_mode mode_;
  meshbus::Node node_;
  perf_sample sample_;  ///< --mode typed: the event, its padding sized to spec.size
  std::uint64_t would_block_ = 0;
};

/// One measured throughput run: start the subscriber, let the transport connect,
/// take t0, publish, collect the subscriber's result.
throughput_outcome run_throughput(publisher& pub, const run_spec& spec) {
  const auto sub = start_child(subscriber_command, pub.transport(), spec, pub.subscriber_args());
  (void)sub->expect("ready", setup_timeout);
  pub.await_subscriber(*sub);

  sub->send("go");
  const auto cpu0 = process_cpu_ms();
  const auto t0 = monotonic_ns();
  pub.publish_measured(spec);
  const auto sent = monotonic_ns();
  pub.finish();
  const auto finished = monotonic_ns();
  const auto cpu = cpu_field(cpu0);

  // "result <received> <bad> <t_first_ns> <t_last_ns> [key=value...]"
  const auto result = sub->expect("result", report_timeout);
  const auto fields = split(result, ' ');
  throughput_outcome out;
  out.received = static_cast<std::uint64_t>(parse_field(fields, 0));
  const auto bad = parse_field(fields, 1);
  const auto t_first = parse_field(fields, 2);
  const auto t_last = parse_field(fields, 3);
  const int status = sub->wait_exit(exit_timeout);
  if (bad != 0) throw run_error(std::to_string(bad) + " events arrived with a wrong size or marker");
  if (out.received == 0) throw run_error("the subscriber received nothing");
  if (t_last <= t0) throw run_error("the subscriber's clock reading precedes t0");
  out.seconds = seconds_between(t0, std::max(t_last, finished));
  out.send_seconds = seconds_between(t0, sent);
  out.flush_seconds = seconds_between(sent, finished);
  out.first_seconds = seconds_between(t0, t_first);
  out.details = "publisher: " + joined(pub.details(), cpu);
  append_child_details(out.details, fields, 4, "subscriber", status);
  return out;
}

// ---------------------------------------------------------------------------
// throughput, subscriber side (the child process)

/// What the receiving thread counts; the watcher reads it. One writer per counter
/// (the raw receive thread, or the meshbus handler thread), so no read-modify-write.
class receive_tally {
 public:
  receive_tally(std::uint64_t expected, std::size_t size) : expected_(expected), size_(size) {}

  /// Receiving thread: one event arrived.
  void record(std::size_t size, char marker) noexcept {
    if (size != size_ || marker != measured_marker) {
      bad_.store(bad_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
      return;
    }
    const auto n = received_.load(std::memory_order_relaxed) + 1;
    if (n == 1) first_ns_.store(monotonic_ns(), std::memory_order_relaxed);
    if (n == expected_) last_ns_.store(monotonic_ns(), std::memory_order_relaxed);
    received_.store(n, std::memory_order_release);
  }

  std::uint64_t expected() const noexcept { return expected_; }
  std::uint64_t received() const noexcept { return received_.load(std::memory_order_acquire); }
  std::uint64_t bad() const noexcept { return bad_.load(std::memory_order_relaxed); }
  std::int64_t first_ns() const noexcept { return first_ns_.load(std::memory_order_relaxed); }
  /// When the last of `expected` arrived (valid once received() == expected()).
  std::int64_t last_ns() const noexcept { return last_ns_.load(std::memory_order_relaxed); }

 private:
  const std::uint64_t expected_;
  const std::size_t size_;
  std::atomic<std::uint64_t> received_{0};
  std::atomic<std::uint64_t> bad_{0};
  std::atomic<std::int64_t> first_ns_{0};
  std::atomic<std::int64_t> last_ns_{0};
};

/// Waits for "go" on stdin, then until every event arrived or none came for
/// idle_timeout. Returns the result line (without transport counters). When events
/// are missing, t_last is when the watcher (checking every millisecond) last saw
/// the count rise: at most about a millisecond late.
std::string watch_until_done(const receive_tally& tally) {
  if (!await_driver("go", go_timeout)) throw std::runtime_error("no 'go' from the publisher");
  auto seen = tally.received();
  auto last_progress = monotonic_ns();
  std::int64_t t_last = 0;
  for (;;) {
    std::this_thread::sleep_for(1ms);
    const auto n = tally.received();
    const auto now = monotonic_ns();
    if (n >= tally.expected()) {
      seen = n;
      t_last = tally.last_ns();
      break;
    }
    if (n != seen) {
      seen = n;
      last_progress = now;
    } else if (now - last_progress >= std::chrono::nanoseconds(idle_timeout).count()) {
      t_last = last_progress;
      break;
    }
  }
  return std::to_string(seen) + " " + std::to_string(tally.bad()) + " " + std::to_string(tally.first_ns()) +
         " " + std::to_string(t_last);
}

/// What the child halves are given (see start_child()).
struct child_config {
  std::string transport;
  std::string endpoint;  ///< raw: the driver's PUB socket
  std::string cluster;   ///< meshbus
  run_spec spec;
};

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

std::string raw_subscribe(const child_config& c) {
  receive_tally tally(c.spec.count, c.spec.size);
  zmq::context_t context(1);
  zmq::socket_t socket(context, zmq::socket_type::sub);
  socket.set(zmq::sockopt::rcvtimeo, 100);
  socket.set(zmq::sockopt::linger, 0);
  socket.set(zmq::sockopt::subscribe, "");
  socket.connect(c.endpoint);
  if (!write_line(1, "ready")) return {};
  return with_receiver(
      [&](const std::atomic<bool>& stop) {
        bool warm_reported = false;
        zmq::message_t msg;
        while (!stop.load(std::memory_order_relaxed)) {
          if (!socket.recv(msg, zmq::recv_flags::none)) continue;  // receive timeout: check stop
          const char marker = msg.size() != 0 ? *static_cast<const char*>(msg.data()) : '\0';
          if (marker == warmup_marker) {
            if (!warm_reported) warm_reported = write_line(1, "warm");
            continue;
          }
          tally.record(msg.size(), marker);
        }
      },
      [&] { return watch_until_done(tally); });
}

std::string meshbus_subscribe(const child_config& c) {
  receive_tally tally(c.spec.count, c.spec.size);
  meshbus::Node node(node_options(c.cluster, "subscriber", c.spec.handler_threads));
  if (c.spec.mode == run_mode::typed) {
    // subscribe<T>() decodes each event before the handler; the padding starts with the marker.
    (void)node.subscribe<perf_sample>(
        [&tally](const perf_sample& sample, const meshbus::Event& ev) {
          tally.record(ev.payload().size(), sample.padding.empty() ? '\0' : sample.padding[0]);
        },
        subscribe_options(c.spec.mode));
  } else {
    (void)node.subscribe(
        data_topic,
        [&tally](const meshbus::Event& ev) {
          const auto payload = ev.payload();
          tally.record(payload.size(), payload.empty() ? '\0' : static_cast<char>(payload[0]));
        },
        subscribe_options(c.spec.mode));
  }
  if (!write_line(1, "ready")) return {};
  auto result = watch_until_done(tally);
  const auto s = node.stats();
  node.stop();
  return result + " " + node_counters(s);
}

// ---------------------------------------------------------------------------
// latency: the ping payload and the statistics

/// A ping's payload: its sequence number, then the pinger's CLOCK_MONOTONIC send
/// time, then zeros up to the size. Echoed unchanged.
struct ping_header {
  std::uint64_t index = 0;
  std::int64_t sent_ns = 0;
};
constexpr std::size_t min_latency_size = sizeof(std::uint64_t) + sizeof(std::int64_t);
/// Sent until the raw ZeroMQ pairs are connected both ways (slow joiner); not timed.
constexpr std::uint64_t probe_index = ~std::uint64_t{0};

/// Writes `index` and the current time into `payload` (at least min_latency_size
/// bytes); returns the time written. The clock is read last.
std::int64_t stamp_ping(void* payload, std::uint64_t index) noexcept {
  auto* bytes = static_cast<unsigned char*>(payload);
  std::memcpy(bytes, &index, sizeof index);
  const auto now = monotonic_ns();
  std::memcpy(bytes + sizeof index, &now, sizeof now);
  return now;
}

std::optional<ping_header> read_ping(const void* payload, std::size_t size) noexcept {
  if (size < min_latency_size) return std::nullopt;
  ping_header h;
  const auto* bytes = static_cast<const unsigned char*>(payload);
  std::memcpy(&h.index, bytes, sizeof h.index);
  std::memcpy(&h.sent_ns, bytes + sizeof h.index, sizeof h.sent_ns);
  return h;
}

/// Percentiles of one set of latency samples, in nanoseconds (nearest rank).
struct latency_summary {
  std::uint64_t samples = 0;
  std::int64_t p50 = 0;
  std::int64_t p99 = 0;
  std::int64_t p999 = 0;
  std::int64_t max = 0;
  std::int64_t mean = 0;

  /// "samples p50 p99 p999 max mean", as a child reports it.
  std::string to_fields() const {
    return std::to_string(samples) + " " + std::to_string(p50) + " " + std::to_string(p99) + " " +
           std::to_string(p999) + " " + std::to_string(max) + " " + std::to_string(mean);
  }
  static latency_summary from_fields(const std::vector<std::string_view>& fields, std::size_t first) {
    latency_summary s;
    s.samples = static_cast<std::uint64_t>(parse_field(fields, first));
    s.p50 = parse_field(fields, first + 1);
    s.p99 = parse_field(fields, first + 2);
    s.p999 = parse_field(fields, first + 3);
    s.max = parse_field(fields, first + 4);
    s.mean = parse_field(fields, first + 5);
    return s;
  }
};

latency_summary summarize(std::vector<std::int64_t> ns) {
  latency_summary s;
  s.samples = ns.size();
  if (ns.empty()) return s;
  std::sort(ns.begin(), ns.end());
  auto rank = [&](double p) {
    const auto at = static_cast<std::size_t>(std::ceil(p * static_cast<double>(ns.size())));
    return ns[std::clamp<std::size_t>(at, 1, ns.size()) - 1];
  };
  s.p50 = rank(0.50);
  s.p99 = rank(0.99);
  s.p999 = rank(0.999);
  s.max = ns.back();
  double total = 0;
  for (const auto v : ns) total += static_cast<double>(v);
  s.mean = std::llround(total / static_cast<double>(ns.size()));
  return s;
}

// ---------------------------------------------------------------------------
// latency, pinger side (this process)

struct latency_outcome {
  std::optional<latency_summary> one_way;  ///< measured by the echoer (not in --mode request)
  latency_summary round_trip;              ///< measured here
  std::string details;
};

/// One transport's pinging half: pings to an echoer, or (--mode request) requests to
/// a replier. run_latency() drives it around the shared process and pipe plumbing.
class pinger {
 public:
  virtual ~pinger() = default;
  virtual const char* transport() const noexcept = 0;
  /// How the echoer reaches us (appended to its arguments).
  virtual std::vector<std::string> echoer_args() const = 0;
  /// From the echoer's "ready <text>" to "both directions are connected".
  virtual void connect(child_process& echoer, const std::string& ready_text) = 0;
  /// spec.warmup + spec.count round trips, one at a time; returns the round-trip
  /// times of the measured ones (spec.count, in order). Throws run_error.
  virtual std::vector<std::int64_t> ping_pong(const run_spec& spec) = 0;
  /// Counters worth showing with --verbose, as "key=value ...".
  virtual std::string details() const { return {}; }
};

/// Raw ZeroMQ round trips, one at a time: each ping goes out on `out` and its echo
/// comes back on `in` (late probes are skipped and counted in `stray`). `what` names
/// a ping in errors. Returns the measured round trips, as pinger::ping_pong().
std::vector<std::int64_t> raw_round_trips(zmq::socket_ref out, zmq::socket_ref in, std::size_t size,
                                          const run_spec& spec, const char* what, std::uint64_t& stray) {
  std::vector<std::int64_t> rtt_ns(spec.count);
  zmq::message_t reply;
  for (std::uint64_t i = 0; i < spec.warmup + spec.count; ++i) {
    zmq::message_t ping(size);
    const auto sent = stamp_ping(ping.data(), i);
    if (!out.send(ping, zmq::send_flags::none)) throw run_error("a raw ZeroMQ send failed");
    for (;;) {  // late probes may still come back: wait for this ping's echo
      if (!in.recv(reply, zmq::recv_flags::none)) {
        throw run_error("no echo of raw " + std::string(what) + " " + std::to_string(i) + " within 10 s");
      }
      const auto h = read_ping(reply.data(), reply.size());
      if (h && h->index == i) break;
      ++stray;
    }
    const auto now = monotonic_ns();
    if (i >= spec.warmup) rtt_ns[i - spec.warmup] = now - sent;
  }
  return rtt_ns;
}

class raw_pinger final : public pinger {
 public:
  explicit raw_pinger(std::size_t size)
      : ping_(context_, zmq::socket_type::pub), pong_(context_, zmq::socket_type::sub), size_(size) {
    ping_.set(zmq::sockopt::linger, 0);
    ping_.bind("tcp://127.0.0.1:*");
    endpoint_ = ping_.get(zmq::sockopt::last_endpoint);
    pong_.set(zmq::sockopt::linger, 0);
    pong_.set(zmq::sockopt::rcvtimeo, static_cast<int>(milliseconds(echo_timeout).count()));
    pong_.set(zmq::sockopt::subscribe, "");
  }

  const char* transport() const noexcept override { return "raw"; }
  std::vector<std::string> echoer_args() const override { return {"--endpoint", endpoint_}; }

  void connect(child_process&, const std::string& ready_text) override {
    pong_.connect(ready_text);
    // Slow joiner, both ways: probe until one comes back.
    const auto deadline = std::chrono::steady_clock::now() + setup_timeout;
    zmq::message_t reply;
    for (;;) {
      zmq::message_t probe(size_);
      (void)stamp_ping(probe.data(), probe_index);
      (void)ping_.send(probe, zmq::send_flags::dontwait);
      zmq::pollitem_t item{pong_.handle(), 0, ZMQ_POLLIN, 0};
      if (zmq::poll(&item, 1, 1ms) > 0 && pong_.recv(reply, zmq::recv_flags::dontwait)) return;
      if (std::chrono::steady_clock::now() >= deadline) {
        throw run_error("no raw ZeroMQ probe came back within 10 s");
      }
    }
  }

  std::vector<std::int64_t> ping_pong(const run_spec& spec) override {
    return raw_round_trips(ping_, pong_, size_, spec, "ping", stray_);
  }

  std::string details() const override { return "stray_echoes=" + std::to_string(stray_); }

 private:
  zmq::context_t context_{1};
  zmq::socket_t ping_;
  zmq::socket_t pong_;
  std::size_t size_;
  std::string endpoint_;
  std::uint64_t stray_ = 0;
};

class meshbus_pinger final : public pinger {
 public:
  meshbus_pinger(std::string cluster, const run_spec& spec)
      : cluster_(std::move(cluster)), size_(spec.size), handler_buffer_(spec.size, '\0'),
        node_(node_options(cluster_, "pinger", spec.handler_threads)) {
    (void)node_.subscribe(pong_topic, [this](const meshbus::Event& ev) { on_pong(ev); },
                          subscribe_options(spec.mode));
  }

  const char* transport() const noexcept override { return "meshbus"; }
  std::vector<std::string> echoer_args() const override { return {"--cluster", cluster_}; }

  void connect(child_process&, const std::string&) override {
    // The echoer said "ready" once our pong subscription was in effect at its node.
    if (!node_.wait_for_subscribers(ping_topic, 1, setup_timeout)) {
      throw run_error("the echoer's subscription was not in effect within 10 s");
    }
  }

  std::vector<std::int64_t> ping_pong(const run_spec& spec) override {
    // The handler sees these through the ping it answers (publish() and delivery
    // both pass through locks).
    warmup_ = spec.warmup;
    end_ = spec.warmup + spec.count;
    rtt_ns_.assign(spec.count, 0);
    next_.store(0, std::memory_order_release);
    std::string first(size_, '\0');
    (void)stamp_ping(first.data(), 0);
    if (!send(first)) throw run_error("publish() of the first ping returned would_block");

    // The pong handler sends every further ping; watch it make progress.
    std::unique_lock lock(mu_);
    auto seen = next_.load(std::memory_order_acquire);
    auto last_progress = std::chrono::steady_clock::now();
    while (!finished_) {
      cv_.wait_for(lock, 100ms);
      const auto n = next_.load(std::memory_order_acquire);
      if (n != seen) {
        seen = n;
        last_progress = std::chrono::steady_clock::now();
      } else if (!finished_ && std::chrono::steady_clock::now() - last_progress >= echo_timeout) {
        throw run_error("no echo of meshbus ping " + std::to_string(n) + " within 10 s");
      }
    }
    if (!failure_.empty()) throw run_error(failure_);
    return std::move(rtt_ns_);  // the handler touches it no more: every ping was answered
  }

  std::string details() const override {
    return "stray_echoes=" + std::to_string(stray_.load()) + " " + node_counters(node_.stats());
  }

 private:
  bool send(std::string& payload) {
    return node_.publish(ping_topic, std::as_bytes(std::span(payload.data(), payload.size()))) ==
           meshbus::PublishResult::ok;
  }

  // Handler thread: an echo came back; take the round trip and send the next ping.
  void on_pong(const meshbus::Event& ev) {
    const auto now = monotonic_ns();
    const auto payload = ev.payload();
    const auto h = read_ping(payload.data(), payload.size());
    const auto expected = next_.load(std::memory_order_acquire);
    if (!h || h->index != expected || expected >= end_) {
      stray_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    if (expected >= warmup_) rtt_ns_[expected - warmup_] = now - h->sent_ns;
    const auto next = expected + 1;
    next_.store(next, std::memory_order_release);
    if (next < end_) {
      (void)stamp_ping(handler_buffer_.data(), next);
      if (send(handler_buffer_)) return;
      finish("publish() of a ping returned would_block");
      return;
    }
    finish({});
  }

  void finish(std::string failure) {
    {
      std::lock_guard lock(mu_);
      finished_ = true;
      failure_ = std::move(failure);
    }
    cv_.notify_all();
  }

  std::string cluster_;
  std::size_t size_;
  std::string handler_buffer_;  ///< handler thread only
  // Set before the first ping, read by the handler.
  std::uint64_t warmup_ = 0;
  std::uint64_t end_ = 0;
  std::vector<std::int64_t> rtt_ns_;    ///< handler thread, until every ping was answered
  std::atomic<std::uint64_t> next_{0};  ///< the ping whose echo is awaited
  std::atomic<std::uint64_t> stray_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool finished_ = false;  ///< under mu_
  std::string failure_;    ///< under mu_
  // Last: destroyed (stopped, handler thread joined) before what its handler uses.
  meshbus::Node node_;
};

/// --mode request, raw ZeroMQ: a DEALER connected to the replier's ROUTER, which sends
/// every request back to its sender.
class raw_requester final : public pinger {
 public:
  explicit raw_requester(std::size_t size) : dealer_(context_, zmq::socket_type::dealer), size_(size) {
    dealer_.set(zmq::sockopt::linger, 0);
    dealer_.set(zmq::sockopt::rcvtimeo, static_cast<int>(milliseconds(echo_timeout).count()));
  }

  const char* transport() const noexcept override { return "raw"; }
  std::vector<std::string> echoer_args() const override { return {}; }

  void connect(child_process&, const std::string& ready_text) override {
    dealer_.connect(ready_text);
    // A DEALER queues what it sends until the connection is up: one probe will do.
    zmq::message_t probe(size_);
    (void)stamp_ping(probe.data(), probe_index);
    if (!dealer_.send(probe, zmq::send_flags::none)) throw run_error("a raw ZeroMQ send failed");
    zmq::pollitem_t item{dealer_.handle(), 0, ZMQ_POLLIN, 0};
    zmq::message_t reply;
    if (zmq::poll(&item, 1, setup_timeout) == 0 || !dealer_.recv(reply, zmq::recv_flags::dontwait)) {
      throw run_error("no raw ZeroMQ probe came back within 10 s");
    }
  }

  std::vector<std::int64_t> ping_pong(const run_spec& spec) override {
    return raw_round_trips(dealer_, dealer_, size_, spec, "request", stray_);
  }

  std::string details() const override { return "stray_replies=" + std::to_string(stray_); }

 private:
  zmq::context_t context_{1};
  zmq::socket_t dealer_;
  std::size_t size_;
  std::uint64_t stray_ = 0;
};

/// --mode request, meshbus: request("perf.echo").get() on the calling thread for each
/// request; the replier's handler returns a copy of it.
class meshbus_requester final : public pinger {
 public:
  meshbus_requester(std::string cluster, const run_spec& spec)
      : cluster_(std::move(cluster)),
        size_(spec.size),
        node_(node_options(cluster_, "requester", spec.handler_threads)) {}

  const char* transport() const noexcept override { return "meshbus"; }
  std::vector<std::string> echoer_args() const override { return {"--cluster", cluster_}; }

  void connect(child_process&, const std::string&) override {
    // The replier said "ready" once it served the service; this node learns of it
    // by discovery, HELLO and subscription updates. Nothing to wait on but the list.
    const auto deadline = std::chrono::steady_clock::now() + setup_timeout;
    while (node_.instances(echo_service).empty()) {
      if (std::chrono::steady_clock::now() >= deadline) {
        throw run_error("the replier's service was not among instances() within 10 s");
      }
      std::this_thread::sleep_for(1ms);
    }
  }

  std::vector<std::int64_t> ping_pong(const run_spec& spec) override {
    if (spec.api == request_api::callback) return chained(spec);
    std::vector<std::int64_t> rtt_ns(spec.count);
    std::string payload(size_, '\0');
    const auto view = std::as_bytes(std::span(payload.data(), payload.size()));
    meshbus::RequestOptions options;
    options.timeout = echo_timeout;
    for (std::uint64_t i = 0; i < spec.warmup + spec.count; ++i) {
      const auto sent = stamp_ping(payload.data(), i);
      meshbus::Reply reply;
      try {
        reply = node_.request(echo_service, view, options).get();
      } catch (const std::exception& e) {
        throw run_error("meshbus request " + std::to_string(i) + " failed: " + e.what());
      }
      const auto now = monotonic_ns();
      check_reply(reply, i);
      if (i >= spec.warmup) rtt_ns[i - spec.warmup] = now - sent;
    }
    return rtt_ns;
  }

  std::string details() const override {
    const auto s = node_.stats();
    return request_counters(s) + " " + node_counters(s);
  }

 private:
  void check_reply(const meshbus::Reply& reply, std::uint64_t i) const {
    const auto h = read_ping(reply.payload.data(), reply.payload.size());
    if (!h || h->index != i || reply.payload.size() != size_) {
      throw run_error("the reply to meshbus request " + std::to_string(i) + " is not a copy of it");
    }
  }

  // --request-api callback: request_async(); its completion (on a handler thread, or
  // the I/O thread with --handler-threads 0) takes the time and sends the next one,
  // as the latency mode's pong handler does. This thread only waits for the end.
  std::vector<std::int64_t> chained(const run_spec& spec) {
    struct chain_state {
      std::vector<std::int64_t> rtt_ns;
      std::string payload;
      std::uint64_t i = 0;
      std::int64_t sent = 0;
      std::promise<std::string> done;  ///< empty: all answered; else the failure
    } st;
    st.rtt_ns.assign(spec.count, 0);
    st.payload.assign(size_, '\0');
    meshbus::RequestOptions options;
    options.timeout = echo_timeout;
    const auto total = spec.warmup + spec.count;
    std::function<void()> send_next;
    send_next = [&] {
      st.sent = stamp_ping(st.payload.data(), st.i);
      node_.request_async(
          echo_service, std::as_bytes(std::span(st.payload.data(), st.payload.size())),
          [&](std::optional<meshbus::Reply> reply, std::exception_ptr failed) {
            const auto now = monotonic_ns();
            try {
              if (failed) std::rethrow_exception(failed);
              check_reply(*reply, st.i);
            } catch (const std::exception& e) {
              st.done.set_value("meshbus request " + std::to_string(st.i) + " failed: " + e.what());
              return;
            }
            if (st.i >= spec.warmup) st.rtt_ns[st.i - spec.warmup] = now - st.sent;
            if (++st.i == total) {
              st.done.set_value({});
              return;
            }
            send_next();
          },
          options);
    };
    auto result = st.done.get_future();
    send_next();
    if (const auto failure = result.get(); !failure.empty()) throw run_error(failure);
    return std::move(st.rtt_ns);
  }

  std::string cluster_;
  std::size_t size_;
  meshbus::Node node_;
};

/// One measured latency run: start the echoer (the replier), connect both ways,
/// ping-pong, collect the echoer's one-way statistics (the replier has none).
latency_outcome run_latency(pinger& p, const run_spec& spec) {
  const bool request = spec.mode == run_mode::request;
  const auto child =
      start_child(request ? replier_command : echoer_command, p.transport(), spec, p.echoer_args());
  p.connect(*child, child->expect("ready", setup_timeout));
  const auto cpu0 = process_cpu_ms();
  const auto t0 = monotonic_ns();
  auto rtt = p.ping_pong(spec);
  const auto cpu = cpu_field(cpu0) + " wall_ms=" + std::to_string((monotonic_ns() - t0) / 1'000'000);
  child->send("done");

  // echoer: "result <samples> <p50> <p99> <p999> <max> <mean> [key=value...]" (one-way, ns);
  // replier: "result [key=value...]"
  const auto result = child->expect("result", report_timeout);
  const auto fields = split(result, ' ');
  latency_outcome out;
  std::size_t counters_from = 0;
  if (!request) {
    out.one_way = latency_summary::from_fields(fields, 0);
    counters_from = 6;
  }
  const int status = child->wait_exit(exit_timeout);
  if (out.one_way && out.one_way->samples != spec.count) {
    throw run_error("the echoer timed " + std::to_string(out.one_way->samples) + " of " +
                    std::to_string(spec.count) + " pings");
  }
  out.round_trip = summarize(std::move(rtt));
  out.details = (request ? "requester: " : "pinger: ") + joined(p.details(), cpu);
  append_child_details(out.details, fields, counters_from, request ? "replier" : "echoer", status);
  return out;
}

// ---------------------------------------------------------------------------
// latency, echoer side (the child process)

/// One-way latencies of the measured pings, in the order of their sequence numbers.
/// One writer (the echoing thread); read after it stopped (join, or Node::stop()).
class one_way_log {
 public:
  explicit one_way_log(const run_spec& spec) : first_(spec.warmup), samples_(spec.count, -1) {}

  /// Echoing thread: a ping arrived at `now_ns`.
  void record(const void* payload, std::size_t size, std::int64_t now_ns) noexcept {
    const auto h = read_ping(payload, size);
    if (!h || h->index < first_ || h->index - first_ >= samples_.size()) return;  // probe or warm-up
    samples_[h->index - first_] = now_ns - h->sent_ns;
  }

  /// "samples p50 p99 p999 max mean" over the pings that arrived.
  std::string result() const {
    std::vector<std::int64_t> timed;
    timed.reserve(samples_.size());
    for (const auto v : samples_) {
      if (v >= 0) timed.push_back(v);
    }
    return summarize(std::move(timed)).to_fields();
  }

 private:
  const std::uint64_t first_;
  std::vector<std::int64_t> samples_;  ///< -1: not arrived
};

std::string raw_echo(const child_config& c) {
  one_way_log log(c.spec);
  zmq::context_t context(1);
  zmq::socket_t ping(context, zmq::socket_type::sub);
  zmq::socket_t pong(context, zmq::socket_type::pub);
  ping.set(zmq::sockopt::rcvtimeo, 100);
  ping.set(zmq::sockopt::linger, 0);
  ping.set(zmq::sockopt::subscribe, "");
  ping.connect(c.endpoint);
  pong.set(zmq::sockopt::linger, 0);
  pong.bind("tcp://127.0.0.1:*");
  if (!write_line(1, "ready " + pong.get(zmq::sockopt::last_endpoint))) return {};
  std::uint64_t echoed = 0;
  const bool done = with_receiver(
      [&](const std::atomic<bool>& stop) {
        zmq::message_t msg;
        while (!stop.load(std::memory_order_relaxed)) {
          if (!ping.recv(msg, zmq::recv_flags::none)) continue;  // receive timeout: check stop
          log.record(msg.data(), msg.size(), monotonic_ns());
          if (!pong.send(msg, zmq::send_flags::none)) throw zmq::error_t();
          ++echoed;
        }
      },
      [] { return await_driver("done", report_timeout); });
  if (!done) return {};
  return log.result() + " echoed=" + std::to_string(echoed);
}

std::string meshbus_echo(const child_config& c) {
  one_way_log log(c.spec);
  meshbus::Node node(node_options(c.cluster, "echoer", c.spec.handler_threads));
  std::atomic<std::uint64_t> refused{0};
  (void)node.subscribe(
      ping_topic,
      [&](const meshbus::Event& ev) {
        const auto payload = ev.payload();
        log.record(payload.data(), payload.size(), monotonic_ns());
        if (node.publish(pong_topic, payload) != meshbus::PublishResult::ok) refused.fetch_add(1);
      },
      subscribe_options(c.spec.mode));
  // Ready once the pinger's pong subscription is in effect here: no echo can miss it.
  if (!node.wait_for_subscribers(pong_topic, 1, setup_timeout)) {
    throw std::runtime_error("the pinger's subscription was not in effect within 10 s");
  }
  if (!write_line(1, "ready")) return {};
  if (!await_driver("done", report_timeout)) return {};
  const auto s = node.stats();
  node.stop();  // joins the handler thread: every record() happened before
  return log.result() + " refused=" + std::to_string(refused.load()) + " " + node_counters(s);
}

// ---------------------------------------------------------------------------
// latency --mode request, replier side (the child process)

std::string raw_reply(const child_config&) {
  zmq::context_t context(1);
  zmq::socket_t router(context, zmq::socket_type::router);
  router.set(zmq::sockopt::rcvtimeo, 100);
  router.set(zmq::sockopt::linger, 0);
  router.bind("tcp://127.0.0.1:*");
  if (!write_line(1, "ready " + router.get(zmq::sockopt::last_endpoint))) return {};
  std::uint64_t answered = 0;
  const bool done = with_receiver(
      [&](const std::atomic<bool>& stop) {
        zmq::message_t sender;
        zmq::message_t request;
        while (!stop.load(std::memory_order_relaxed)) {
          if (!router.recv(sender, zmq::recv_flags::none)) continue;  // receive timeout: check stop
          // [sender identity, request]: a message arrives whole, so the second frame is here.
          if (!router.recv(request, zmq::recv_flags::none) ||
              !router.send(sender, zmq::send_flags::sndmore) ||
              !router.send(request, zmq::send_flags::none)) {
            throw zmq::error_t();
          }
          ++answered;
        }
      },
      [] { return await_driver("done", report_timeout); });
  if (!done) return {};
  return "answered=" + std::to_string(answered);
}

std::string meshbus_reply(const child_config& c) {
  meshbus::Node node(node_options(c.cluster, "replier", c.spec.handler_threads));
  (void)node.serve(echo_service, [](const meshbus::Event& request) {
    const auto payload = request.payload();
    return meshbus::Reply(std::string(reinterpret_cast<const char*>(payload.data()), payload.size()));
  });
  if (!write_line(1, "ready")) return {};
  if (!await_driver("done", report_timeout)) return {};
  const auto s = node.stats();
  node.stop();
  return request_counters(s) + " " + node_counters(s);
}

// ---------------------------------------------------------------------------
// the child process

/// `--name value` pairs, as start_child() writes them, for the hidden subcommand `command`.
child_config parse_child_args(std::string_view command, const std::vector<std::string_view>& args) {
  child_config c;
  std::uint64_t size = 0;
  if (args.size() % 2 != 0) throw std::runtime_error("bad child arguments");
  for (std::size_t i = 0; i + 1 < args.size(); i += 2) {
    const auto name = args[i];
    const auto value = args[i + 1];
    bool ok = true;
    if (name == "--transport") {
      c.transport = value;
    } else if (name == "--size") {
      ok = parse_uint(value, size);
    } else if (name == "--count") {
      ok = parse_uint(value, c.spec.count);
    } else if (name == "--warmup") {
      ok = parse_uint(value, c.spec.warmup);
    } else if (name == "--mode") {
      const auto m = parse_mode(value);
      ok = m.has_value();
      if (ok) c.spec.mode = *m;
    } else if (name == "--handler-threads") {
      std::uint64_t n = 0;
      ok = parse_uint(value, n) && n <= max_handler_threads;
      c.spec.handler_threads = static_cast<unsigned>(n);
    } else if (name == "--endpoint") {
      c.endpoint = value;
    } else if (name == "--cluster") {
      c.cluster = value;
    } else {
      ok = false;
    }
    if (!ok) throw std::runtime_error("bad child argument " + std::string(name));
  }
  c.spec.size = static_cast<std::size_t>(size);
  if (size == 0 || c.spec.count == 0) throw std::runtime_error("bad child arguments");
  // A raw replier binds its ROUTER; every other raw child connects to the driver's socket.
  const bool needs_endpoint = command != replier_command;
  if (c.transport == "raw" ? needs_endpoint && c.endpoint.empty()
                           : c.transport != "meshbus" || c.cluster.empty()) {
    throw std::runtime_error("bad child transport");
  }
  return c;
}

/// The hidden subcommands: `_subscriber|_echoer|_replier --transport raw|meshbus
/// --size S --count N --warmup W --mode M --handler-threads T (--endpoint E |
/// --cluster C)` (a raw _replier has no endpoint). Reports on stdout, see child_process.
int child_main(std::string_view command, const std::vector<std::string_view>& args) {
  try {
    const auto cpu0 = process_cpu_ms();  // set-up, the run and (meshbus) stop()
    const auto c = parse_child_args(command, args);
    const bool raw = c.transport == "raw";
    std::string result;
    if (command == subscriber_command) {
      result = raw ? raw_subscribe(c) : meshbus_subscribe(c);
    } else if (command == echoer_command) {
      result = raw ? raw_echo(c) : meshbus_echo(c);
    } else {
      result = raw ? raw_reply(c) : meshbus_reply(c);
    }
    if (result.empty()) return 1;  // the driver is gone
    write_line(1, "result " + joined(result, cpu_field(cpu0)));
    return 0;
  } catch (const std::exception& e) {
    write_line(1, std::string("error ") + e.what());
    return 1;
  }
}

// ---------------------------------------------------------------------------
// the commands: options, runs, output

enum class command_kind : std::uint8_t { throughput, latency };

struct command_options {
  command_kind kind = command_kind::throughput;
  std::vector<std::size_t> sizes;
  std::optional<std::uint64_t> count;
  std::uint64_t warmup = default_latency_warmup;
  run_mode mode = run_mode::reliable;
  unsigned handler_threads = 1;
  request_api api = request_api::future;
  bool json = false;
  bool verbose = false;

  /// The run for --size `size` (typed: the nearest size a sample encodes to).
  run_spec spec(std::size_t size) const {
    run_spec r;
    r.requested_size = size;
    r.size = mode == run_mode::typed ? encoded_sample_size(sample_padding(size)) : size;
    r.mode = mode;
    r.handler_threads = handler_threads;
    r.api = api;
    if (kind == command_kind::latency) {
      r.count = count.value_or(default_latency_count);
      r.warmup = warmup;
    } else {
      r.count = count.value_or(
          std::clamp<std::uint64_t>(bytes_per_run / r.size, min_default_count, max_default_count));
    }
    return r;
  }
};

/// Whether `command` runs in mode `m`: typed is for throughput, request for latency.
bool accepts(command_kind command, run_mode m) noexcept {
  switch (m) {
    case run_mode::best_effort:
    case run_mode::reliable:
    case run_mode::acknowledged: return true;
    case run_mode::typed: return command == command_kind::throughput;
    case run_mode::request: return command == command_kind::latency;
  }
  return false;
}

/// "a, b or c": the modes `command` accepts.
std::string accepted_modes(command_kind command) {
  std::vector<const char*> names;
  for (const auto m : all_modes) {
    if (accepts(command, m)) names.push_back(to_string(m));
  }
  std::string out;
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i != 0) out += i + 1 == names.size() ? " or " : ", ";
    out += names[i];
  }
  return out;
}

/// Parses a command's options; prints why and returns nullopt on a usage error.
std::optional<command_options> parse_options(command_kind kind, const std::vector<std::string_view>& args,
                                             bool& help) {
  command_options o;
  o.kind = kind;
  const bool latency = kind == command_kind::latency;
  const std::size_t min_size = latency ? min_latency_size : 1;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string_view name = args[i];
    std::optional<std::string_view> value;
    if (const auto eq = name.find('='); name.starts_with("--") && eq != std::string_view::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    auto take = [&]() -> std::optional<std::string_view> {
      if (value) return value;
      if (i + 1 < args.size()) return args[++i];
      std::fprintf(stderr, "meshbus-perf: %.*s needs a value\n", static_cast<int>(name.size()), name.data());
      return std::nullopt;
    };
    auto take_positive = [&](std::uint64_t& out, bool zero_ok) {
      const auto v = take();
      if (!v) return false;
      if (parse_uint(*v, out) && (zero_ok || out != 0)) return true;
      std::fprintf(stderr, "meshbus-perf: %.*s: '%.*s' is not a %s number\n", static_cast<int>(name.size()),
                   name.data(), static_cast<int>(v->size()), v->data(), zero_ok ? "non-negative" : "positive");
      return false;
    };
    if (name == "--help" || name == "-h") {
      help = true;
      return std::nullopt;
    }
    if (name == "--json" || name == "--verbose") {
      (name == "--json" ? o.json : o.verbose) = true;
    } else if (name == "--size") {
      const auto v = take();
      if (!v) return std::nullopt;
      for (const auto part : split(*v, ',')) {
        std::uint64_t s = 0;
        if (!parse_uint(part, s) || s < min_size || s > max_size) {
          std::fprintf(stderr, "meshbus-perf: --size: '%.*s' is not a size from %zu to %zu bytes\n",
                       static_cast<int>(part.size()), part.data(), min_size, max_size);
          return std::nullopt;
        }
        o.sizes.push_back(static_cast<std::size_t>(s));
      }
    } else if (name == "--count") {
      std::uint64_t n = 0;
      if (!take_positive(n, false)) return std::nullopt;
      o.count = n;
    } else if (name == "--warmup" && latency) {
      if (!take_positive(o.warmup, true)) return std::nullopt;
    } else if (name == "--mode") {
      const auto v = take();
      if (!v) return std::nullopt;
      const auto m = parse_mode(*v);
      if (!m || !accepts(kind, *m)) {
        std::fprintf(stderr, "meshbus-perf: --mode: '%.*s' is not a mode of %s (%s)%s\n",
                     static_cast<int>(v->size()), v->data(), latency ? "latency" : "throughput",
                     accepted_modes(kind).c_str(),
                     !m                      ? ""
                     : *m == run_mode::typed ? "; typed is for throughput"
                                             : "; request is for latency");
        return std::nullopt;
      }
      o.mode = *m;
    } else if (name == "--request-api" && latency) {
      const auto v = take();
      if (!v) return std::nullopt;
      if (*v == "future") {
        o.api = request_api::future;
      } else if (*v == "callback") {
        o.api = request_api::callback;
      } else {
        std::fprintf(stderr, "meshbus-perf: --request-api: '%.*s' is not future or callback\n",
                     static_cast<int>(v->size()), v->data());
        return std::nullopt;
      }
    } else if (name == "--handler-threads") {
      std::uint64_t n = 0;
      if (!take_positive(n, true)) return std::nullopt;
      if (n > max_handler_threads) {
        std::fprintf(stderr, "meshbus-perf: --handler-threads: at most %u\n", max_handler_threads);
        return std::nullopt;
      }
      o.handler_threads = static_cast<unsigned>(n);
    } else {
      std::fprintf(stderr, "meshbus-perf: unknown option '%.*s'\n", static_cast<int>(name.size()),
                   name.data());
      return std::nullopt;
    }
  }
  if (o.sizes.empty()) {
    std::fprintf(stderr, "meshbus-perf: %s needs --size\n", latency ? "latency" : "throughput");
    return std::nullopt;
  }
  if (o.mode == run_mode::typed) {
    const auto typed_min = min_typed_size();
    for (const auto size : o.sizes) {
      if (size >= typed_min) continue;
      std::fprintf(
          stderr,
          "meshbus-perf: --size: %zu bytes is too small for --mode typed: the encoded event takes at "
          "least %zu (its MessagePack map with the three field names, two 9-byte integers and a "
          "1-byte padding)\n",
          size, typed_min);
      return std::nullopt;
    }
  }
  return o;
}

std::string with_commas(double value) {
  auto digits = std::to_string(std::llround(value));
  for (auto at = static_cast<std::ptrdiff_t>(digits.size()) - 3; at > 0; at -= 3) {
    digits.insert(static_cast<std::size_t>(at), 1, ',');
  }
  return digits;
}

std::string json_string(std::string_view text) {
  std::string out = "\"";
  for (const char ch : text) {
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (static_cast<unsigned char>(ch) < 0x20) {
      char esc[8];
      std::snprintf(esc, sizeof esc, "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(ch)));
      out += esc;
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

/// `"<p>name":null,...` for each name, then `"<p>error":"..."`, for a failed side.
std::string json_failed_side(const std::string& p, std::initializer_list<const char*> names,
                             const std::string& error) {
  std::string out;
  for (const char* n : names) out += "\"" + p + n + "\":null,";
  return out + "\"" + p + "error\":" + json_string(error) + ",";
}

/// "<measured>/<baseline>" as JSON, or null.
std::string json_ratio(double measured, double baseline, bool both) {
  if (!both || baseline <= 0) return "null";
  char text[32];
  std::snprintf(text, sizeof text, "%.3f", measured / baseline);
  return text;
}

/// --verbose: one run's details, or why it failed, on stderr.
void print_details(const char* what, std::size_t size, const char* transport, const std::string& error,
                   const std::string& text) {
  if (!error.empty()) {
    std::fprintf(stderr, "[%s %s %zu B] failed: %s\n", what, transport, size, error.c_str());
  } else {
    std::fprintf(stderr, "[%s %s %zu B] %s\n", what, transport, size, text.c_str());
  }
}

// --- throughput output

using throughput_side = side_result<throughput_outcome>;

/// `"<prefix>events_per_s":..,"<prefix>mb_per_s":..,"<prefix>lost":..,` or nulls and an error.
std::string json_side(const char* prefix, const throughput_side& r, const run_spec& spec) {
  if (!r.outcome) {
    return json_failed_side(prefix, {"events_per_s", "mb_per_s", "lost"}, r.error);
  }
  const auto& o = *r.outcome;
  const double eps = o.events_per_s();
  char text[512];
  std::snprintf(text, sizeof text,
                "\"%sevents_per_s\":%.0f,\"%smb_per_s\":%.2f,\"%slost\":%llu,\"%sseconds\":%.6f,"
                "\"%ssend_seconds\":%.6f,\"%sflush_seconds\":%.6f,",
                prefix, eps, prefix, eps * static_cast<double>(spec.size) / 1e6, prefix,
                static_cast<unsigned long long>(spec.count - o.received), prefix, o.seconds, prefix,
                o.send_seconds, prefix, o.flush_seconds);
  return text;
}

void print_throughput_header(const command_options& o) {
  std::printf("# throughput, meshbus mode %s, handler threads %u: publisher and subscriber in two processes over "
              "TCP loopback\n",
              to_string(o.mode), o.handler_threads);
  if (o.mode == run_mode::typed) {
    std::printf(
        "# typed: meshbus publish(event) encodes and subscribe<T>() decodes a MessagePack event of the "
        "size (reliable); raw: plain bytes of the size\n");
  }
  std::printf("# raw = ZeroMQ PUB/SUB, XPUB_NODROP + blocking send, one message per event\n");
  std::printf("%8s %10s %13s %9s %9s %13s %12s %12s %6s\n", "size", "count", "raw ev/s", "raw MB/s",
              "raw lost", "meshbus ev/s", "meshbus MB/s", "meshbus lost", "ratio");
  std::fflush(stdout);
}

void print_throughput_row(const command_options& o, const run_spec& spec, const throughput_side& raw,
                          const throughput_side& mesh) {
  const bool both = raw.outcome && mesh.outcome;
  const double mesh_eps = mesh.outcome ? mesh.outcome->events_per_s() : 0.0;
  const double raw_eps = raw.outcome ? raw.outcome->events_per_s() : 0.0;
  const bool typed = spec.mode == run_mode::typed;
  if (o.json) {
    const auto requested =
        typed ? "\"requested_size\":" + std::to_string(spec.requested_size) + "," : std::string();
    std::printf("{\"size\":%zu,%s\"count\":%llu,\"mode\":\"%s\",\"handler_threads\":%u,%s%s\"ratio\":%s}\n",
                spec.size, requested.c_str(), static_cast<unsigned long long>(spec.count),
                to_string(spec.mode), spec.handler_threads, json_side("", mesh, spec).c_str(),
                json_side("baseline_", raw, spec).c_str(), json_ratio(mesh_eps, raw_eps, both).c_str());
  } else {
    auto cells = [&](const throughput_side& r, std::string& eps, std::string& mbs, std::string& lost) {
      if (!r.outcome) {
        eps = mbs = lost = "failed";
        return;
      }
      const double e = r.outcome->events_per_s();
      eps = with_commas(e);
      char text[32];
      std::snprintf(text, sizeof text, "%.1f", e * static_cast<double>(spec.size) / 1e6);
      mbs = text;
      lost = with_commas(static_cast<double>(spec.count - r.outcome->received));
    };
    std::string raw_eps_text, raw_mbs, raw_lost, mesh_eps_text, mesh_mbs, mesh_lost;
    cells(raw, raw_eps_text, raw_mbs, raw_lost);
    cells(mesh, mesh_eps_text, mesh_mbs, mesh_lost);
    char ratio_text[32] = "-";
    if (both && raw_eps > 0) std::snprintf(ratio_text, sizeof ratio_text, "%.2f", mesh_eps / raw_eps);
    std::printf("%8zu %10s %13s %9s %9s %13s %12s %12s %6s\n", spec.size,
                with_commas(static_cast<double>(spec.count)).c_str(), raw_eps_text.c_str(), raw_mbs.c_str(),
                raw_lost.c_str(), mesh_eps_text.c_str(), mesh_mbs.c_str(), mesh_lost.c_str(), ratio_text);
    if (typed && spec.size != spec.requested_size) {
      std::printf(
          "#   no typed event encodes to %zu bytes (the MessagePack string header grows there): %zu is the "
          "nearest\n",
          spec.requested_size, spec.size);
    }
    for (const auto* r : {&raw, &mesh}) {
      if (!r->outcome) std::printf("#   %s run failed: %s\n", r == &raw ? "raw" : "meshbus", r->error.c_str());
    }
  }
  std::fflush(stdout);
}

std::string describe(const throughput_outcome& o) {
  char text[160];
  std::snprintf(text, sizeof text, "end-to-end %.3f s, send loop %.3f s, flush %.3f s, first event after %.3f ms",
                o.seconds, o.send_seconds, o.flush_seconds, o.first_seconds * 1e3);
  return o.details.empty() ? text : text + ("; " + o.details);
}

int throughput_main(const command_options& o) {
  if (!o.json) print_throughput_header(o);
  bool all_completed = true;
  for (const auto size : o.sizes) {
    const auto spec = o.spec(size);
    auto run = [&](publisher& pub) { return run_throughput(pub, spec); };
    const auto raw = run_transport<throughput_outcome>([&] { return std::make_unique<raw_publisher>(size); }, run);
    const auto mesh = run_transport<throughput_outcome>(
        [&] { return std::make_unique<meshbus_publisher>(next_cluster(), spec); }, run);
    if (o.verbose) {
      print_details("throughput", size, "raw", raw.error, raw.outcome ? describe(*raw.outcome) : "");
      print_details("throughput", size, "meshbus", mesh.error, mesh.outcome ? describe(*mesh.outcome) : "");
    }
    print_throughput_row(o, spec, raw, mesh);
    all_completed = all_completed && raw.outcome && mesh.outcome;
  }
  return all_completed ? 0 : 1;
}

// --- latency output

using latency_side = side_result<latency_outcome>;

double to_us(std::int64_t ns) noexcept { return static_cast<double>(ns) / 1e3; }

/// `"<prefix><kind>p50_us":..,...,"<prefix><kind>mean_us":..,`, all null without `s`.
std::string json_summary(const char* prefix, const char* kind, const latency_summary* s) {
  const latency_summary none;
  const auto& v = s != nullptr ? *s : none;
  const std::pair<const char*, std::int64_t> fields[] = {
      {"p50_us", v.p50}, {"p99_us", v.p99}, {"p999_us", v.p999}, {"max_us", v.max}, {"mean_us", v.mean}};
  std::string out;
  for (const auto& [name, ns] : fields) {
    char text[32] = "null";
    if (s != nullptr) std::snprintf(text, sizeof text, "%.2f", to_us(ns));
    out += "\"" + std::string(prefix) + kind + name + "\":" + text + ",";
  }
  return out;
}

/// One-way and round-trip fields, or nulls and an error. --mode request has no
/// one-way figure: its p50_us... are the round trip, as its rtt_ fields.
std::string json_side(const char* prefix, const latency_side& r) {
  if (!r.outcome) {
    return json_failed_side(prefix,
                            {"p50_us", "p99_us", "p999_us", "max_us", "mean_us", "rtt_p50_us", "rtt_p99_us",
                             "rtt_p999_us", "rtt_max_us", "rtt_mean_us"},
                            r.error);
  }
  const auto& one_way = r.outcome->one_way;
  return json_summary(prefix, "", one_way ? &*one_way : &r.outcome->round_trip) +
         json_summary(prefix, "rtt_", &r.outcome->round_trip);
}

void print_latency_header(const command_options& o) {
  if (o.mode == run_mode::request) {
    std::printf(
        "# latency, meshbus request/reply, handler threads %u: one request at a time, requester and "
        "replier in two processes over TCP loopback\n",
        o.handler_threads);
    std::printf(
        "# raw = ZeroMQ DEALER -> ROUTER sending each request back; meshbus = %s(\"%.*s\")%s -> "
        "serve(\"%.*s\") returning a copy\n",
        o.api == request_api::future ? "request" : "request_async", static_cast<int>(echo_service.size()),
        echo_service.data(), o.api == request_api::future ? ".get()" : ", the completion sending the next",
        static_cast<int>(echo_service.size()), echo_service.data());
    std::printf(
        "# microseconds; round trip only (the replier takes no times); ratio = meshbus p50 / raw p50\n");
  } else {
    std::printf(
        "# latency, meshbus mode %s, handler threads %u: one event at a time, pinger and echoer in two "
        "processes over TCP loopback\n",
        to_string(o.mode), o.handler_threads);
    std::printf(
        "# microseconds; one-way = echoer's receipt - embedded send time; ratio = meshbus p50 / raw p50\n");
  }
  std::printf("%8s %8s %-10s %8s %8s %10s %8s %8s %8s %10s %8s %6s\n", "size", "count", "", "raw p50", "raw p99",
              "raw p99.9", "raw max", "mesh p50", "mesh p99", "mesh p99.9", "mesh max", "ratio");
  std::fflush(stdout);
}

void print_latency_row(const command_options& o, const run_spec& spec, const latency_side& raw,
                       const latency_side& mesh) {
  const bool both = raw.outcome && mesh.outcome;
  // The one-way or the round-trip summary of a side, if it has one.
  auto pick = [](const latency_side& r, bool round_trip) -> const latency_summary* {
    if (!r.outcome) return nullptr;
    if (round_trip) return &r.outcome->round_trip;
    return r.outcome->one_way ? &*r.outcome->one_way : nullptr;
  };
  auto ratio_of = [&](bool round_trip) -> std::optional<double> {
    const auto* m = pick(mesh, round_trip);
    const auto* b = pick(raw, round_trip);
    if (m == nullptr || b == nullptr || b->p50 <= 0) return std::nullopt;
    return static_cast<double>(m->p50) / static_cast<double>(b->p50);
  };
  if (o.json) {
    const auto ratio = [&](bool round_trip) {
      round_trip = round_trip || spec.mode == run_mode::request;  // its only figure
      const auto* m = pick(mesh, round_trip);
      const auto* b = pick(raw, round_trip);
      return json_ratio(m != nullptr ? static_cast<double>(m->p50) : 0,
                        b != nullptr ? static_cast<double>(b->p50) : 0, both && m != nullptr && b != nullptr);
    };
    std::printf(
        "{\"size\":%zu,\"count\":%llu,\"warmup\":%llu,\"mode\":\"%s\",%s\"handler_threads\":%u,%s%s"
        "\"ratio_p50\":%s,\"rtt_ratio_p50\":%s}\n",
        spec.size, static_cast<unsigned long long>(spec.count), static_cast<unsigned long long>(spec.warmup),
        to_string(spec.mode),
        spec.mode != run_mode::request         ? ""
        : spec.api == request_api::future ? "\"request_api\":\"future\","
                                          : "\"request_api\":\"callback\",",
        spec.handler_threads, json_side("", mesh).c_str(),
        json_side("baseline_", raw).c_str(), ratio(false).c_str(), ratio(true).c_str());
  } else {
    // --mode request has no one-way figure: its row is left out.
    const bool one_way_row = spec.mode != run_mode::request;
    for (const bool round_trip : {false, true}) {
      if (!round_trip && !one_way_row) continue;
      auto cells = [&](const latency_side& r) {
        if (!r.outcome) return std::string("  failed   failed     failed   failed");
        const auto* s = pick(r, round_trip);
        if (s == nullptr) return std::string("       -        -          -        -");
        char text[64];
        std::snprintf(text, sizeof text, "%8.1f %8.1f %10.1f %8.1f", to_us(s->p50), to_us(s->p99),
                      to_us(s->p999), to_us(s->max));
        return std::string(text);
      };
      char ratio_text[32] = "-";
      if (const auto ratio = ratio_of(round_trip))
        std::snprintf(ratio_text, sizeof ratio_text, "%.2f", *ratio);
      std::printf("%8zu %8s %-10s %s %s %6s\n", spec.size, with_commas(static_cast<double>(spec.count)).c_str(),
                  round_trip ? "round trip" : "one-way", cells(raw).c_str(), cells(mesh).c_str(), ratio_text);
    }
    for (const auto* r : {&raw, &mesh}) {
      if (!r->outcome) std::printf("#   %s run failed: %s\n", r == &raw ? "raw" : "meshbus", r->error.c_str());
    }
  }
  std::fflush(stdout);
}

/// The driver halves of a latency run in `spec.mode`: pinger, or requester for request.
std::unique_ptr<pinger> make_raw_pinger(const run_spec& spec) {
  if (spec.mode == run_mode::request) return std::make_unique<raw_requester>(spec.size);
  return std::make_unique<raw_pinger>(spec.size);
}

std::unique_ptr<pinger> make_meshbus_pinger(const run_spec& spec) {
  if (spec.mode == run_mode::request) return std::make_unique<meshbus_requester>(next_cluster(), spec);
  return std::make_unique<meshbus_pinger>(next_cluster(), spec);
}

int latency_main(const command_options& o) {
  if (!o.json) print_latency_header(o);
  bool all_completed = true;
  for (const auto size : o.sizes) {
    const auto spec = o.spec(size);
    auto run = [&](pinger& p) { return run_latency(p, spec); };
    const auto raw = run_transport<latency_outcome>([&] { return make_raw_pinger(spec); }, run);
    const auto mesh = run_transport<latency_outcome>([&] { return make_meshbus_pinger(spec); }, run);
    if (o.verbose) {
      print_details("latency", size, "raw", raw.error, raw.outcome ? raw.outcome->details : "");
      print_details("latency", size, "meshbus", mesh.error, mesh.outcome ? mesh.outcome->details : "");
    }
    print_latency_row(o, spec, raw, mesh);
    all_completed = all_completed && raw.outcome && mesh.outcome;
  }
  return all_completed ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  ::signal(SIGPIPE, SIG_IGN);  // a vanished child shows up as a failed write
  const std::vector<std::string_view> args(argv + 1, argv + argc);
  if (args.empty()) {
    std::fputs(help_text, stderr);
    return 2;
  }
  const std::vector<std::string_view> rest(args.begin() + 1, args.end());
  const auto command = args[0];
  if (command == "--help" || command == "-h" || command == "help") {
    std::fputs(help_text, stdout);
    return 0;
  }
  if (command == subscriber_command || command == echoer_command || command == replier_command) {
    return child_main(command, rest);
  }
  if (command != "throughput" && command != "latency") {
    std::fprintf(stderr, "meshbus-perf: unknown command '%.*s' (try --help)\n",
                 static_cast<int>(command.size()), command.data());
    return 2;
  }
  const auto kind = command == "latency" ? command_kind::latency : command_kind::throughput;
  bool help = false;
  const auto options = parse_options(kind, rest, help);
  if (help) {
    std::fputs(help_text, stdout);
    return 0;
  }
  if (!options) {
    std::fprintf(stderr, "meshbus-perf: see meshbus-perf --help\n");
    return 2;
  }
  return kind == command_kind::latency ? latency_main(*options) : throughput_main(*options);
}
