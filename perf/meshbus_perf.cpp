// meshbus-perf: meshbus throughput side by side with raw ZeroMQ, publisher and
// subscriber in two processes on TCP loopback (this process publishes; the subscriber
// is this program re-executed through /proc/self/exe with a hidden subcommand; the
// two talk through the child's stdin and stdout pipes, its stderr is ours).
//
// What is measured, per size and transport: the publisher reads CLOCK_MONOTONIC (t0)
// just before its first measured send; the subscriber reads the same clock when the
// last measured event reaches it (return of zmq_msg_recv for raw ZeroMQ, the
// subscription handler for meshbus) and counts what arrived, stopping when it has all
// N events or when nothing new came for 3 s. events/s = received / (t_last - t0),
// MB/s = events/s x size / 1e6 (payload bytes only), lost = N - received. The rate
// is end to end: publishing, transport and receipt, including whatever was still
// queued when the publisher finished. Connecting, discovery and the slow-joiner
// warm-up happen before t0. Raw ZeroMQ is the lossless baseline: PUB with
// ZMQ_XPUB_NODROP=1 and blocking sends, default HWMs, one message per event.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
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

namespace {

using namespace std::chrono_literals;
using std::chrono::milliseconds;

constexpr std::string_view data_topic = "perf.data";
constexpr std::string_view subscriber_command = "_subscriber";  // hidden: the child half

// First byte of every event: measured, or a raw ZeroMQ warm-up (slow joiner).
constexpr char measured_marker = 'M';
constexpr char warmup_marker = 'W';

constexpr auto idle_timeout = 3s;      // subscriber: nothing new for this long ends a run
constexpr auto setup_timeout = 10s;    // child start-up, warm-up, wait_for_subscribers
constexpr auto go_timeout = 120s;      // subscriber waiting for the publisher's "go"
constexpr auto report_timeout = 600s;  // publisher waiting for the subscriber's result
constexpr auto exit_timeout = 10s;     // child exit after its result (meshbus stop() lingers)

constexpr std::size_t max_size = std::size_t{8} << 20;
constexpr std::uint64_t bytes_per_run = 200'000'000;
constexpr std::uint64_t min_default_count = 20'000;
constexpr std::uint64_t max_default_count = 5'000'000;

const char* const help_text = R"(meshbus-perf: meshbus throughput side by side with raw ZeroMQ

Usage:
  meshbus-perf throughput --size S[,S...] [--count N] [--mode best_effort] [--json] [--verbose]
  meshbus-perf latency     (reserved for the latency benchmark; not implemented yet)
  meshbus-perf --help

throughput runs a publisher (this process) and a subscriber (a second process,
started from this program) over TCP loopback, first with raw ZeroMQ PUB/SUB and
then with meshbus, for each size, and prints one row per size.

  --size S[,S...]  payload sizes in bytes (1 to 8388608), one or a comma-separated
                   list, e.g. 16,64,256,1024,4096,16384,65536
  --count N        events per run (default: about 200 MB of payload per run,
                   at least 20,000 and at most 5,000,000 events)
  --mode M         meshbus delivery mode; only best_effort (the default) for now
  --json           one JSON object per size and line instead of the table
  --verbose        per-run details on stderr: time in the publisher's send loop,
                   time to the first event, meshbus batch and stall counters

Measured: t0 = CLOCK_MONOTONIC just before the publisher's first measured send;
t_last = the same clock when the subscriber (another process) got the last
measured event. events/s = received / (t_last - t0); MB/s = events/s x size / 1e6
(payload only); lost = count - received (the subscriber gives up after 3 s
without a new event); ratio = meshbus events/s / raw events/s.

Raw ZeroMQ (the baseline): PUB with ZMQ_XPUB_NODROP=1 and blocking sends, so it
waits for queue space instead of dropping; default high-water marks; one message
per event; SUB subscribes "". Warm-up messages go first until the subscriber has
seen one (slow joiner); they are marked and not counted.
meshbus: one Node per process in a private cluster (perf-<pid>-<n>), loopback
discovery, default Options (send_policy block) without MESHBUS_* variables
(MESHBUS_LOG still applies); the publisher waits for the subscription
(wait_for_subscribers), publishes every event with publish() and then flush()es.

Exit status: 0 when every run completed (losses are reported, not failures),
1 when a run could not complete (setup failure, timeout, nothing received),
2 on a usage error.
)";

