// `meshbus request` and `meshbus serve`: request/reply from the shell. request waits for
// an instance of the service, sends PAYLOAD (or stdin) and prints the reply; serve answers
// a service until interrupted, with the request's payload (--echo) or with what a shell
// command prints when given the payload on its stdin (--command).
#include <unistd.h>

#include <cerrno>
#include <iostream>
#include <stdexcept>

#include "capture.hpp"
#include "commands.hpp"
#include "output.hpp"

namespace meshbus_tool {
namespace {

struct request_flags {
  std::string service;
  std::string payload;
  bool has_payload = false;
  std::int64_t timeout_ms = 5000;
  std::int64_t wait_ms = -1;
  bool json = false;
};

struct serve_flags {
  std::string service;
  bool echo = false;
  std::string command;
  std::int64_t command_timeout_ms = 10000;
  std::uint64_t count = 0;  ///< exit after N requests; 0: until interrupted
};

std::string read_stdin() {
  std::string all;
  while (meshbus::support::read_some(STDIN_FILENO, all)) {
  }
  return all;
}

void check_service(const std::string& service) {
  if (auto err = meshbus::topic_error(service); !err.empty()) throw usage_error("SERVICE: " + err);
}

int run_request(const node_flags& node_opts, const request_flags& flags, exit_latch& latch) {
  check_service(flags.service);
  const auto payload = flags.has_payload ? flags.payload : read_stdin();
  auto node = start_node(node_opts, {});
  // Wait for an instance: a request to a service nobody serves yet fails at once.
  const auto deadline = steady::now() + milliseconds(flags.timeout_ms);
  wait_interruptibly(latch, deadline, [&](milliseconds step) {
    const auto until = steady::now() + step;
    while (steady::now() < until) {
      if (!node->instances(flags.service).empty()) return true;
      std::this_thread::sleep_for(milliseconds(10));
    }
    return !node->instances(flags.service).empty();
  });
  if (latch.finished()) return exit_code::ok;
  if (node->instances(flags.service).empty()) {
    node->stop();
    print_error("no instance of " + display_text(flags.service) + " appeared within " +
                to_ms_text(milliseconds(flags.timeout_ms)));
    return exit_code::timeout;
  }
  meshbus::RequestOptions options;
  options.timeout = std::max(milliseconds(1), std::chrono::duration_cast<milliseconds>(deadline - steady::now()));
  const auto started = steady::now();
  try {
    auto reply = node->request(flags.service, std::string_view(payload), options).get();
    const auto took = std::chrono::duration_cast<std::chrono::microseconds>(steady::now() - started);
    if (flags.json) {
      json object;
      object["service"] = flags.service;
      object["responder"] = reply.responder.to_string();
      if (!reply.type_name.empty()) {
        object["type"] = reply.type_name;
        object["type_version"] = reply.type_version;
      }
      set_payload(object, reply.payload);
      object["took_us"] = took.count();
      std::cout << json_text(object) << std::endl;
    } else {
      std::cout << reply.payload;
      if (reply.payload.empty() || reply.payload.back() != '\n') std::cout << '\n';
      std::cout.flush();
    }
    node->stop();
    return exit_code::ok;
  } catch (const meshbus::error& e) {
    node->stop();
    print_error("request to " + display_text(flags.service) + " failed: " + e.what());
    return e.code() == meshbus::errc::timeout ? exit_code::timeout : exit_code::failure;
  }
}

/// Runs `command` with /bin/sh, `input` on its stdin; its stdout is the reply. A non-zero
/// exit (or no exit within `timeout`) fails the request with its stderr.
std::string run_command(const std::string& command, const std::string& input, milliseconds timeout) {
  meshbus::support::spawn_options o;
  o.argv = {"/bin/sh", "-c", command};
  auto c = run_captured(o, input, timeout);
  if (c.too_much) throw std::runtime_error("the command printed more than 16 MiB");
  if (!c.status) throw std::runtime_error("the command did not finish within " + to_ms_text(timeout));
  if (*c.status != 0) {
    if (!c.err.empty() && c.err.back() == '\n') c.err.pop_back();
    throw std::runtime_error("the command exited with " + std::to_string(*c.status) +
                             (c.err.empty() ? "" : ": " + c.err));
  }
  return c.out;
}

int run_serve(const node_flags& node_opts, const serve_flags& flags, exit_latch& latch) {
  check_service(flags.service);
  if (flags.echo == !flags.command.empty()) throw usage_error("serve needs exactly one of --echo and --command CMD");
  std::atomic<std::uint64_t> served{0};
  auto node = start_node(node_opts, {});
  meshbus::ServeOptions options;
  options.own_thread = !flags.command.empty();  // a slow command holds up no handler thread
  node->serve(
      flags.service,
      [&](const meshbus::Event& request) -> meshbus::Reply {
        struct count_one {
          std::atomic<std::uint64_t>& n;
          const serve_flags& f;
          exit_latch& l;
          ~count_one() {
            if (++n == f.count) l.finish(exit_code::ok);
          }
        } counted{served, flags, latch};
        if (flags.echo) return meshbus::Reply(std::string(request.text()));
        return meshbus::Reply(run_command(flags.command, std::string(request.text()),
                                          milliseconds(flags.command_timeout_ms)));
      },
      options);
  std::cerr << "meshbus: serving " << display_text(flags.service) << " as node " << node->id().short_string()
            << std::endl;
  latch.wait();
  node->stop();
  return latch.code();
}

}  // namespace

command add_request_command(CLI::App& parent, node_flags& node) {
  auto flags = std::make_shared<request_flags>();
  auto* app = parent.add_subcommand("request", "Send PAYLOAD (or stdin) to an instance of SERVICE and print the reply");
  add_node_flags(*app, node);
  app->add_option("service", flags->service, "The service (topic syntax)")->type_name("SERVICE")->required();
  auto* payload = app->add_option("payload", flags->payload, "The request's payload; stdin when left out")
                      ->type_name("PAYLOAD");
  app->add_option("--timeout", flags->timeout_ms,
                  "How long to wait for an instance and its reply, in ms (default 5000)")
      ->type_name("MS")
      ->check(positive_number());
  app->add_flag("--json", flags->json, "The reply as one JSON object: responder, type, payload, took_us");
  app->parse_complete_callback([flags, payload] { flags->has_payload = payload->count() > 0; });
  app->footer("\nExit 0 with a reply, 1 when the service failed or refused it, 3 when no instance\n"
              "appeared or none replied in time.\n" +
              footer("  meshbus request time.now\n  echo '{\"sku\":\"A1\"}' | meshbus request stock.reserve --json\n"));
  return {app, [flags, &node](exit_latch& latch) { return run_request(node, *flags, latch); }};
}

command add_serve_command(CLI::App& parent, node_flags& node) {
  auto flags = std::make_shared<serve_flags>();
  auto* app = parent.add_subcommand(
      "serve", "Answer requests to SERVICE until interrupted: with their payload (--echo) or a command's output");
  add_node_flags(*app, node);
  app->add_option("service", flags->service, "The service (topic syntax)")->type_name("SERVICE")->required();
  app->add_flag("--echo", flags->echo, "Reply with the request's payload");
  app->add_option("--command", flags->command,
                  "Reply with what this shell command prints, given the request's payload on stdin; "
                  "a non-zero exit fails the request with its stderr")
      ->type_name("CMD");
  app->add_option("--command-timeout", flags->command_timeout_ms, "Bound on one command run, in ms (default 10000)")
      ->type_name("MS")
      ->check(positive_number());
  app->add_option("--count", flags->count, "Exit after N requests")->type_name("N")->check(positive_number());
  app->footer(footer("  meshbus serve echo.svc --echo\n  meshbus serve time.now --command date\n"
                     "  meshbus serve upper --command 'tr a-z A-Z'\n"));
  return {app, [flags, &node](exit_latch& latch) { return run_serve(node, *flags, latch); }};
}

}  // namespace meshbus_tool
