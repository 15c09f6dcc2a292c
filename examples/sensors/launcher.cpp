// The launcher: picks a cluster name unique to this run, starts the role processes
// (subscribers first, then sensors), forwards their output, waits for them within a
// deadline (killing only its own children, by pid, when it passes) and prints the table.
//
// The role processes are this same binary, re-executed through /proc/self/exe with a
// hidden --role. One binary means `./run demo` has one thing to find and build, and the
// launcher and its children can never come from different builds.
#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <functional>
#include <optional>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "console.hpp"
#include "report.hpp"
#include "roles.hpp"

namespace sensors_demo {
namespace {

using std::chrono::steady_clock;

// Reads one pipe and hands on whole lines.
class line_reader {
 public:
  line_reader() = default;
  explicit line_reader(int fd) : fd_(fd) {}
  line_reader(const line_reader&) = delete;
  line_reader& operator=(const line_reader&) = delete;
  line_reader(line_reader&& o) noexcept : fd_(std::exchange(o.fd_, -1)), partial_(std::move(o.partial_)) {}
  line_reader& operator=(line_reader&& o) noexcept {
    if (this != &o) {
      close();
      fd_ = std::exchange(o.fd_, -1);
      partial_ = std::move(o.partial_);
    }
    return *this;
  }
  ~line_reader() { close(); }

  int fd() const noexcept { return fd_; }
  bool open() const noexcept { return fd_ >= 0; }

  // Reads what is there; calls on_line for every complete line (and for the rest at
  // end of file). Closes the pipe at end of file or on error.
  template <typename F>
  void read_lines(F&& on_line) {
    char buffer[4096];
    const auto n = ::read(fd_, buffer, sizeof buffer);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
    if (n <= 0) {
      if (!partial_.empty()) on_line(std::exchange(partial_, {}));
      close();
      return;
    }
    partial_.append(buffer, static_cast<std::size_t>(n));
    std::size_t start = 0;
    for (auto end = partial_.find('\n'); end != std::string::npos; end = partial_.find('\n', start)) {
      on_line(std::string_view(partial_).substr(start, end - start));
      start = end + 1;
    }
    partial_.erase(0, start);
  }

