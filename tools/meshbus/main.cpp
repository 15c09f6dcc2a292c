// meshbus: the command-line tool. `peers` lists the nodes of a cluster, `sub` prints events (and
// loss notices) as they arrive, `pub` publishes an argument or stdin lines, `dlq list` shows the
// dead letters the nodes still announce in their history and `dlq replay` asks one node to deliver
// one again, `log` prints the events kept in a node's data directory without starting a node,
// `trace` asks every node for the events of one flow and prints them as a causation tree.
// This file builds the command line, parses it and runs the chosen subcommand (one
// file each); only main() turns outcomes into exit codes.
#include <csignal>
#include <limits>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "commands.hpp"
#include "output.hpp"

#ifndef MESHBUS_VERSION
#error "MESHBUS_VERSION is defined by tools/CMakeLists.txt from the project version"
#endif

namespace meshbus_tool {

namespace {

constexpr const char* exit_codes_text =
    "Exit codes:\n"
    "  0  success (also after Ctrl-C / SIGTERM)\n"
    "  1  runtime failure (address in use, network, I/O; dlq replay: no such dead letter;\n"
    "     log: not a meshbus log, or a damaged record found; trace: no event of the flow found)\n"
    "  2  usage error (bad flags, invalid topic or pattern, unknown or ambiguous node)\n"
    "  3  timeout (--count, --expect or --subscribers not reached, pub's events not all\n"
    "     acknowledged, or no answer to dlq replay in time)\n"
    "  4  pub: a subscriber went away for good without acknowledging every event (it\n"
    "     restarted, its process ended, or it was not back within the peer resume time)\n";

/// Number checks with a plain message (CLI11's PositiveNumber names its 1.8e308 bound).
CLI::Validator number_at_least(double minimum, const std::string& description) {
  return CLI::Validator(
      [minimum, description](std::string& text) -> std::string {
        double value = 0;
        if (!CLI::detail::lexical_cast(text, value) || value < minimum)
          return "must be " + description + ", not " + text;
        return {};
      },
      "", "");
}

/// what() without the ": <category message>" that std::system_error appends.
std::string sentence_of(const std::system_error& e) {
  std::string_view text = e.what();
  const auto suffix = ": " + e.code().message();
  if (text.size() > suffix.size() && text.substr(text.size() - suffix.size()) == suffix) {
    text.remove_suffix(suffix.size());
  }
  return std::string(text);
}

int exit_code_for(const meshbus::error& e) {
  switch (e.code_value()) {
    case meshbus::errc::invalid_argument:
    case meshbus::errc::invalid_topic:
    case meshbus::errc::configuration: return exit_code::usage;
    case meshbus::errc::timeout: return exit_code::timeout;
    default: return exit_code::failure;
  }
}

/// The exit code for a command line CLI11 refused, after saying why; --help and --version
/// print their text and give 0.
int refuse(CLI::App& app, const CLI::ParseError& e, int argc, char** argv) {
  if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) return app.exit(e);
  const auto used = app.get_subcommands();
  if (used.empty() && argc > 1 && argv[1][0] != '-') {
    print_error(std::string("unknown command '") + argv[1] +
                "' (commands: peers, sub, pub, dlq, log, trace; see 'meshbus --help')");
    return exit_code::usage;
  }
  std::string command = "meshbus";  // with the (nested) subcommands given, for the hint
  for (auto chosen = used; !chosen.empty(); chosen = chosen.front()->get_subcommands()) {
    command += " " + chosen.front()->get_name();
  }
  print_error(std::string(e.what()) + " (see '" + command + " --help')");
  return exit_code::usage;
}

/// Parses the command line and runs the chosen subcommand. Throws for failures main() reports.
int run(int argc, char** argv) {
  CLI::App app{
      "meshbus: publish, subscribe to and inspect a meshbus cluster from the shell.\n"
      "Nodes find each other on loopback by default; choose a network with --interface.",
      "meshbus"};
  app.set_version_flag("--version", MESHBUS_VERSION);
  app.require_subcommand(1);
  app.footer(
      footer("  meshbus sub 'sensors.**'\n"
             "  seq 6000 | meshbus pub demo.lines\n"
             "  meshbus pub --interface eth0 sensors.s1.temp 21.5\n"
             "  meshbus peers --json\n"
             "  meshbus dlq list\n"
             "  meshbus log /var/lib/orders --topic 'orders.**' --since -2h\n"
             "  meshbus trace checkout-42\n"));
  node_flags node;
  add_node_flags(app, node);
  std::vector<command> commands{add_peers_command(app, node), add_sub_command(app, node),
                                add_pub_command(app, node)};
  for (auto& c : add_dlq_commands(app, node)) commands.push_back(std::move(c));
  commands.push_back(add_log_command(app));
  commands.push_back(add_trace_command(app, node));
  commands.push_back(add_stats_command(app, node));
  commands.push_back(add_top_command(app, node));
  commands.push_back(add_request_command(app, node));
  commands.push_back(add_serve_command(app, node));
  commands.push_back(add_bench_command(app));
  commands.push_back(add_dashboard_command(app, node));

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return refuse(app, e, argc, argv);
  }
  std::signal(SIGPIPE, SIG_IGN);  // a closed stdout shows up as EPIPE from write
  exit_latch latch;
  signal_watcher signals(latch);  // before any Node: its threads inherit the signal mask
  for (const auto& c : commands) {
    if (c.app->parsed()) return c.run(latch);
  }
  return exit_code::usage;  // not reached: CLI11 requires a subcommand, and dlq one of its own
}

}  // namespace

std::string footer(std::string_view examples) {
  return "\nExamples:\n" + std::string(examples) + "\n" + exit_codes_text;
}

CLI::Validator positive_number() {
  return number_at_least(std::numeric_limits<double>::min(), "a positive number");
}

CLI::Validator non_negative_number() {
  return number_at_least(0, "zero or more");
}

}  // namespace meshbus_tool

int main(int argc, char** argv) {
  using namespace meshbus_tool;
  try {
    return run(argc, argv);
  } catch (const usage_error& e) {
    print_error(e.what());
    return exit_code::usage;
  } catch (const meshbus::error& e) {
    print_error(sentence_of(e));
    return exit_code_for(e);
  } catch (const std::exception& e) {
    print_error(e.what());
    return exit_code::failure;
  } catch (...) {
    return exit_code::failure;
  }
}
