// See capture.hpp.
#include "capture.hpp"

#include <poll.h>

#include <cerrno>
#include <thread>

namespace meshbus_tool {

captured run_captured(meshbus::support::spawn_options options, const std::string& input,
                      std::chrono::milliseconds timeout, std::size_t max_output) {
  using steady = std::chrono::steady_clock;
  options.pipe_stdin = true;
  options.err = meshbus::support::stderr_to::pipe;
  meshbus::support::child_process child(options);
  std::thread writer([fd = child.take_stdin(), &input]() mutable {
    meshbus::support::write_all(fd.get(), input);
    fd.reset();
  });
  captured c;
  const auto deadline = steady::now() + timeout;
  bool out_open = true;
  bool err_open = true;
  while ((out_open || err_open) && steady::now() < deadline) {
    pollfd fds[2] = {{child.stdout_fd(), POLLIN, 0}, {child.stderr_fd(), POLLIN, 0}};
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now()).count();
    if (::poll(fds, 2, static_cast<int>(std::max<std::int64_t>(1, left))) < 0 && errno != EINTR) break;
    if (out_open && (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      out_open = meshbus::support::read_some(child.stdout_fd(), c.out);
    }
    if (err_open && (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      err_open = meshbus::support::read_some(child.stderr_fd(), c.err);
    }
    if (c.out.size() > max_output || c.err.size() > max_output) {
      c.too_much = true;
      break;
    }
  }
  if (c.too_much) child.kill_and_wait();
  // The input may still be unwritten (the child did not read it): end the writer.
  child.close_pipes();
  if (!c.too_much) {
    c.status = child.wait_exit(std::max(std::chrono::milliseconds(1),
                                        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now())));
    if (!c.status) child.kill_and_wait();
  }
  writer.join();
  return c;
}

}  // namespace meshbus_tool
