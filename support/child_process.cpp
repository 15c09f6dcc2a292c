// fork + exec with pipes and a pidfd, and line reading; see child_process.hpp. Everything
// a child needs (argv, environment, the message for a failed exec) is built before fork(),
// and the child calls only async-signal-safe functions until exec.
#include "support/child_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <stdexcept>
#include <system_error>
#include <utility>

extern char** environ;

namespace meshbus::support {
namespace {

using steady = std::chrono::steady_clock;

std::system_error system_failure(const char* call) {
  return std::system_error(errno, std::generic_category(), call);
}

/// "NAME=value" strings: this process's environment with `changes` applied.
std::vector<std::string> environment_with(const std::map<std::string, std::string>& changes) {
  std::vector<std::string> out;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string entry(*e);
    const auto eq = entry.find('=');
    if (eq != std::string::npos && changes.count(entry.substr(0, eq)) != 0) continue;
    out.push_back(std::move(entry));
  }
  for (const auto& [name, value] : changes) out.push_back(name + "=" + value);
  return out;
}

std::vector<char*> pointers_to(std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

/// The child between fork and exec: async-signal-safe calls only.
[[noreturn]] void exec_child(const spawn_options& o, const char* program, char* const* argv, char* const* envp,
                             const pipe_ends& in, const pipe_ends& out, const pipe_ends& err, pid_t parent,
                             std::string_view exec_failed) {
  if (o.parent_death_signal != 0) {
    ::prctl(PR_SET_PDEATHSIG, o.parent_death_signal);
    if (::getppid() != parent) ::_exit(1);  // the parent is already gone
  }
  const int err_fd = o.err == stderr_to::pipe ? err.write.get() : o.err == stderr_to::merged ? out.write.get() : -1;
  if ((in.read.valid() && ::dup2(in.read.get(), STDIN_FILENO) < 0) ||
      ::dup2(out.write.get(), STDOUT_FILENO) < 0 || (err_fd >= 0 && ::dup2(err_fd, STDERR_FILENO) < 0) ||
      (o.keep_fd >= 0 && ::fcntl(o.keep_fd, F_SETFD, 0) != 0)) {
    ::_exit(126);
  }
  // A child starts as a fresh program would: no signal blocked (a parent's signal
  // watcher blocks SIGINT and SIGTERM in all its threads), SIGPIPE at its default.
  sigset_t none;
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::signal(SIGPIPE, SIG_DFL);
  ::execve(program, argv, envp);
  (void)write_all(STDERR_FILENO, exec_failed);
  ::_exit(127);
}

}  // namespace

// --- unique_fd, pipes, reading and writing ------------------------------------

unique_fd& unique_fd::operator=(unique_fd&& other) noexcept {
  if (this != &other) reset(other.release());
  return *this;
}

int unique_fd::release() noexcept {
  return std::exchange(fd_, -1);
}

void unique_fd::reset(int fd) noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

pipe_ends make_pipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw system_failure("pipe2");
  pipe_ends ends{unique_fd(fds[0]), unique_fd(fds[1])};
  for (auto* end : {&ends.read, &ends.write}) {
    if (end->get() > 2) continue;
    const int moved = ::fcntl(end->get(), F_DUPFD_CLOEXEC, 3);
    if (moved < 0) throw system_failure("fcntl(F_DUPFD_CLOEXEC)");
    end->reset(moved);
  }
  return ends;
}

