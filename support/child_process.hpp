// Child processes for the programs around meshbus (tests, the demos' launchers, the perf
// driver): fork + exec without a shell, pipes for the standard streams, a pidfd that
// poll() can wait on for the exit, and line-by-line reading of a pipe. Not part of the
// installed library. A child_process only ever signals and reaps its own child, by pid.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace meshbus::support {

/// Owns one file descriptor; closes it when destroyed. Move-only.
class unique_fd {
 public:
  unique_fd() = default;
  explicit unique_fd(int fd) noexcept : fd_(fd) {}
  unique_fd(unique_fd&& other) noexcept : fd_(other.release()) {}
  unique_fd& operator=(unique_fd&& other) noexcept;
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  ~unique_fd() { reset(); }

  int get() const noexcept { return fd_; }
  bool valid() const noexcept { return fd_ >= 0; }
  /// Gives up ownership: the caller closes the descriptor.
  int release() noexcept;
  /// Closes the descriptor held (if any) and holds `fd` instead.
  void reset(int fd = -1) noexcept;

 private:
  int fd_ = -1;
};

struct pipe_ends {
  unique_fd read;
  unique_fd write;
};

/// A pipe with both ends close-on-exec and numbered above 2 (so that a child's dup2()
/// onto 0, 1 and 2 never overwrites an end it still has to duplicate). Throws
/// std::system_error.
pipe_ends make_pipe();

/// Writes all of `text` to `fd`, retrying short writes and EINTR. False on error.
bool write_all(int fd, std::string_view text) noexcept;

/// One read() from `fd`, appended to `out`. False at end of file or on an error other
/// than EINTR/EAGAIN (nothing is appended then).
bool read_some(int fd, std::string& out);

/// Where a child's stderr goes.
enum class stderr_to : std::uint8_t {
  inherit,  ///< this process's stderr
  pipe,     ///< a pipe of its own (stderr_fd())
  merged,   ///< the stdout pipe, interleaved with stdout
};

/// What to start and how to connect it. The child's stdout is always a pipe.
struct spawn_options {
  /// The arguments, argv[0] first (the name the child sees).
  std::vector<std::string> argv;
  /// The file to execute; empty: argv[0]. "/proc/self/exe" runs this program again.
  std::string program;
  /// Added to (or replacing entries of) this process's environment.
  std::map<std::string, std::string> env;
  /// true: stdin is a pipe (stdin_fd()); false: the child shares this process's stdin.
  bool pipe_stdin = false;
  stderr_to err = stderr_to::inherit;
  /// A descriptor the child keeps open across exec (its number unchanged); -1: none.
  int keep_fd = -1;
  /// Sent to the child when the thread that started it ends (PR_SET_PDEATHSIG); 0: none.
  int parent_death_signal = 0;
};

/// A started child. Default-constructed it holds no process. Destroying (or moving onto)
/// one whose child still runs kills it with SIGKILL and reaps it.
class child_process {
 public:
  child_process() = default;
  /// Forks and execs. Throws std::system_error when a pipe, fork or pidfd fails; a child
  /// that cannot exec writes why on its stderr and exits with 127.
  explicit child_process(const spawn_options& options);
  child_process(child_process&& other) noexcept;
  child_process& operator=(child_process&& other) noexcept;
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;
  ~child_process();

  pid_t pid() const noexcept { return pid_; }
  /// Started and not yet reaped.
  bool running() const noexcept { return pid_ > 0 && !status_; }
  /// Once reaped: the exit status, or 128 + the signal that ended it.
  std::optional<int> exit_status() const noexcept { return status_; }

  /// The pipes' ends on this side; -1 when not piped or already taken.
  int stdin_fd() const noexcept { return stdin_.get(); }
  int stdout_fd() const noexcept { return stdout_.get(); }
  int stderr_fd() const noexcept { return stderr_.get(); }
  /// Readable once the child has exited (a pidfd); -1 after it was reaped.
  int exit_fd() const noexcept { return exit_.get(); }
  /// Hands a pipe's end over to the caller (e.g. to a line_reader or a writer thread).
  unique_fd take_stdin() noexcept { return std::move(stdin_); }
  unique_fd take_stdout() noexcept { return std::move(stdout_); }
  unique_fd take_stderr() noexcept { return std::move(stderr_); }
  /// Closes every pipe end still held here (the child sees end of file on its stdin).
  void close_pipes() noexcept;

  /// Sends `sig` to the child while it runs.
  void signal(int sig) noexcept;
  /// Reaps the child if it has exited, without blocking. True once reaped.
  bool poll_exit() noexcept;
  /// Waits up to `timeout` for the exit; nullopt when the child still runs.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout);
  /// Kills the child if it still runs and reaps it. Returns its status.
  int kill_and_wait() noexcept;

 private:
  void record(int wait_status) noexcept;

  pid_t pid_ = -1;
  std::optional<int> status_;
  unique_fd stdin_;
  unique_fd stdout_;
  unique_fd stderr_;
  unique_fd exit_;
};

/// Splits what arrives on a pipe into lines (without their '\n'). Owns the pipe's end
/// and closes it at end of file.
class line_reader {
 public:
  enum class status : std::uint8_t { line, timeout, closed };

  line_reader() = default;
  explicit line_reader(unique_fd fd) noexcept : fd_(std::move(fd)) {}

  int fd() const noexcept { return fd_.get(); }
  bool open() const noexcept { return fd_.valid(); }

  /// One read(): calls `on_line` for every complete line. At end of file, or on an
  /// error, an unfinished last line goes to `on_line` too and the pipe is closed.
  void read_available(const std::function<void(std::string_view)>& on_line);
  /// The next line, waiting up to `timeout` for it; `closed` at end of file.
  status read_line(std::string& line, std::chrono::milliseconds timeout);
  void close() noexcept { fd_.reset(); }

 private:
  /// Takes the first complete line out of the buffer.
  bool take_line(std::string& line);

  unique_fd fd_;
  std::string buffer_;
};

}  // namespace meshbus::support
