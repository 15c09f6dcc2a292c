// The plumbing every meshbus-perf run shares; see harness.hpp. The child process is
// meshbus_support's child_process; only the line protocol on its pipes is perf's own.
#include "harness.hpp"

#include <signal.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <system_error>

namespace meshbus_perf {

const char* to_string(run_mode m) noexcept {
  switch (m) {
    case run_mode::best_effort: return "best_effort";
    case run_mode::reliable: return "reliable";
    case run_mode::acknowledged: return "acknowledged";
    case run_mode::typed: return "typed";
    case run_mode::request: return "request";
    case run_mode::durable: return "durable";
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
    case run_mode::request:
    case run_mode::durable: o.delivery = meshbus::Delivery::reliable; break;
    case run_mode::acknowledged: o.delivery = meshbus::Delivery::acknowledged; break;
  }
  return o;
}

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

bool write_line(int fd, std::string_view text) {
  std::string line(text);
  std::replace(line.begin(), line.end(), '\n', ' ');
  line.push_back('\n');
  return meshbus::support::write_all(fd, line);
}

bool await_driver(std::string_view word, milliseconds timeout) {
  // A copy of stdin: the reader closes what it owns.
  meshbus::support::line_reader control(meshbus::support::unique_fd(::dup(STDIN_FILENO)));
  std::string line;
  return control.read_line(line, timeout) == meshbus::support::line_reader::status::line && line == word;
}

// ---------------------------------------------------------------------------
// the driver's view of the child process

perf_child::perf_child(std::string_view command, const std::vector<std::string>& args) {
  meshbus::support::spawn_options o;
  o.program = "/proc/self/exe";
  o.argv = {"meshbus-perf", std::string(command)};
  o.argv.insert(o.argv.end(), args.begin(), args.end());
  o.pipe_stdin = true;
  o.parent_death_signal = SIGKILL;
  try {
    process_ = meshbus::support::child_process(o);
  } catch (const std::system_error& e) {
    throw run_error(std::string("starting the child process failed: ") + e.what());
  }
  reader_ = meshbus::support::line_reader(process_.take_stdout());
}

void perf_child::send(std::string_view line) {
  if (!write_line(process_.stdin_fd(), line)) throw run_error("the child process is gone");
}

std::string perf_child::expect(std::string_view word, milliseconds timeout) {
  std::string line;
  switch (reader_.read_line(line, timeout)) {
    case meshbus::support::line_reader::status::line: break;
    case meshbus::support::line_reader::status::timeout:
      throw run_error("the child process did not report '" + std::string(word) + "' within " +
                      std::to_string(timeout.count() / 1000) + " s");
    case meshbus::support::line_reader::status::closed:
      throw run_error("the child process ended before reporting '" + std::string(word) + "'");
  }
  return rest_of(line, word);
}

std::string perf_child::rest_of(const std::string& line, std::string_view word) {
  const std::string_view view(line);
  if (view.starts_with("error ")) throw run_error("child: " + line.substr(6));
  if (!view.starts_with(word) || (view.size() > word.size() && view[word.size()] != ' ')) {
    throw run_error("unexpected line from the child process: '" + line + "'");
  }
  return view.size() > word.size() ? line.substr(word.size() + 1) : std::string();
}

int perf_child::wait_exit(milliseconds timeout) {
  process_.close_pipes();
  reader_.close();
  if (const auto status = process_.wait_exit(timeout)) return *status;
  return process_.kill_and_wait();
}

/// Starts the child half of a run: `command`, the spec, the transport's own arguments.
std::unique_ptr<perf_child> start_child(std::string_view command, const char* transport, const run_spec& spec,
                                        std::vector<std::string> extra) {
  std::vector<std::string> args{"--transport", transport,
                                "--size",      std::to_string(spec.size),
                                "--count",     std::to_string(spec.count),
                                "--warmup",    std::to_string(spec.warmup),
                                "--mode",      to_string(spec.mode),
                                "--handler-threads", std::to_string(spec.handler_threads)};
  for (auto& a : extra) args.push_back(std::move(a));
  return std::make_unique<perf_child>(command, args);
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

/// A private cluster name for each meshbus run.
std::string next_cluster() {
  static unsigned run_number = 0;
  return "perf-" + std::to_string(::getpid()) + "-" + std::to_string(run_number++);
}

scratch_dir::scratch_dir(bool wanted) {
  if (!wanted) return;
  char path[] = "/tmp/meshbus-perf-XXXXXX";
  if (::mkdtemp(path) == nullptr) throw run_error("cannot create a data directory under /tmp");
  path_ = path;
}

scratch_dir::~scratch_dir() {
  std::error_code ec;
  if (!path_.empty()) std::filesystem::remove_all(path_, ec);
}

/// `size` bytes: `marker`, then zeros.
std::string marked_payload(std::size_t size, char marker) {
  std::string payload(1, marker);
  payload.resize(size, '\0');
  return payload;
}

}  // namespace meshbus_perf