bool write_all(int fd, std::string_view text) noexcept {
  while (!text.empty()) {
    const auto n = ::write(fd, text.data(), text.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    text.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

bool read_some(int fd, std::string& out) {
  char chunk[65536];
  const auto n = ::read(fd, chunk, sizeof chunk);
  if (n > 0) {
    out.append(chunk, static_cast<std::size_t>(n));
    return true;
  }
  return n < 0 && (errno == EINTR || errno == EAGAIN);
}

// --- child_process -------------------------------------------------------------

child_process::child_process(const spawn_options& o) {
  if (o.argv.empty()) throw std::invalid_argument("spawn_options::argv is empty");
  const std::string program = o.program.empty() ? o.argv.front() : o.program;
  auto args = o.argv;
  const auto argv = pointers_to(args);
  auto env_strings = o.env.empty() ? std::vector<std::string>{} : environment_with(o.env);
  const auto env_pointers = pointers_to(env_strings);
  char* const* envp = o.env.empty() ? environ : env_pointers.data();
  const std::string exec_failed = "cannot execute " + program + "\n";

  pipe_ends in = o.pipe_stdin ? make_pipe() : pipe_ends{};
  pipe_ends out = make_pipe();
  pipe_ends err = o.err == stderr_to::pipe ? make_pipe() : pipe_ends{};
  const pid_t parent = ::getpid();
  pid_ = ::fork();
  if (pid_ < 0) throw system_failure("fork");
  if (pid_ == 0) exec_child(o, program.c_str(), argv.data(), envp, in, out, err, parent, exec_failed);

  stdin_ = std::move(in.write);
  stdout_ = std::move(out.read);
  stderr_ = std::move(err.read);
  // The syscall directly: glibc 2.36's <sys/pidfd.h> lacks extern "C". A pidfd is close-on-exec.
  exit_.reset(static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0)));
  if (!exit_.valid()) {
    const auto failure = system_failure("pidfd_open");
    (void)kill_and_wait();
    throw failure;
  }
}

child_process::child_process(child_process&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      status_(std::exchange(other.status_, std::nullopt)),
      stdin_(std::move(other.stdin_)),
      stdout_(std::move(other.stdout_)),
      stderr_(std::move(other.stderr_)),
      exit_(std::move(other.exit_)) {}

child_process& child_process::operator=(child_process&& other) noexcept {
  if (this != &other) {
    (void)kill_and_wait();
    pid_ = std::exchange(other.pid_, -1);
    status_ = std::exchange(other.status_, std::nullopt);
    stdin_ = std::move(other.stdin_);
    stdout_ = std::move(other.stdout_);
    stderr_ = std::move(other.stderr_);
    exit_ = std::move(other.exit_);
  }
  return *this;
}

child_process::~child_process() {
  (void)kill_and_wait();
}

void child_process::close_pipes() noexcept {
  stdin_.reset();
  stdout_.reset();
  stderr_.reset();
}

void child_process::signal(int sig) noexcept {
  if (running()) ::kill(pid_, sig);
}

void child_process::record(int wait_status) noexcept {
  status_ = WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : 128 + WTERMSIG(wait_status);
  exit_.reset();
}

bool child_process::poll_exit() noexcept {
  if (!running()) return status_.has_value();
  int wait_status = 0;
  if (::waitpid(pid_, &wait_status, WNOHANG) == pid_) record(wait_status);
  return status_.has_value();
}

std::optional<int> child_process::wait_exit(std::chrono::milliseconds timeout) {
  const auto deadline = steady::now() + timeout;
  while (!poll_exit()) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - steady::now());
    if (left.count() <= 0) return std::nullopt;
    pollfd exited{exit_.get(), POLLIN, 0};
    if (::poll(&exited, 1, static_cast<int>(left.count())) < 0 && errno != EINTR) throw system_failure("poll");
  }
  return status_;
}

int child_process::kill_and_wait() noexcept {
  if (running()) {
    ::kill(pid_, SIGKILL);
    int wait_status = 0;
    while (::waitpid(pid_, &wait_status, 0) < 0 && errno == EINTR) {
    }
    record(wait_status);
  }
  return status_.value_or(-1);
}

// --- line_reader ---------------------------------------------------------------

bool line_reader::take_line(std::string& line) {
  const auto nl = buffer_.find('\n');
  if (nl == std::string::npos) return false;
  line.assign(buffer_, 0, nl);
  buffer_.erase(0, nl + 1);
  return true;
}

void line_reader::read_available(const std::function<void(std::string_view)>& on_line) {
  if (!open()) return;
  const bool more = read_some(fd_.get(), buffer_);
  std::string line;
  while (take_line(line)) on_line(line);
  if (more) return;
  if (!buffer_.empty()) on_line(std::exchange(buffer_, {}));
  close();
}

line_reader::status line_reader::read_line(std::string& line, std::chrono::milliseconds timeout) {
  const auto deadline = steady::now() + timeout;
  for (;;) {
    if (take_line(line)) return status::line;
    if (!open()) {
      if (buffer_.empty()) return status::closed;
      line = std::exchange(buffer_, {});  // an unfinished last line
      return status::line;
    }
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - steady::now());
    pollfd readable{fd_.get(), POLLIN, 0};
    const int ready = ::poll(&readable, 1, static_cast<int>(std::max<std::int64_t>(left.count(), 0)));
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0) {
      if (steady::now() >= deadline) return status::timeout;
      continue;
    }
    if (ready < 0 || !read_some(fd_.get(), buffer_)) close();
  }
}

}  // namespace meshbus::support
