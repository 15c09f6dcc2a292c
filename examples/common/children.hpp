// Child processes of a demo launcher: this same binary re-executed through
// /proc/self/exe with other arguments, its stdout and stderr on pipes the launcher
// reads line by line, its exit seen through a pidfd, all in one poll() loop. The
// launcher only ever signals and reaps its own children, by pid.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace meshbus_examples {

/// Reads one pipe and hands on whole lines.
class line_reader {
 public:
  line_reader() = default;
  explicit line_reader(int fd) : fd_(fd) {}
  line_reader(const line_reader&) = delete;
  line_reader& operator=(const line_reader&) = delete;
  line_reader(line_reader&& o) noexcept;
  line_reader& operator=(line_reader&& o) noexcept;
  ~line_reader() { close(); }

  int fd() const noexcept { return fd_; }
  bool open() const noexcept { return fd_ >= 0; }

  /// Reads what is there; calls on_line for every complete line (and for the rest at
  /// end of file). Closes the pipe at end of file or on error.
  void read_lines(const std::function<void(std::string_view)>& on_line);
  void close() noexcept;

 private:
  int fd_ = -1;
  std::string partial_;
};

struct pipe_pair {
  int read = -1;
  int write = -1;
};

/// A pipe with both ends close-on-exec. Throws std::system_error.
pipe_pair make_pipe();

struct child_process {
  std::string name;
  pid_t pid = -1;
  int pidfd = -1;
  line_reader out;
  line_reader err;
  std::optional<int> exit_code;  ///< set when reaped: the exit status, or 128 + signal
  bool killed = false;           ///< by the launcher (kill_child)

  bool running() const noexcept { return pid > 0 && !exit_code.has_value(); }
  /// "running", "killed", "signal N" or the exit status.
  std::string exit_text() const;
};

/// Forks and execs this binary (argv[0] = `program`) with `args`. The child gets
/// fresh stdout/stderr pipes, keeps `inherit_fd` (if >= 0) open across exec, and is
/// sent SIGTERM if the launcher dies. Throws std::system_error.
void spawn(child_process& c, std::string_view program, const std::vector<std::string>& args, int inherit_fd = -1);
/// Waits for an exited child and records its status.
void reap(child_process& c);
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
};

/// Polls every open pipe and every running child until all children are reaped and
/// all pipes drained (true), `what.done()` says so (true), or `deadline` passes (false).
bool supervise(std::vector<child_process>& children, const supervision& what,
               std::chrono::steady_clock::time_point deadline);

/// At the deadline: SIGKILLs every child still running, reaps it, and calls
/// `on_kill` for each first.
void kill_remaining(std::vector<child_process>& children, const std::function<void(const child_process&)>& on_kill);

}  // namespace meshbus_examples