/// The delivery guarantee asked of meshbus. The reliability work adds reliable and
/// acknowledged; the subscriber process receives the mode too.
enum class delivery_mode : std::uint8_t { best_effort };

const char* to_string(delivery_mode m) noexcept {
  switch (m) {
    case delivery_mode::best_effort: return "best_effort";
  }
  return "?";
}

std::optional<delivery_mode> parse_mode(std::string_view text) {
  if (text == "best_effort") return delivery_mode::best_effort;
  return std::nullopt;
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

// ---------------------------------------------------------------------------
// the publisher's view of the subscriber process

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

/// The subscriber half of a run: this program (/proc/self/exe) with the hidden
/// subcommand. We write commands to its stdin and read its reports from its stdout;
/// its stderr is ours. Killed (this child alone, by pid) if still running when
/// destroyed; it also gets SIGKILL should we die first.
///
/// Lines from the subscriber: "ready" (set up), "warm" (raw only: a warm-up message
/// arrived), "result <received> <bad> <t_first_ns> <t_last_ns> [key=value...]" or
/// "error <text>". Lines to it: "go" (t0 is about to be taken).
class subscriber_process {
 public:
  explicit subscriber_process(const std::vector<std::string>& args) {
    std::vector<std::string> strings{"meshbus-perf", std::string(subscriber_command)};
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

  ~subscriber_process() {
    close_pipes();
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
  }

  subscriber_process(const subscriber_process&) = delete;
  subscriber_process& operator=(const subscriber_process&) = delete;

  void send(std::string_view line) {
    if (!write_line(to_child_, line)) throw run_error("the subscriber process is gone");
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
        throw run_error("the subscriber did not report '" + std::string(word) + "' within " +
                        std::to_string(timeout.count() / 1000) + " s");
      case line_reader::status::closed:
        throw run_error("the subscriber process ended before reporting '" + std::string(word) + "'");
    }
    return rest_of(line, word);
  }

  /// `line` without its leading `word`; a subscriber's "error" line becomes a run_error.
  static std::string rest_of(const std::string& line, std::string_view word) {
    const std::string_view view(line);
    if (view.starts_with("error ")) throw run_error("subscriber: " + line.substr(6));
    if (!view.starts_with(word) || (view.size() > word.size() && view[word.size()] != ' ')) {
      throw run_error("unexpected line from the subscriber: '" + line + "'");
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

// ---------------------------------------------------------------------------
// publisher side: the transports, and the run around them

struct run_spec {
  std::size_t size = 0;
  std::uint64_t count = 0;
  delivery_mode mode = delivery_mode::best_effort;
};

struct run_outcome {
  std::uint64_t received = 0;
  double seconds = 0;        ///< t_last - t0
  double send_seconds = 0;   ///< t0 to the end of the send loop (meshbus: and flush())
  double first_seconds = 0;  ///< t0 to the first event at the subscriber
  std::string details;       ///< transport counters, for --verbose

  double events_per_s() const noexcept { return seconds > 0 ? static_cast<double>(received) / seconds : 0; }
};

/// `size` bytes: `marker`, then zeros.
std::string marked_payload(std::size_t size, char marker) {
  std::string payload(1, marker);
  payload.resize(size, '\0');
  return payload;
}

/// One transport's publishing half. run_measured() drives it around the shared
/// process and pipe plumbing.
class publisher {
 public:
  virtual ~publisher() = default;
  /// "raw" or "meshbus": the subscriber process takes the same name.
  virtual const char* transport() const noexcept = 0;
  /// How the subscriber reaches us (appended to its arguments).
  virtual std::vector<std::string> subscriber_args() const = 0;
  /// From "the subscriber is set up" to "nothing sent from now on can miss it".
  virtual void await_subscriber(subscriber_process& sub) = 0;
  /// Sends spec.count measured events of spec.size bytes; throws run_error.
  virtual void publish_measured(const run_spec& spec) = 0;
  /// Counters worth showing with --verbose.
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

  void await_subscriber(subscriber_process& sub) override {
    // Slow joiner: PUB drops what it sends before the subscription arrives, so send
    // marked warm-up messages until the subscriber says it got one.
    const auto warmup = marked_payload(size_, warmup_marker);
    const auto deadline = std::chrono::steady_clock::now() + setup_timeout;
    for (;;) {
      zmq::message_t msg(warmup.data(), warmup.size());
      (void)socket_.send(msg, zmq::send_flags::dontwait);
      std::string line;
      switch (sub.poll_line(line, 1ms)) {
        case line_reader::status::line: (void)subscriber_process::rest_of(line, "warm"); return;
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

meshbus::Options node_options(const std::string& cluster, const char* role) {
  meshbus::Options o;
  o.cluster = cluster;
  o.name = std::string("meshbus-perf-") + role + "-" + std::to_string(::getpid());
  o.use_environment = false;  // defaults, loopback discovery: the same run everywhere
  return o;
}

class meshbus_publisher final : public publisher {
 public:
  explicit meshbus_publisher(std::string cluster)
      : cluster_(std::move(cluster)), node_(node_options(cluster_, "publisher")) {}

  const char* transport() const noexcept override { return "meshbus"; }
  std::vector<std::string> subscriber_args() const override { return {"--cluster", cluster_}; }

  void await_subscriber(subscriber_process&) override {
    if (!node_.wait_for_subscribers(data_topic, 1, setup_timeout)) {
      throw run_error(
          "the subscriber's subscription was not in effect within 10 s (beacon discovery on "
          "loopback, HELLO, READY)");
    }
  }

  void publish_measured(const run_spec& spec) override {
    const auto payload = marked_payload(spec.size, measured_marker);
    const auto view = std::as_bytes(std::span(payload.data(), payload.size()));
    for (std::uint64_t i = 0; i < spec.count; ++i) {
      // send_policy block: would_block only after Options::send_timeout (10 s) without space.
      unsigned refusals = 0;
      while (node_.publish(data_topic, view) == meshbus::PublishResult::would_block) {
        ++would_block_;
        if (++refusals == 3) {
          throw run_error("publish() returned would_block for 30 s after " + std::to_string(i) + " events");
        }
      }
    }
    if (!node_.flush(60s)) throw run_error("flush() did not hand everything to ZeroMQ within 60 s");
  }

  std::string details() const override {
    const auto s = node_.stats();
    const double per_batch =
        s.batches_sent != 0 ? static_cast<double>(s.events_published) / static_cast<double>(s.batches_sent)
                            : 0.0;
    char text[256];
    std::snprintf(text, sizeof text,
                  "publisher: batches_sent=%llu events_per_batch=%.1f bytes_sent=%llu send_stalls=%llu "
                  "would_block=%llu",
                  static_cast<unsigned long long>(s.batches_sent), per_batch,
                  static_cast<unsigned long long>(s.bytes_sent),
                  static_cast<unsigned long long>(s.send_stalls),
                  static_cast<unsigned long long>(would_block_));
    return text;
  }

 private:
  std::string cluster_;
  meshbus::Node node_;
  std::uint64_t would_block_ = 0;
};

std::int64_t parse_field(const std::vector<std::string_view>& fields, std::size_t index) {
  std::uint64_t v = 0;
  if (index >= fields.size() || !parse_uint(fields[index], v)) {
    throw run_error("malformed result line from the subscriber");
  }
  return static_cast<std::int64_t>(v);
}

/// One measured run: start the subscriber, let the transport connect, take t0,
/// publish, collect the subscriber's result.
run_outcome run_measured(publisher& pub, const run_spec& spec) {
  std::vector<std::string> args{"--transport", pub.transport(),
                                "--size",      std::to_string(spec.size),
                                "--count",     std::to_string(spec.count),
                                "--mode",      to_string(spec.mode)};
  for (auto& a : pub.subscriber_args()) args.push_back(std::move(a));
  subscriber_process sub(args);
  (void)sub.expect("ready", setup_timeout);
  pub.await_subscriber(sub);

  sub.send("go");
  const auto t0 = monotonic_ns();
  pub.publish_measured(spec);
  const auto sent = monotonic_ns();

  const auto result = sub.expect("result", report_timeout);
  const auto fields = split(result, ' ');
  run_outcome out;
  out.received = static_cast<std::uint64_t>(parse_field(fields, 0));
  const auto bad = parse_field(fields, 1);
  const auto t_first = parse_field(fields, 2);
  const auto t_last = parse_field(fields, 3);
  const int status = sub.wait_exit(exit_timeout);
  if (bad != 0) throw run_error(std::to_string(bad) + " events arrived with a wrong size or marker");
  if (out.received == 0) throw run_error("the subscriber received nothing");
  if (t_last <= t0) throw run_error("the subscriber's clock reading precedes t0");
  out.seconds = seconds_between(t0, t_last);
  out.send_seconds = seconds_between(t0, sent);
  out.first_seconds = seconds_between(t0, t_first);
  out.details = pub.details();
  for (std::size_t i = 4; i < fields.size(); ++i) {
    out.details += (out.details.empty() ? "subscriber: " : i == 4 ? "; subscriber: " : " ");
    out.details += fields[i];
  }
  if (status != 0) out.details += " (subscriber exit status " + std::to_string(status) + ")";
  return out;
}

// ---------------------------------------------------------------------------
// subscriber side (the child process)

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
  line_reader control(0);
  std::string line;
  if (control.read(line, go_timeout) != line_reader::status::line || line != "go") {
    throw std::runtime_error("no 'go' from the publisher");
  }
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

std::string raw_subscribe(receive_tally& tally, const std::string& endpoint) {
  zmq::context_t context(1);
  zmq::socket_t socket(context, zmq::socket_type::sub);
  socket.set(zmq::sockopt::rcvtimeo, 100);
  socket.set(zmq::sockopt::linger, 0);
  socket.set(zmq::sockopt::subscribe, "");
  socket.connect(endpoint);
  if (!write_line(1, "ready")) return {};

  std::atomic<bool> stop{false};
  std::atomic<bool> failed{false};
  std::thread receiver([&] {
    try {
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
    } catch (const zmq::error_t&) {
      failed.store(true);
    }
  });
  std::string result;
  try {
    result = watch_until_done(tally);
  } catch (...) {
    stop.store(true);
    receiver.join();
    throw;
  }
  stop.store(true);
  receiver.join();
  if (failed.load()) throw std::runtime_error("zmq_msg_recv failed");
  return result;
}

std::string meshbus_subscribe(receive_tally& tally, const std::string& cluster) {
  meshbus::Node node(node_options(cluster, "subscriber"));
  (void)node.subscribe(data_topic, [&tally](const meshbus::Event& ev) {
    const auto payload = ev.payload();
    tally.record(payload.size(), payload.empty() ? '\0' : static_cast<char>(payload[0]));
  });
  if (!write_line(1, "ready")) return {};
  auto result = watch_until_done(tally);
  const auto s = node.stats();
  node.stop();
  return result + " batches_received=" + std::to_string(s.batches_received) +
         " receive_pauses=" + std::to_string(s.receive_pauses) + " gaps=" + std::to_string(s.gaps) +
         " events_lost=" + std::to_string(s.events_lost);
}

/// The hidden subcommand: `_subscriber --transport raw|meshbus --size S --count N
/// --mode M (--endpoint E | --cluster C)`. Reports on stdout, see subscriber_process.
int subscriber_main(const std::vector<std::string_view>& args) {
  std::string transport, endpoint, cluster;
  std::uint64_t size = 0;
  std::uint64_t count = 0;
  try {
    for (std::size_t i = 0; i + 1 < args.size(); i += 2) {
      const auto name = args[i];
      const auto value = args[i + 1];
      bool ok = true;
      if (name == "--transport") {
        transport = value;
      } else if (name == "--size") {
        ok = parse_uint(value, size);
      } else if (name == "--count") {
        ok = parse_uint(value, count);
      } else if (name == "--mode") {
        ok = parse_mode(value).has_value();
      } else if (name == "--endpoint") {
        endpoint = value;
      } else if (name == "--cluster") {
        cluster = value;
      } else {
        ok = false;
      }
      if (!ok) throw std::runtime_error("bad subscriber argument " + std::string(name));
    }
    if (size == 0 || count == 0 || args.size() % 2 != 0) throw std::runtime_error("bad subscriber arguments");
    receive_tally tally(count, size);
    std::string result;
    if (transport == "raw" && !endpoint.empty()) {
      result = raw_subscribe(tally, endpoint);
    } else if (transport == "meshbus" && !cluster.empty()) {
      result = meshbus_subscribe(tally, cluster);
    } else {
      throw std::runtime_error("bad subscriber transport");
    }
    if (result.empty()) return 1;  // the publisher is gone
    write_line(1, "result " + result);
    return 0;
  } catch (const std::exception& e) {
    write_line(1, std::string("error ") + e.what());
    return 1;
  }
}

// ---------------------------------------------------------------------------
// the throughput command: options, runs, output

struct throughput_options {
  std::vector<std::size_t> sizes;
  std::optional<std::uint64_t> count;
  delivery_mode mode = delivery_mode::best_effort;
  bool json = false;
  bool verbose = false;
};

std::uint64_t default_count(std::size_t size) {
  return std::clamp<std::uint64_t>(bytes_per_run / size, min_default_count, max_default_count);
}

/// Parses the throughput options; prints why and returns nullopt on a usage error.
std::optional<throughput_options> parse_throughput(const std::vector<std::string_view>& args, bool& help) {
  throughput_options o;
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
    if (name == "--help" || name == "-h") {
      help = true;
      return std::nullopt;
    }
    if (name == "--json" || name == "--verbose") {
      (name == "--json" ? o.json : o.verbose) = true;
      continue;
    }
    const auto v = take();
    if (!v) return std::nullopt;
    if (name == "--size") {
      for (const auto part : split(*v, ',')) {
        std::uint64_t s = 0;
        if (!parse_uint(part, s) || s == 0 || s > max_size) {
          std::fprintf(stderr, "meshbus-perf: --size: '%.*s' is not a size from 1 to %zu bytes\n",
                       static_cast<int>(part.size()), part.data(), max_size);
          return std::nullopt;
        }
        o.sizes.push_back(static_cast<std::size_t>(s));
      }
    } else if (name == "--count") {
      std::uint64_t n = 0;
      if (!parse_uint(*v, n) || n == 0) {
        std::fprintf(stderr, "meshbus-perf: --count: '%.*s' is not a positive number\n",
                     static_cast<int>(v->size()), v->data());
        return std::nullopt;
      }
      o.count = n;
    } else if (name == "--mode") {
      const auto m = parse_mode(*v);
      if (!m) {
        std::fprintf(stderr, "meshbus-perf: --mode: '%.*s' is not supported yet (only best_effort)\n",
                     static_cast<int>(v->size()), v->data());
        return std::nullopt;
      }
      o.mode = *m;
    } else {
      std::fprintf(stderr, "meshbus-perf: unknown option '%.*s'\n", static_cast<int>(name.size()),
                   name.data());
      return std::nullopt;
    }
  }
  if (o.sizes.empty()) {
    std::fprintf(stderr, "meshbus-perf: throughput needs --size\n");
    return std::nullopt;
  }
  return o;
}

/// One side of a row: an outcome, or why the run could not complete.
struct side_result {
  std::optional<run_outcome> outcome;
  std::string error;
};

/// Builds the transport's publisher (which may fail: no socket, no Node) and runs it.
template <typename make_publisher>
side_result run_transport(const run_spec& spec, make_publisher make) {
  side_result r;
  try {
    auto pub = make();
    r.outcome = run_measured(*pub, spec);
  } catch (const std::exception& e) {
    r.error = e.what();
  }
  return r;
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

/// `"<prefix>events_per_s":..,"<prefix>mb_per_s":..,"<prefix>lost":..,` or nulls and an error.
std::string json_side(const char* prefix, const side_result& r, const run_spec& spec) {
  const std::string p(prefix);
  char text[512];
  if (!r.outcome) {
    return "\"" + p + "events_per_s\":null,\"" + p + "mb_per_s\":null,\"" + p + "lost\":null,\"" + p +
           "error\":" + json_string(r.error) + ",";
  }
  const auto& o = *r.outcome;
  const double eps = o.events_per_s();
  std::snprintf(text, sizeof text,
                "\"%sevents_per_s\":%.0f,\"%smb_per_s\":%.2f,\"%slost\":%llu,\"%sseconds\":%.6f,"
                "\"%ssend_seconds\":%.6f,",
                prefix, eps, prefix, eps * static_cast<double>(spec.size) / 1e6, prefix,
                static_cast<unsigned long long>(spec.count - o.received), prefix, o.seconds, prefix,
                o.send_seconds);
  return text;
}

void print_table_header(const throughput_options& o) {
  std::printf("# throughput, meshbus mode %s: publisher and subscriber in two processes over TCP loopback\n",
              to_string(o.mode));
  std::printf("# raw = ZeroMQ PUB/SUB, XPUB_NODROP + blocking send, one message per event\n");
  std::printf("%8s %10s %13s %9s %9s %13s %12s %12s %6s\n", "size", "count", "raw ev/s", "raw MB/s",
              "raw lost", "meshbus ev/s", "meshbus MB/s", "meshbus lost", "ratio");
  std::fflush(stdout);
}

void print_row(const throughput_options& o, const run_spec& spec, const side_result& raw,
               const side_result& mesh) {
  const bool both = raw.outcome && mesh.outcome;
  const double ratio = both && raw.outcome->events_per_s() > 0
                           ? mesh.outcome->events_per_s() / raw.outcome->events_per_s()
                           : 0.0;
  if (o.json) {
    std::string line = "{\"size\":" + std::to_string(spec.size) + ",\"count\":" + std::to_string(spec.count) +
                       ",\"mode\":\"" + to_string(spec.mode) + "\"," + json_side("", mesh, spec) +
                       json_side("baseline_", raw, spec);
    char ratio_text[64];
    if (both) {
      std::snprintf(ratio_text, sizeof ratio_text, "\"ratio\":%.3f}", ratio);
    } else {
      std::snprintf(ratio_text, sizeof ratio_text, "\"ratio\":null}");
    }
    std::printf("%s%s\n", line.c_str(), ratio_text);
  } else {
    auto cells = [&](const side_result& r, std::string& eps, std::string& mbs, std::string& lost) {
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
    std::string raw_eps, raw_mbs, raw_lost, mesh_eps, mesh_mbs, mesh_lost;
    cells(raw, raw_eps, raw_mbs, raw_lost);
    cells(mesh, mesh_eps, mesh_mbs, mesh_lost);
    char ratio_text[32] = "-";
    if (both) std::snprintf(ratio_text, sizeof ratio_text, "%.2f", ratio);
    std::printf("%8zu %10s %13s %9s %9s %13s %12s %12s %6s\n", spec.size,
                with_commas(static_cast<double>(spec.count)).c_str(), raw_eps.c_str(), raw_mbs.c_str(),
                raw_lost.c_str(), mesh_eps.c_str(), mesh_mbs.c_str(), mesh_lost.c_str(), ratio_text);
    for (const auto* r : {&raw, &mesh}) {
      if (!r->outcome)
        std::printf("#   %s run failed: %s\n", r == &raw ? "raw" : "meshbus", r->error.c_str());
    }
  }
  std::fflush(stdout);
}

void print_details(const run_spec& spec, const char* transport, const side_result& r) {
  if (!r.outcome) {
    std::fprintf(stderr, "[%s %zu B] failed: %s\n", transport, spec.size, r.error.c_str());
    return;
  }
  const auto& o = *r.outcome;
  std::fprintf(stderr, "[%s %zu B] end-to-end %.3f s, send loop %.3f s, first event after %.3f ms%s%s\n",
               transport, spec.size, o.seconds, o.send_seconds, o.first_seconds * 1e3,
               o.details.empty() ? "" : "; ", o.details.c_str());
}

int throughput_main(const throughput_options& o) {
  if (!o.json) print_table_header(o);
  bool all_completed = true;
  unsigned run_number = 0;
  for (const auto size : o.sizes) {
    const run_spec spec{size, o.count.value_or(default_count(size)), o.mode};
    const auto raw = run_transport(spec, [&] { return std::make_unique<raw_publisher>(size); });
    const auto cluster = "perf-" + std::to_string(::getpid()) + "-" + std::to_string(run_number++);
    const auto mesh = run_transport(spec, [&] { return std::make_unique<meshbus_publisher>(cluster); });
    if (o.verbose) {
      print_details(spec, "raw", raw);
      print_details(spec, "meshbus", mesh);
    }
    print_row(o, spec, raw, mesh);
    all_completed = all_completed && raw.outcome && mesh.outcome;
  }
  return all_completed ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  ::signal(SIGPIPE, SIG_IGN);  // a vanished subscriber shows up as a failed write
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
  if (command == subscriber_command) return subscriber_main(rest);
  if (command == "latency") {
    std::fprintf(stderr, "meshbus-perf latency: not implemented yet\n");
    return 2;
  }
  if (command != "throughput") {
    std::fprintf(stderr, "meshbus-perf: unknown command '%.*s' (try --help)\n",
                 static_cast<int>(command.size()), command.data());
    return 2;
  }
  bool help = false;
  const auto options = parse_throughput(rest, help);
  if (help) {
    std::fputs(help_text, stdout);
    return 0;
  }
  if (!options) {
    std::fprintf(stderr, "meshbus-perf: see meshbus-perf --help\n");
    return 2;
  }
  return throughput_main(*options);
}
