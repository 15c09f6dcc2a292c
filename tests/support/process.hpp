// Test support: start real child processes (fork + exec, through meshbus_support),
// capture their output, wait for them with deadlines, and wait for conditions instead
// of sleeping.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "support/child_process.hpp"

namespace meshbus::test {

/// A child process with its stdout (and stderr, merged or not) captured.
class child_process {
 public:
  struct options {
    std::map<std::string, std::string> env;  ///< added to (or replacing in) the environment
    std::optional<std::string> stdin_text;   ///< written to the child's stdin, then closed
    bool merge_stderr = false;
  };

  child_process(const std::vector<std::string>& argv, const options& opts);
  explicit child_process(const std::vector<std::string>& argv) : child_process(argv, options{}) {}
  ~child_process();
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  pid_t pid() const noexcept { return process_.pid(); }
  /// Waits for exit up to `timeout`, reading output meanwhile. Returns the exit
  /// code (128 + signal for a signal), or nullopt on timeout (the child keeps running).
  std::optional<int> wait(std::chrono::milliseconds timeout);
  /// Sends a signal (only to this child).
  void signal(int sig);
  /// Output read so far (call after wait, or poll()).
  const std::string& out() const noexcept { return out_; }
  const std::string& err() const noexcept { return err_; }
  /// Reads whatever output is available without blocking.
  void poll();
  /// Waits until `pred(out())` holds or the timeout passes.
  bool wait_output(const std::function<bool(const std::string&)>& pred, std::chrono::milliseconds timeout);

 private:
  void read_available(int timeout_ms);
  support::child_process process_;
  std::string out_;
  std::string err_;
};

/// Polls `pred` every few milliseconds until it holds or `timeout` passes.
bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout);

/// A cluster name unique to this test process and call, so parallel tests never mix.
std::string unique_cluster(const std::string& prefix);

/// Splits text into lines (without the newline).
std::vector<std::string> lines_of(const std::string& text);

/// The last line a test program printed: its JSON summary.
std::string summary(const child_process& p);

/// Waits until `p` printed `text`, at most `timeout`.
bool printed(child_process& p, const std::string& text, std::chrono::milliseconds timeout);

}  // namespace meshbus::test
