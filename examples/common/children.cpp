// Fork/exec of this binary, pipes read by line, pidfds, one poll() loop; see
// children.hpp. Everything a child needs is built before fork(), and the child only
// calls async-signal-safe functions until exec.
#include "common/children.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <system_error>

#include "common/console.hpp"

namespace meshbus_examples {

line_reader::line_reader(line_reader&& o) noexcept : fd_(std::exchange(o.fd_, -1)), partial_(std::move(o.partial_)) {}

line_reader& line_reader::operator=(line_reader&& o) noexcept {
  if (this != &o) {
    close();
    fd_ = std::exchange(o.fd_, -1);
    partial_ = std::move(o.partial_);
  }
  return *this;
}

void line_reader::read_lines(const std::function<void(std::string_view)>& on_line) {
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

void line_reader::close() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

pipe_pair make_pipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw std::system_error(errno, std::generic_category(), "pipe2");
  return {fds[0], fds[1]};
}

std::string child_process::exit_text() const {
  if (!exit_code) return "running";
  if (killed) return "killed";
  if (*exit_code > 128) return "signal " + std::to_string(*exit_code - 128);
  return std::to_string(*exit_code);
}

void spawn(child_process& c, std::string_view program, const std::vector<std::string>& args, int inherit_fd) {
  auto out = make_pipe();
  auto err = make_pipe();
  std::vector<char*> argv;
  std::string self(program);
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
        (inherit_fd >= 0 && ::fcntl(inherit_fd, F_SETFD, 0) != 0)) {
      ::_exit(126);
    }
    ::execv("/proc/self/exe", argv.data());
    constexpr std::string_view msg = "cannot re-execute /proc/self/exe\n";
    write_all(STDERR_FILENO, msg);
    ::_exit(127);
  }
  ::close(out.write);
  ::close(err.write);
  c.pid = pid;
  c.out = line_reader(out.read);
  c.err = line_reader(err.read);
  // A pidfd turns "this child has exited" into a descriptor poll() can wait on with
  // the pipes. (The syscall directly: glibc 2.36's <sys/pidfd.h> lacks extern "C".)
  c.pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (c.pidfd < 0) throw std::system_error(errno, std::generic_category(), "pidfd_open");
}

void reap(child_process& c) {
  int status = 0;
  if (::waitpid(c.pid, &status, 0) != c.pid) return;
  c.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  ::close(c.pidfd);
  c.pidfd = -1;
}

void kill_child(child_process& c, int sig) {
  if (!c.running()) return;
  ::kill(c.pid, sig);
  if (sig == SIGKILL) c.killed = true;
}

bool supervise(std::vector<child_process>& children, const supervision& what,
               std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    if (what.done && what.done()) return true;
    std::vector<pollfd> fds;
    std::vector<std::function<void()>> on_ready;
    auto watch = [&](int fd, std::function<void()> f) {
      fds.push_back({fd, POLLIN, 0});
      on_ready.push_back(std::move(f));
    };
    if (what.extra != nullptr && what.extra->open()) {
      watch(what.extra->fd(), [&] { what.extra->read_lines([&](std::string_view line) { what.on_extra(line); }); });
    }
    for (auto& c : children) {
      if (c.out.open()) {
        watch(c.out.fd(), [&] { c.out.read_lines([&](std::string_view line) { what.on_out(c, line); }); });
      }
      if (c.err.open()) {
        watch(c.err.fd(), [&] { c.err.read_lines([&](std::string_view line) { what.on_err(c, line); }); });
      }
      if (c.running()) watch(c.pidfd, [&c] { reap(c); });
    }
    if (fds.empty()) return true;

    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    const int n = ::poll(fds.data(), fds.size(), static_cast<int>(left.count()));
    if (n < 0 && errno != EINTR) throw std::system_error(errno, std::generic_category(), "poll");
    for (std::size_t i = 0; n > 0 && i < fds.size(); ++i) {
      if (fds[i].revents != 0) on_ready[i]();
    }
  }
}

void kill_remaining(std::vector<child_process>& children, const std::function<void(const child_process&)>& on_kill) {
  for (auto& c : children) {
    if (!c.running()) continue;
    on_kill(c);
    kill_child(c, SIGKILL);
    reap(c);
  }
}

}  // namespace meshbus_examples
