// The demo launchers' children on top of meshbus_support, and the one poll() loop that
// reads their pipes and sees them exit; see children.hpp.
#include "common/children.hpp"

#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <system_error>

namespace meshbus_examples {

std::string child_process::exit_text() const {
  const auto code = exit_code();
  if (!code) return "running";
  if (killed) return "killed";
  if (*code > 128) return "signal " + std::to_string(*code - 128);
  return std::to_string(*code);
}

void spawn(child_process& c, std::string_view program, const std::vector<std::string>& args, int inherit_fd) {
  meshbus::support::spawn_options o;
  o.program = "/proc/self/exe";
  o.argv.emplace_back(program);
  o.argv.insert(o.argv.end(), args.begin(), args.end());
  o.err = meshbus::support::stderr_to::pipe;
  o.keep_fd = inherit_fd;
  o.parent_death_signal = SIGTERM;  // die with the launcher rather than linger as an orphan
  c.process = meshbus::support::child_process(o);
  c.out = line_reader(c.process.take_stdout());
  c.err = line_reader(c.process.take_stderr());
}

void kill_child(child_process& c, int sig) {
  if (!c.running()) return;
  c.process.signal(sig);
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
      watch(what.extra->fd(), [&] { what.extra->read_available([&](std::string_view line) { what.on_extra(line); }); });
    }
    for (auto& c : children) {
      if (c.out.open()) {
        watch(c.out.fd(), [&] { c.out.read_available([&](std::string_view line) { what.on_out(c, line); }); });
      }
      if (c.err.open()) {
        watch(c.err.fd(), [&] { c.err.read_available([&](std::string_view line) { what.on_err(c, line); }); });
      }
      if (c.running()) watch(c.process.exit_fd(), [&c] { (void)c.process.poll_exit(); });
    }
    if (fds.empty()) return true;

    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    if (what.tick.count() > 0) left = std::min(left, what.tick);
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
    c.killed = true;
    (void)c.process.kill_and_wait();
  }
}

}  // namespace meshbus_examples
