// The exit latch, the signal watcher and the interruptible waits; see run_control.hpp.
// Every wait here comes back within a slice of 50-100 ms once the latch is finished.
#include "run_control.hpp"

#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <system_error>

namespace meshbus_tool {

exit_latch::exit_latch() : wake_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  if (wake_fd_ < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
}

exit_latch::~exit_latch() {
  ::close(wake_fd_);
}

void exit_latch::finish(int code) noexcept {
  {
    std::lock_guard lock(mu_);
    if (finished_.load(std::memory_order_relaxed)) return;
    code_ = code;
    finished_.store(true, std::memory_order_release);
  }
  done_.notify_all();
  const std::uint64_t one = 1;
  [[maybe_unused]] const auto n = ::write(wake_fd_, &one, sizeof one);
}

int exit_latch::code() const {
  std::lock_guard lock(mu_);
  return code_;
}

bool exit_latch::wait_until(steady::time_point deadline) {
  std::unique_lock lock(mu_);
  return done_.wait_until(lock, deadline, [&] { return finished(); });
}

void exit_latch::wait() {
  std::unique_lock lock(mu_);
  done_.wait(lock, [&] { return finished(); });
}

signal_watcher::signal_watcher(exit_latch& latch) {
  sigemptyset(&signals_);
  sigaddset(&signals_, SIGINT);
  sigaddset(&signals_, SIGTERM);
  sigaddset(&signals_, SIGUSR1);  // our own wake-up at exit
  pthread_sigmask(SIG_BLOCK, &signals_, nullptr);
  thread_ = std::thread([this, &latch] { watch(latch); });
}

signal_watcher::~signal_watcher() {
  stopping_.store(true, std::memory_order_release);
  pthread_kill(thread_.native_handle(), SIGUSR1);
  thread_.join();
}

void signal_watcher::watch(exit_latch& latch) {
  for (;;) {
    int sig = 0;
    if (sigwait(&signals_, &sig) != 0) continue;
    if (sig == SIGUSR1) {
      if (stopping_.load(std::memory_order_acquire)) return;
      continue;
    }
    latch.finish(exit_code::ok);
  }
}

bool wait_interruptibly(const exit_latch& latch, steady::time_point deadline,
                        const std::function<bool(milliseconds)>& step) {
  constexpr milliseconds slice{50};
  for (;;) {
    const auto left = std::chrono::ceil<milliseconds>(deadline - steady::now());
    if (step(std::clamp(left, milliseconds(0), slice))) return true;
    if (latch.finished() || steady::now() >= deadline) return false;
  }
}

void discover_peers(meshbus::Node& node, milliseconds wait, const exit_latch& latch, const peer_filter& wanted) {
  const auto deadline = steady::now() + wait;
  if (!wait_interruptibly(latch, deadline, [&](milliseconds step) { return node.wait_for_peers(1, step); })) {
    return;
  }
  constexpr milliseconds settle{100};
  while (!latch.finished() && steady::now() < deadline) {
    const auto known = node.peers();
    const auto left = std::chrono::ceil<milliseconds>(deadline - steady::now());
    const bool joined = node.wait_for_peers(known.size() + 1, std::min(settle, left));
    if (!joined && (!wanted || wanted(known))) return;
  }
}

}  // namespace meshbus_tool
