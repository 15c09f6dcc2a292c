// Child processes of a demo launcher: this same binary re-executed through
// /proc/self/exe (meshbus_support's child_process), its stdout and stderr read line by
// line, its exit seen through its pidfd, all in one poll() loop. The launcher only ever
// signals and reaps its own children, by pid.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "support/child_process.hpp"

namespace meshbus_examples {

using meshbus::support::line_reader;

/// One role process of a demo, as the launcher sees it.
struct child_process {
  std::string name;
  meshbus::support::child_process process;
  line_reader out;
  line_reader err;
  bool killed = false;  ///< by the launcher (kill_child with SIGKILL)

  pid_t pid() const noexcept { return process.pid(); }
  bool running() const noexcept { return process.running(); }
  /// Once reaped: the exit status, or 128 + signal.
  std::optional<int> exit_code() const noexcept { return process.exit_status(); }
  /// "running", "killed", "signal N" or the exit status.
  std::string exit_text() const;
};

/// Forks and execs this binary (argv[0] = `program`) with `args`. The child gets
/// fresh stdout/stderr pipes, keeps `inherit_fd` (if >= 0) open across exec, and is
/// sent SIGTERM if the launcher dies. Throws std::system_error.
void spawn(child_process& c, std::string_view program, const std::vector<std::string>& args, int inherit_fd = -1);
/// Sends `sig` to a running child, marks it killed when `sig` is SIGKILL.
void kill_child(child_process& c, int sig);

/// What supervise() does with what it reads.
struct supervision {
  /// A line of a child's stdout / stderr.
  std::function<void(child_process&, std::string_view)> on_out;
  std::function<void(child_process&, std::string_view)> on_err;
  /// Another pipe to read along (e.g. reports), and what to do with its lines.
  line_reader* extra = nullptr;
  std::function<void(std::string_view)> on_extra;
  /// Called after every round; true ends supervise() early.
  std::function<bool()> done;
  /// A round at least this often (0: only when something happens), for done() to act on time.
  std::chrono::milliseconds tick{0};
};

/// Polls every open pipe and every running child until all children are reaped and
/// all pipes drained (true), `what.done()` says so (true), or `deadline` passes (false).
bool supervise(std::vector<child_process>& children, const supervision& what,
               std::chrono::steady_clock::time_point deadline);

/// At the deadline: SIGKILLs every child still running, reaps it, and calls
/// `on_kill` for each first.
void kill_remaining(std::vector<child_process>& children, const std::function<void(const child_process&)>& on_kill);

}  // namespace meshbus_examples
