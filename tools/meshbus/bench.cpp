// `meshbus bench`: the throughput and latency comparison with raw ZeroMQ, from the tool.
// It runs meshbus-perf (perf/), which measures meshbus and raw ZeroMQ side by side in the
// same run and prints their ratio: the benchmark lives in one place. meshbus-perf is looked for beside this program, then on PATH.
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "commands.hpp"
#include "output.hpp"

namespace meshbus_tool {
namespace {

struct bench_flags {
  std::string what = "throughput";
  std::vector<std::string> args;
};

std::string find_perf() {
  std::error_code ec;
  const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const auto beside = self.parent_path() / "meshbus-perf";
    if (::access(beside.c_str(), X_OK) == 0) return beside.string();
  }
  if (const char* path = std::getenv("PATH")) {
    std::string_view rest(path);
    while (!rest.empty()) {
      const auto colon = rest.find(':');
      const auto dir = rest.substr(0, colon);
      const auto candidate = std::filesystem::path(dir) / "meshbus-perf";
      if (!dir.empty() && ::access(candidate.c_str(), X_OK) == 0) return candidate.string();
      if (colon == std::string_view::npos) break;
      rest.remove_prefix(colon + 1);
    }
  }
  return {};
}

int run_bench(const bench_flags& flags) {
  const auto perf = find_perf();
  if (perf.empty()) {
    print_error("meshbus bench runs meshbus-perf, which is neither beside this program nor on PATH "
                "(build it with -DMESHBUS_BUILD_PERF=ON, or ./run bench)");
    return exit_code::failure;
  }
  std::vector<std::string> argv{perf, flags.what};
  if (flags.what == "throughput" && flags.args.empty()) {
    argv.insert(argv.end(), {"--size", "64,1024,16384"});
  }
  argv.insert(argv.end(), flags.args.begin(), flags.args.end());
  std::vector<char*> raw;
  for (auto& a : argv) raw.push_back(a.data());
  raw.push_back(nullptr);
  // meshbus-perf takes Ctrl-C itself: the signals this tool's watcher blocked are
  // unblocked for it, as they would be for a program started from the shell.
  sigset_t none;
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::signal(SIGPIPE, SIG_DFL);
  ::execv(perf.c_str(), raw.data());
  print_error("cannot run " + perf + ": " + std::strerror(errno));
  return exit_code::failure;
}

}  // namespace

command add_bench_command(CLI::App& parent) {
  auto flags = std::make_shared<bench_flags>();
  auto* app = parent.add_subcommand(
      "bench", "meshbus beside raw ZeroMQ in the same run: throughput (events/s, MB/s) or latency (p50/p99)");
  app->add_option("what", flags->what, "throughput (the default) or latency")
      ->type_name("throughput|latency")
      ->check(CLI::IsMember({"throughput", "latency"}));
  app->prefix_command();  // everything after WHAT goes to meshbus-perf as it is
  app->footer("\nRuns meshbus-perf (beside this program, or on PATH), which measures raw ZeroMQ and then\n"
              "meshbus in the same run and prints their ratio (see meshbus-perf --help; --mode durable\n"
              "alternates them over several rounds). Run it on an otherwise idle machine.\n" +
              footer("  meshbus bench\n  meshbus bench throughput --size 64 --mode best_effort\n"
                     "  meshbus bench latency\n"));
  return {app, [flags, app](exit_latch&) {
            flags->args = app->remaining();
            return run_bench(*flags);
          }};
}

}  // namespace meshbus_tool