  void close() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
  std::string partial_;
};

struct child {
  std::string name;
  role process_role = role::sensor;
  pid_t pid = -1;
  int pidfd = -1;
  line_reader out;
  line_reader err;
  std::optional<int> exit_code;  ///< set when reaped: the exit status, or 128 + signal
  bool killed = false;           ///< by us, at the deadline
  std::optional<process_report> report;
};

struct pipe_pair {
  int read = -1;
  int write = -1;
};

pipe_pair make_pipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw std::system_error(errno, std::generic_category(), "pipe2");
  return {fds[0], fds[1]};
}

// Forks and execs this binary as `c`. The child gets fresh stdout/stderr pipes and
// keeps `report_fd` open across exec; every other descriptor of ours is close-on-exec.
void spawn(child& c, const std::vector<std::string>& args, int report_fd) {
  auto out = make_pipe();
  auto err = make_pipe();
  // Everything the child needs is built before fork().
  std::vector<char*> argv;
  std::string self = "meshbus-demo";
  argv.push_back(self.data());
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const pid_t parent = ::getpid();

  const pid_t pid = ::fork();
  if (pid < 0) throw std::system_error(errno, std::generic_category(), "fork");
  if (pid == 0) {
    // Die with the launcher rather than linger as an orphan.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(1);
    if (::dup2(out.write, STDOUT_FILENO) < 0 || ::dup2(err.write, STDERR_FILENO) < 0 ||
        ::fcntl(report_fd, F_SETFD, 0) != 0) {
      ::_exit(126);
    }
    ::execv("/proc/self/exe", argv.data());
    constexpr std::string_view msg = "meshbus-demo: cannot re-execute /proc/self/exe\n";
    write_all(STDERR_FILENO, msg);
    ::_exit(127);
  }
  ::close(out.write);
  ::close(err.write);
  c.pid = pid;
  c.out = line_reader(out.read);
  c.err = line_reader(err.read);
  // A pidfd turns "this child has exited" into a readable descriptor that poll() can
  // wait on with the pipes. (The syscall directly: glibc 2.36's <sys/pidfd.h> lacks
  // extern "C".)
  c.pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (c.pidfd < 0) throw std::system_error(errno, std::generic_category(), "pidfd_open");
}

void reap(child& c) {
  int status = 0;
  if (::waitpid(c.pid, &status, 0) != c.pid) return;
  c.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  ::close(c.pidfd);
  c.pidfd = -1;
}

bool running(const child& c) {
  return !c.exit_code.has_value();
}

// Polls every open pipe and every running child until all children are reaped and all
// pipes are drained, or until `deadline`. Returns false when the deadline passed.
bool supervise(std::vector<child>& children, line_reader& reports, const console& out,
               steady_clock::time_point deadline) {
  for (;;) {
    std::vector<pollfd> fds;
    std::vector<std::function<void()>> on_ready;
    auto watch = [&](int fd, std::function<void()> f) {
      fds.push_back({fd, POLLIN, 0});
      on_ready.push_back(std::move(f));
    };
    if (reports.open()) {
      watch(reports.fd(), [&] {
        reports.read_lines([&](std::string_view line) {
          auto r = decode_report(line);
          if (!r) {
            out.error(fmt::format("ignored a malformed report: {}", line));
            return;
          }
          for (auto& c : children) {
            if (c.name == r->name) c.report = std::move(*r);
          }
        });
      });
    }
    for (auto& c : children) {
      if (c.out.open()) {
        watch(c.out.fd(), [&c] {
          c.out.read_lines(
              [](std::string_view line) { write_all(STDOUT_FILENO, fmt::format("{}\n", line)); });
        });
      }
      if (c.err.open()) {
        watch(c.err.fd(), [&c, &out] {
          // The child tags its own error lines; library log lines get its tag here.
          const console tag(c.name, out.color(), false);
          c.err.read_lines([&tag](std::string_view line) {
            write_all(STDERR_FILENO, tag.has_tag(line) ? fmt::format("{}\n", line) : tag.tagged(line));
          });
        });
      }
      if (running(c)) watch(c.pidfd, [&c] { reap(c); });
    }
    if (fds.empty()) return true;

    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady_clock::now());
    if (left.count() <= 0) return false;
    const int n = ::poll(fds.data(), fds.size(), static_cast<int>(left.count()));
    if (n < 0 && errno != EINTR) throw std::system_error(errno, std::generic_category(), "poll");
    for (std::size_t i = 0; n > 0 && i < fds.size(); ++i) {
      if (fds[i].revents != 0) on_ready[i]();
    }
  }
}

std::string exit_text(const child& c) {
  if (!c.exit_code) return "running";
  if (c.killed) return "killed";
  if (*c.exit_code > 128) return fmt::format("signal {}", *c.exit_code - 128);
  return std::to_string(*c.exit_code);
}

// What went wrong with one process as a whole, if anything.
std::optional<std::string> process_problem(const child& c) {
  if (c.killed) return fmt::format("{} was still running at the deadline and was killed", c.name);
  if (!c.report) return fmt::format("{} sent no report (exit {})", c.name, exit_text(c));
  if (!c.report->ok) return fmt::format("{}: {}", c.name, c.report->note);
  if (c.exit_code != 0) return fmt::format("{} exited with {}", c.name, exit_text(c));
  return std::nullopt;
}

