// Child processes for multi-process tests: meshbus_support's fork + exec with pipes, and
// their output collected here as text.
#include "tests/support/process.hpp"

#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <thread>
#include <utility>

namespace meshbus::test {

namespace {

support::spawn_options spawn_options_for(const std::vector<std::string>& argv, const child_process::options& opts) {
  support::spawn_options o;
  o.argv = argv;
  o.env = opts.env;
  o.pipe_stdin = true;
  o.err = opts.merge_stderr ? support::stderr_to::merged : support::stderr_to::pipe;
  return o;
}

}  // namespace

child_process::child_process(const std::vector<std::string>& argv, const options& opts)
    : process_(spawn_options_for(argv, opts)) {
  auto in = process_.take_stdin();
  if (!opts.stdin_text) return;  // `in` closes here: the child reads end of file
  // Feed stdin from a thread so a large input cannot deadlock against our reads.
  std::thread([in = std::move(in), text = *opts.stdin_text] { (void)support::write_all(in.get(), text); }).detach();
}

child_process::~child_process() = default;

void child_process::read_available(int timeout_ms) {
  pollfd fds[2] = {{process_.stdout_fd(), POLLIN, 0}, {process_.stderr_fd(), POLLIN, 0}};
  if (::poll(fds, 2, timeout_ms) <= 0) return;
  for (int i = 0; i < 2; ++i) {
    if ((fds[i].revents & (POLLIN | POLLHUP)) == 0) continue;
    (void)support::read_some(fds[i].fd, i == 0 ? out_ : err_);
  }
}

void child_process::poll() { read_available(0); }

std::optional<int> child_process::wait(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!process_.poll_exit()) {
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    read_available(10);
  }
  // Drain what is left in the pipes.
  for (int i = 0; i < 100; ++i) {
    const auto before = out_.size() + err_.size();
    read_available(0);
    if (out_.size() + err_.size() == before) break;
  }
  return process_.exit_status();
}

void child_process::signal(int sig) {
  process_.signal(sig);
}

bool child_process::wait_output(const std::function<bool(const std::string&)>& pred,
                                std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred(out_)) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    read_available(10);
  }
  return true;
}

bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

std::string unique_cluster(const std::string& prefix) {
  static std::atomic<int> counter{0};
  return prefix + "-" + std::to_string(getpid()) + "-" + std::to_string(counter++);
}

std::string summary(const child_process& p) {
  const auto lines = lines_of(p.out());
  return lines.empty() ? std::string() : lines.back();
}

bool printed(child_process& p, const std::string& text, std::chrono::milliseconds timeout) {
  return p.wait_output([&](const std::string& out) { return out.find(text) != std::string::npos; }, timeout);
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < text.size()) {
    auto end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    out.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

}  // namespace meshbus::test