// The final table and verdict. A subscriber's expected count comes from what the
// sensors say they sent (the configured count for a sensor that did not report), so
// the launcher checks the subscribers' own bookkeeping too. Returns the exit code.
int summarize(const demo_config& cfg, const std::vector<child>& children) {
  const auto kinds_per_sensor = reading_kinds(role::sensor).size();
  std::uint64_t per_topic = 0;  // readings per topic, summed over the sensors
  for (const auto& c : children) {
    if (c.process_role != role::sensor) continue;
    per_topic += c.report ? c.report->sent / kinds_per_sensor : static_cast<std::uint64_t>(cfg.readings);
  }

  constexpr std::string_view row = "{:<10} {:<10} {:>6} {:>9} {:>5} {:>13}  {}\n";
  std::string table =
      fmt::format(fmt::runtime(row), "process", "role", "sent", "received", "lost", "out of order", "exit");
  std::vector<std::string> problems;
  for (const auto& c : children) {
    std::string sent = "-", received = "-", lost = "-", disorder = "-";
    if (const auto* r = c.report ? &*c.report : nullptr; r != nullptr && c.process_role == role::sensor) {
      sent = std::to_string(r->sent);
      const auto wanted = static_cast<std::uint64_t>(cfg.readings) * kinds_per_sensor;
      if (r->sent != wanted)
        problems.push_back(fmt::format("{} sent {} of {} readings", c.name, r->sent, wanted));
    } else if (r != nullptr) {
      const auto expected = per_topic * reading_kinds(c.process_role).size();
      const auto missing = expected > r->received ? expected - r->received : 0;
      received = std::to_string(r->received);
      lost = std::to_string(missing);
      disorder = std::to_string(r->out_of_order);
      if (missing != 0)
        problems.push_back(fmt::format("{} lost {} of {} readings", c.name, missing, expected));
      if (r->out_of_order != 0) {
        problems.push_back(fmt::format("{} saw {} readings out of order", c.name, r->out_of_order));
      }
    }
    if (auto p = process_problem(c)) problems.push_back(std::move(*p));
    table += fmt::format(fmt::runtime(row), c.name, to_string(c.process_role), sent, received, lost, disorder,
                         exit_text(c));
  }
  const bool ok = problems.empty();
  table += ok ? "OK: every event arrived once and in order\n"
              : fmt::format("FAILED: {}\n", fmt::join(problems, "; "));
  write_all(STDOUT_FILENO, cfg.quiet ? table : "\n" + table);
  return ok ? 0 : 1;
}

}  // namespace

int run_launcher(demo_config cfg) {
  cfg.cluster = fmt::format("demo-{}", ::getpid());
  cfg.color = ::isatty(STDOUT_FILENO) == 1;
  const console out(cfg.name, cfg.color, cfg.quiet);

  std::vector<child> children;
  auto add = [&children](std::string name, role r) {
    auto& c = children.emplace_back();
    c.name = std::move(name);
    c.process_role = r;
  };
  add("dashboard", role::dashboard);
  add("alerting", role::alerting);
  for (int i = 1; i <= cfg.sensors; ++i) add(sensor_name(i), role::sensor);

  out.print(fmt::format("cluster '{}': {} processes find each other by UDP beacon on loopback - no broker",
                        cfg.cluster, children.size()));
  out.print(fmt::format("each sensor sends {} temperature and {} humidity readings at {} Hz, then 'done'",
                        cfg.readings, cfg.readings, cfg.rate_hz));

  auto reports = make_pipe();
  line_reader report_reader(reports.read);
  const auto deadline = steady_clock::now() + launcher_deadline(cfg);
  // Subscribers first, then sensors (which also wait for the subscribers to be ready).
  for (auto& c : children) {
    spawn(c, role_arguments(cfg, c.process_role, c.name, reports.write), reports.write);
    out.print(fmt::format("started {:<9} pid {}", c.name, c.pid));
  }
  ::close(reports.write);  // the children hold the only write ends: EOF when all are gone

  if (!supervise(children, report_reader, out, deadline)) {
    for (auto& c : children) {
      if (!running(c)) continue;
      out.error(fmt::format("deadline passed: killing {} (pid {})", c.name, c.pid));
      ::kill(c.pid, SIGKILL);
      c.killed = true;
      reap(c);
    }
    // Whatever the killed children left in their pipes (they are closed now).
    supervise(children, report_reader, out, steady_clock::now() + std::chrono::seconds(1));
  }
  return summarize(cfg, children);
}

}  // namespace sensors_demo
