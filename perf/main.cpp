// meshbus-perf: meshbus side by side with raw ZeroMQ, in two processes on TCP loopback.
// This file: the command line (CLI11), the hidden child subcommands, and the loop over
// the sizes (and rounds); throughput.cpp, latency.cpp, request.cpp and eventstore.cpp
// measure, report.cpp prints.
//
// This process drives the run; the other half is this program re-executed through
// /proc/self/exe with a hidden subcommand (_subscriber, _echoer, _replier, or
// eventstore's _replica); the two talk through the child's stdin and stdout pipes, its
// stderr is ours. For every size the raw ZeroMQ run goes first, then meshbus, each with
// a fresh child process.
//
// throughput: the time to move N events one way, end to end. The publisher reads
// CLOCK_MONOTONIC (t0) just before its first measured send; the subscriber reads the
// same clock when the last measured event reaches it (t_last: return of zmq_msg_recv
// for raw ZeroMQ, the subscription handler for meshbus) and counts what arrived,
// stopping when it has all N events or when nothing new came for 3 s. meshbus's
// publisher ends with flush() (reliable and acknowledged: until the subscriber has
// acknowledged everything), and the run ends at t_end, the later of t_last and
// flush()'s return. events/s = received / (t_end - t0), MB/s = events/s x size / 1e6
// (payload bytes only), lost = N - received. The rate includes publishing, transport,
// receipt and (meshbus) the acknowledgements. Connecting, discovery and the
// slow-joiner warm-up happen before t0. Raw ZeroMQ is the lossless baseline: PUB with
// ZMQ_XPUB_NODROP=1 and blocking sends, default HWMs, one message per event.
//
// latency: one event in flight at a time. The pinger writes its CLOCK_MONOTONIC
// send time and a sequence number into the payload and sends it on "perf.ping"; the
// echoer, on receipt (return of zmq_msg_recv; the meshbus handler), records its own
// clock minus the embedded time (one-way latency: one clock for every process on
// this host) and sends the payload back on "perf.pong"; the pinger takes the round
// trip when the echo arrives and only then sends the next ping (raw ZeroMQ: blocking
// receive on the main thread; meshbus: the pong handler publishes the next ping).
// Untimed warm-up round trips go first. Reported: p50, p99, p99.9 and max of both.
//
// throughput --mode typed: meshbus publishes a typed event (perf_sample, a MessagePack
// map) whose encoding is the payload size, and the subscriber takes it with
// subscribe<T>(): encoding and decoding are inside the measured time. Raw ZeroMQ sends
// plain bytes of the same size, as in the other modes.
//
// eventstore: in this process, --rounds rounds of the durable log's own append rate
// (throughput --mode durable's publisher without a subscriber), aggregate commands from
// several threads and pipelined appends, both without replication (k=0) and with one
// replica in a child process (k=1), and aggregate loads with and without a snapshot
// (eventstore.cpp), each run on its own Node with a fresh data directory; medians, and
// each rate's ratio to the log's in the same round (help::eventstore).
//
// latency --mode request: request/reply, one request in flight at a time, timed here
// only (the child, the replier, takes no times: there is no one-way figure). Raw
// ZeroMQ: a DEALER here, a ROUTER there that sends each request back to its sender;
// meshbus: request("perf.echo").get() here, serve("perf.echo") there.
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "help_text.hpp"
#include "report.hpp"
#include "support/cli11.hpp"

namespace meshbus_perf {

// ---------------------------------------------------------------------------
// the commands' options

run_spec command_options::spec(std::size_t size) const {
  run_spec r;
  r.requested_size = size;
  r.size = mode == run_mode::typed ? typed_size_near(size) : size;
  r.mode = mode;
  r.handler_threads = handler_threads;
  r.api = api;
  if (kind == command_kind::latency) {
    r.count = count.value_or(default_latency_count);
    r.warmup = warmup;
  } else {
    r.count =
        count.value_or(std::clamp<std::uint64_t>(bytes_per_run / r.size, min_default_count, max_default_count));
  }
  return r;
}

namespace {

/// Whether `command` runs in mode `m`: typed is for throughput, request for latency.
bool accepts(command_kind command, run_mode m) noexcept {
  switch (m) {
    case run_mode::best_effort:
    case run_mode::reliable:
    case run_mode::acknowledged: return true;
    case run_mode::typed:
    case run_mode::durable: return command == command_kind::throughput;
    case run_mode::request: return command == command_kind::latency;
  }
  return false;
}

/// "a, b or c": the modes `command` accepts.
std::string accepted_modes(command_kind command) {
  std::vector<const char*> names;
  for (const auto m : all_modes) {
    if (accepts(command, m)) names.push_back(to_string(m));
  }
  std::string out;
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i != 0) out += i + 1 == names.size() ? " or " : ", ";
    out += names[i];
  }
  return out;
}

/// A check with `message(text)` as its complaint (empty: fine).
CLI::Validator check_that(std::function<std::string(const std::string&)> message) {
  return CLI::Validator([message = std::move(message)](std::string& text) { return message(text); }, "", "");
}

CLI::Validator size_check(std::size_t min_size) {
  return check_that([min_size](const std::string& text) -> std::string {
    std::uint64_t s = 0;
    if (parse_uint(text, s) && s >= min_size && s <= max_size) return {};
    return "'" + text + "' is not a size from " + std::to_string(min_size) + " to " + std::to_string(max_size) +
           " bytes";
  });
}

CLI::Validator number_check(bool zero_ok) {
  return check_that([zero_ok](const std::string& text) -> std::string {
    std::uint64_t n = 0;
    if (parse_uint(text, n) && (zero_ok || n != 0)) return {};
    return "'" + text + "' is not a " + (zero_ok ? "non-negative" : "positive") + " number";
  });
}

CLI::Validator mode_check(command_kind kind) {
  return check_that([kind](const std::string& text) -> std::string {
    const auto m = parse_mode(text);
    if (m && accepts(kind, *m)) return {};
    const bool latency = kind == command_kind::latency;
    return "'" + text + "' is not a mode of " + (latency ? "latency" : "throughput") + " (" + accepted_modes(kind) +
           ")" +
           (!m                          ? ""
            : *m == run_mode::request ? "; request is for latency"
                                      : std::string("; ") + to_string(*m) + " is for throughput");
  });
}

/// What CLI11 fills in; turned into command_options by options_of().
struct command_flags {
  std::vector<std::size_t> sizes;
  std::uint64_t count = 0;
  std::uint64_t warmup = default_latency_warmup;
  std::string mode = "reliable";
  unsigned handler_threads = 1;
  std::string api = "future";
  bool json = false;
  bool verbose = false;
  unsigned rounds = 5;
  CLI::Option* count_option = nullptr;
};

/// --handler-threads, --request-api (latency), --json and --verbose.
void add_output_options(CLI::App& app, bool latency, command_flags& f) {
  app.add_option("--handler-threads", f.handler_threads,
                 "meshbus Options::handler_threads of both processes (default 1, as in the library); 0 runs "
                 "handlers (and request handlers) on the node's I/O thread, which saves a thread hand-off per "
                 "event (see Options::handler_threads)")
      ->type_name("T")
      ->check(CLI::Range(0U, max_handler_threads));
  if (latency) {
    app.add_option("--request-api", f.api,
                   "--mode request: how meshbus's requester waits: future (the default; request(...).get() on "
                   "the measuring thread) or callback (request_async(...), whose completion sends the next "
                   "request, as the latency mode's pong handler does)")
        ->type_name("A")
        ->check(CLI::IsMember({"future", "callback"}));
  }
  app.add_flag("--json", f.json, "one JSON object per size and line instead of the table");
  app.add_flag("--verbose", f.verbose,
               "per-run details on stderr: time in the send loop and in flush(), CPU time of both processes "
               "(cpu_ms), meshbus batch, ack, stall and request counters of both processes");
}

void add_measure_options(CLI::App& app, command_kind kind, command_flags& f) {
  const bool latency = kind == command_kind::latency;
  app.add_option("--size", f.sizes,
                 std::string("payload sizes in bytes, one or a comma-separated list, e.g. "
                             "16,64,256,1024,4096,16384,65536 ") +
                     (latency ? "(16 to 8388608: the payload carries a time and a number)"
                              : "(1 to 8388608; --mode typed: 46 to 8388608, 46 being the encoded event's "
                                "fixed fields and marker)"))
      ->type_name("S[,S...]")
      ->delimiter(',')
      ->required()
      ->check(size_check(latency ? min_latency_size : 1));
  f.count_option = app.add_option("--count", f.count,
                                  latency ? "measured round trips per run (default 20,000)"
                                          : "events per run (default: about 200 MB of payload per run, at "
                                            "least 20,000 and at most 5,000,000 events)")
                       ->type_name("N")
                       ->check(number_check(false));
  if (latency) {
    app.add_option("--warmup", f.warmup, "untimed round trips before the measured ones (default 1,000)")
        ->type_name("W")
        ->check(number_check(true));
  }
  app.add_option("--mode", f.mode,
                 latency ? "best_effort, reliable (the default, as in the library) or acknowledged, the meshbus "
                           "delivery both processes subscribe with; or request, request/reply instead of events "
                           "(see \"latency --mode request\"). Raw ZeroMQ is the same in every mode but request."
                         : "best_effort, reliable (the default, as in the library) or acknowledged, the meshbus "
                           "delivery both processes subscribe with; or typed, a typed event with reliable "
                           "delivery (see \"throughput --mode typed\"); or durable, a publisher with a data "
                           "directory (durability always) beside raw ZeroMQ and reliable meshbus, --rounds "
                           "times alternating. Raw ZeroMQ is the same in every mode.")
      ->type_name("M")
      ->check(mode_check(kind));
  if (!latency) {
    app.add_option("--rounds", f.rounds, "--mode durable: rounds of raw, reliable, durable (default 5)")
        ->type_name("N")
        ->check(CLI::Range(1U, 100U));
  }
  add_output_options(app, latency, f);
}

/// What CLI11 fills in for eventstore.
struct eventstore_flags {
  eventstore_spec spec;
  unsigned rounds = 5;
  bool json = false;
  bool verbose = false;
  CLI::Option* count_option = nullptr;
};

void add_eventstore_options(CLI::App& app, eventstore_flags& f) {
  auto& s = f.spec;
  app.add_option("--size", s.size, "payload bytes of every event (default 64)")
      ->type_name("S")
      ->check(check_that([](const std::string& text) -> std::string {
        std::uint64_t size = 0;
        if (!parse_uint(text, size) || size > max_size) return "'" + text + "' is not a size";
        return eventstore_size_problem(size);
      }));
  f.count_option =
      app.add_option("--count", s.log_count,
                     "events the durable log's run publishes (default: about 200 MB of payload, at "
                     "least 20,000 and at most 5,000,000, as throughput)")
          ->type_name("N")
          ->check(number_check(false));
  app.add_option("--aggregates", s.aggregates,
                 "aggregates of the execute runs, one command each (k=1: after a warm-up command), and "
                 "streams of the append_async runs (default 10,000)")
      ->type_name("N")
      ->check(number_check(false));
  app.add_option("--threads", s.threads, "threads issuing the commands (default 8)")
      ->type_name("T")
      ->check(CLI::Range(1U, 256U));
  app.add_option("--appends", s.appends, "append_async() calls of each append_async run (default 100,000)")
      ->type_name("N")
      ->check(number_check(false));
  app.add_option("--load-events", s.load_events, "events of each loaded aggregate (default 1,000)")
      ->type_name("N")
      ->check(number_check(false));
  app.add_option(
         "--snapshot-every", s.snapshot_every,
         "AggregateOptions::snapshot_every of the aggregate loaded with a snapshot (default 100; at most "
         "--load-events)")
      ->type_name("N")
      ->check(number_check(false));
  app.add_option("--loads", s.loads, "timed loads of each aggregate per round (default 200)")
      ->type_name("N")
      ->check(number_check(false));
  app.add_option("--rounds", f.rounds, "rounds of the six runs, alternating (default 5)")
      ->type_name("N")
      ->check(CLI::Range(1U, 100U));
  app.add_flag("--json", f.json, "one JSON object per round and one with the medians, instead of the table");
  app.add_flag("--verbose", f.verbose,
               "per-run details on stderr: times, event store and log counters, CPU time");
}

/// The parsed flags as the runs take them; nullopt (and why, on stderr) for a size that
/// --mode typed cannot encode.
std::optional<command_options> options_of(command_kind kind, const command_flags& f) {
  command_options o;
  o.kind = kind;
  o.sizes = f.sizes;
  if (f.count_option->count() > 0) o.count = f.count;
  o.warmup = f.warmup;
  o.mode = parse_mode(f.mode).value_or(run_mode::reliable);
  o.handler_threads = f.handler_threads;
  o.api = f.api == "callback" ? request_api::callback : request_api::future;
  o.json = f.json;
  o.verbose = f.verbose;
  o.rounds = f.rounds;
  if (o.mode != run_mode::typed) return o;
  const auto typed_min = min_typed_size();
  for (const auto size : o.sizes) {
    if (size >= typed_min) continue;
    std::fprintf(stderr,
                 "meshbus-perf: --size: %zu bytes is too small for --mode typed: the encoded event takes at "
                 "least %zu (its MessagePack map with the three field names, two 9-byte integers and a "
                 "1-byte padding)\n",
                 size, typed_min);
    return std::nullopt;
  }
  return o;
}

// ---------------------------------------------------------------------------
// the runs

// --mode durable: per size, rounds of raw ZeroMQ, reliable meshbus and durable meshbus
// (a publisher with a data directory, Durability::always), one after the other, so
// that all three see the same machine; medians of events/s and of the per-round
// ratios, with the ratios' range.
int durable_main(const command_options& o) {
  std::printf("# throughput --mode durable: %u rounds of raw ZeroMQ PUB/SUB, reliable meshbus, durable meshbus "
              "(publisher data directory under /tmp, durability always), alternating\n",
              o.rounds);
  if (!o.json) {
    std::printf("%8s %10s %13s %13s %13s %18s %18s\n", "size", "count", "raw ev/s", "reliable ev/s",
                "durable ev/s", "durable/raw", "durable/reliable");
  }
  bool all_completed = true;
  for (const auto size : o.sizes) {
    const auto spec = o.spec(size);
    auto reliable_spec = spec;
    reliable_spec.mode = run_mode::reliable;
    std::vector<double> raw, reliable, durable, vs_raw, vs_reliable;
    for (unsigned round = 0; round < o.rounds; ++round) {
      const auto r = measure_throughput(transport::raw, spec);
      const auto m = measure_throughput(transport::meshbus, reliable_spec);
      const auto d = measure_throughput(transport::meshbus, spec);
      for (const auto* side : {&r, &m, &d}) {
        if (!side->outcome) {
          all_completed = false;
          std::fprintf(stderr, "meshbus-perf: size %zu round %u: %s\n", size, round + 1, side->error.c_str());
        }
      }
      if (o.verbose) {
        print_details("throughput", size, "raw", r.error, r.outcome ? describe(*r.outcome) : "");
        print_details("throughput", size, "reliable", m.error, m.outcome ? describe(*m.outcome) : "");
        print_details("throughput", size, "durable", d.error, d.outcome ? describe(*d.outcome) : "");
      }
      if (!r.outcome || !m.outcome || !d.outcome) continue;
      const auto lost = spec.count * 3 - r.outcome->received - m.outcome->received - d.outcome->received;
      if (lost != 0) {
        all_completed = false;
        std::fprintf(stderr, "meshbus-perf: size %zu round %u: %llu events did not arrive\n", size, round + 1,
                     static_cast<unsigned long long>(lost));
      }
      raw.push_back(r.outcome->events_per_s());
      reliable.push_back(m.outcome->events_per_s());
      durable.push_back(d.outcome->events_per_s());
      vs_raw.push_back(durable.back() / raw.back());
      vs_reliable.push_back(durable.back() / reliable.back());
      if (o.json) {
        std::printf("{\"size\":%zu,\"count\":%llu,\"mode\":\"durable\",\"round\":%u,\"raw_events_per_s\":%.0f,"
                    "\"reliable_events_per_s\":%.0f,\"durable_events_per_s\":%.0f}\n",
                    size, static_cast<unsigned long long>(spec.count), round + 1, raw.back(), reliable.back(),
                    durable.back());
      }
    }
    if (vs_raw.empty()) continue;
    if (o.json) {
      std::printf("{\"size\":%zu,\"mode\":\"durable\",\"rounds\":%zu,\"median_raw_events_per_s\":%.0f,"
                  "\"median_reliable_events_per_s\":%.0f,\"median_durable_events_per_s\":%.0f,"
                  "\"median_ratio_raw\":%.3f,\"median_ratio_reliable\":%.3f}\n",
                  size, vs_raw.size(), median(raw), median(reliable), median(durable), median(vs_raw),
                  median(vs_reliable));
    } else {
      std::printf("%8zu %10s %13s %13s %13s %18s %18s\n", size,
                  with_commas(static_cast<double>(spec.count)).c_str(), with_commas(median(raw)).c_str(),
                  with_commas(median(reliable)).c_str(), with_commas(median(durable)).c_str(),
                  median_and_range(vs_raw).c_str(), median_and_range(vs_reliable).c_str());
    }
  }
  if (!o.json) std::printf("# medians of %u rounds; ratios: median of the per-round ratios (min-max)\n", o.rounds);
  return all_completed ? 0 : 1;
}

// eventstore: per round the log, execute, append_async, the k=1 pair (execute and
// append_async on a replicated store) and loads runs, one after the other (see
// help::eventstore); the summary takes the rounds where all of them completed.
int eventstore_main(const eventstore_spec& spec, unsigned rounds, bool json, bool verbose) {
  if (!json) print_eventstore_header(spec, rounds);
  run_spec log_spec;
  log_spec.size = log_spec.requested_size = spec.size;
  log_spec.count = spec.log_count;
  log_spec.mode = run_mode::durable;
  bool all_completed = true;
  std::vector<eventstore_round> completed;
  std::uint64_t snapshot_version = 0;
  for (unsigned round = 1; round <= rounds; ++round) {
    const auto log = measure_log_append(log_spec);
    const auto commands = measure_aggregate_commands(spec);
    const auto appends = measure_pipelined_appends(spec);
    const auto replicated = measure_replicated(spec);
    const auto loads = measure_loads(spec);
    char text[160];
    if (verbose) {
      if (log.outcome) {
        std::snprintf(text, sizeof text, "%.3f s: publish loop %.3f s, flush %.3f s", log.outcome->seconds,
                      log.outcome->send_seconds, log.outcome->flush_seconds);
      }
      print_details("eventstore", spec.size, "log", log.error,
                    log.outcome ? text + ("; " + log.outcome->details) : "");
      for (const auto& [name, side] :
           {std::pair{"execute k=0", &commands}, std::pair{"append_async k=0", &appends},
            std::pair{"execute k=1", &replicated.commands},
            std::pair{"append_async k=1", &replicated.appends}}) {
        if (side->outcome) std::snprintf(text, sizeof text, "%.3f s", side->outcome->seconds);
        print_details("eventstore", spec.size, name, side->error,
                      side->outcome ? text + ("; " + side->outcome->details) : "");
      }
      if (loads.outcome) {
        std::snprintf(text, sizeof text, "median %.1f us without a snapshot, %.1f us with",
                      median(loads.outcome->full_us), median(loads.outcome->snapshot_us));
      }
      print_details("eventstore", spec.size, "loads", loads.error,
                    loads.outcome ? text + ("; " + loads.outcome->details) : "");
    }
    bool complete = true;
    for (const auto& [name, error] :
         {std::pair{"log", &log.error}, std::pair{"execute k=0", &commands.error},
          std::pair{"append_async k=0", &appends.error}, std::pair{"execute k=1", &replicated.commands.error},
          std::pair{"append_async k=1", &replicated.appends.error}, std::pair{"loads", &loads.error}}) {
      if (error->empty()) continue;
      complete = false;
      std::fprintf(stderr, "meshbus-perf: eventstore round %u, %s: %s\n", round, name, error->c_str());
    }
    if (!complete) {
      all_completed = false;
      continue;
    }
    eventstore_round r;
    r.log_events_per_s = log.outcome->events_per_s();
    r.command_events_per_s = commands.outcome->events_per_s();
    r.append_events_per_s = appends.outcome->events_per_s();
    r.full_load_us = median(loads.outcome->full_us);
    r.snapshot_load_us = median(loads.outcome->snapshot_us);
    r.command_events_per_commit = commands.outcome->events_per_commit;
    r.append_events_per_commit = appends.outcome->events_per_commit;
    r.command_k1_events_per_s = replicated.commands.outcome->events_per_s();
    r.append_k1_events_per_s = replicated.appends.outcome->events_per_s();
    r.command_k1_events_per_commit = replicated.commands.outcome->events_per_commit;
    r.append_k1_events_per_commit = replicated.appends.outcome->events_per_commit;
    snapshot_version = loads.outcome->snapshot_version;
    completed.push_back(r);
    if (json) print_eventstore_round(spec, round, r);
  }
  print_eventstore_summary(spec, json, snapshot_version, completed);
  return all_completed ? 0 : 1;
}

int throughput_main(const command_options& o) {
  if (o.mode == run_mode::durable) return durable_main(o);
  if (!o.json) print_throughput_header(o);
  bool all_completed = true;
  for (const auto size : o.sizes) {
    const auto spec = o.spec(size);
    const auto raw = measure_throughput(transport::raw, spec);
    const auto mesh = measure_throughput(transport::meshbus, spec);
    if (o.verbose) {
      print_details("throughput", size, "raw", raw.error, raw.outcome ? describe(*raw.outcome) : "");
      print_details("throughput", size, "meshbus", mesh.error, mesh.outcome ? describe(*mesh.outcome) : "");
    }
    print_throughput_row(o, spec, raw, mesh);
    all_completed = all_completed && raw.outcome && mesh.outcome;
  }
  return all_completed ? 0 : 1;
}

int latency_main(const command_options& o) {
  if (!o.json) print_latency_header(o);
  bool all_completed = true;
  for (const auto size : o.sizes) {
    const auto spec = o.spec(size);
    const auto raw = measure_latency(transport::raw, spec);
    const auto mesh = measure_latency(transport::meshbus, spec);
    if (o.verbose) {
      print_details("latency", size, "raw", raw.error, raw.outcome ? raw.outcome->details : "");
      print_details("latency", size, "meshbus", mesh.error, mesh.outcome ? mesh.outcome->details : "");
    }
    print_latency_row(o, spec, raw, mesh);
    all_completed = all_completed && raw.outcome && mesh.outcome;
  }
  return all_completed ? 0 : 1;
}

// ---------------------------------------------------------------------------
// the child process

/// The hidden subcommands: `_subscriber|_echoer|_replier --transport raw|meshbus
/// --size S --count N --warmup W --mode M --handler-threads T (--endpoint E |
/// --cluster C)` (a raw _replier has no endpoint), as start_child() writes them.
CLI::App* add_child_command(CLI::App& app, std::string_view name, child_config& c, std::string& mode) {
  auto* child = app.add_subcommand(std::string(name), "");
  child->group("");  // hidden from --help
  child->add_option("--transport", c.transport)->required()->check(CLI::IsMember({"raw", "meshbus"}));
  child->add_option("--size", c.spec.size)->required()->check(number_check(false));
  child->add_option("--count", c.spec.count)->required()->check(number_check(false));
  child->add_option("--warmup", c.spec.warmup)->check(number_check(true));
  child->add_option("--mode", mode)->check(check_that([](const std::string& text) {
    return parse_mode(text) ? std::string() : "unknown mode " + text;
  }));
  child->add_option("--handler-threads", c.spec.handler_threads)->check(CLI::Range(0U, max_handler_threads));
  child->add_option("--endpoint", c.endpoint);
  child->add_option("--cluster", c.cluster);
  return child;
}

/// Runs the child half `command`; reports on stdout, see perf_child.
int child_main(std::string_view command, const child_config& c) {
  try {
    const auto cpu0 = process_cpu_ms();  // set-up, the run and (meshbus) stop()
    // A raw replier binds its ROUTER; every other raw child connects to the driver's socket.
    const bool raw = c.transport == "raw";
    if (raw ? command != replier_command && c.endpoint.empty() : c.cluster.empty()) {
      throw std::runtime_error("bad child transport");
    }
    std::string result;
    if (command == subscriber_command) {
      result = raw ? raw_subscribe(c) : meshbus_subscribe(c);
    } else if (command == echoer_command) {
      result = raw ? raw_echo(c) : meshbus_echo(c);
    } else {
      result = raw ? raw_reply(c) : meshbus_reply(c);
    }
    if (result.empty()) return 1;  // the driver is gone
    write_line(1, "result " + joined(result, cpu_field(cpu0)));
    return 0;
  } catch (const std::exception& e) {
    write_line(1, std::string("error ") + e.what());
    return 1;
  }
}

/// eventstore's replica (serve_replica()); reports on stdout as child_main() does.
int replica_main(const replica_config& c) {
  try {
    const auto cpu0 = process_cpu_ms();
    const auto result = serve_replica(c);
    if (result.empty()) return 1;  // the driver is gone
    write_line(1, "result " + joined(result, cpu_field(cpu0)));
    return 0;
  } catch (const std::exception& e) {
    write_line(1, std::string("error ") + e.what());
    return 1;
  }
}

// ---------------------------------------------------------------------------
// the command line

std::string footer(std::initializer_list<const char*> sections) {
  std::string out = "\n";
  for (const char* s : sections) out += s;
  return out;
}

/// The exit code for a command line CLI11 refused, after saying why (or printing --help).
int refuse(CLI::App& app, const CLI::ParseError& e, int argc, char** argv) {
  if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) return app.exit(e);
  const std::string_view first = argc > 1 ? argv[1] : "";
  if (first.starts_with('_')) {  // a child half: the driver reads its stdout
    write_line(1, "error bad child arguments: " + std::string(e.what()));
    return 1;
  }
  if (app.get_subcommands().empty() && !first.starts_with('-')) {
    std::fprintf(stderr, "meshbus-perf: unknown command '%s' (try --help)\n", argv[1]);
    return 2;
  }
  std::fprintf(stderr, "meshbus-perf: %s\nmeshbus-perf: see meshbus-perf --help\n", e.what());
  return 2;
}

int run(int argc, char** argv) {
  CLI::App app{"meshbus-perf: meshbus side by side with raw ZeroMQ, over TCP loopback", "meshbus-perf"};
  app.require_subcommand(1);
  app.footer(footer({help::intro, "\n", help::throughput, help::typed, help::latency, help::request,
                     help::meshbus_in_both, help::eventstore, help::exit_status}));
  command_flags throughput_flags;
  auto* throughput = app.add_subcommand("throughput", "a publisher (this process) sends count events to a "
                                                      "subscriber (a second process), raw ZeroMQ then meshbus");
  add_measure_options(*throughput, command_kind::throughput, throughput_flags);
  throughput->footer(
      footer({help::throughput, help::typed, help::meshbus_in_both, help::exit_status}));
  command_flags latency_flags;
  auto* latency = app.add_subcommand(
      "latency", "one event (or request) at a time to an echoer (a second process), raw ZeroMQ then meshbus");
  add_measure_options(*latency, command_kind::latency, latency_flags);
  latency->footer(footer({help::latency, help::request, help::meshbus_in_both, help::exit_status}));
  eventstore_flags eventstore_flags;
  auto* eventstore = app.add_subcommand(
      "eventstore",
      "the event store and aggregates on a durable log, without and with a replica (a second "
      "process), beside the log's own append rate, in alternating rounds");
  add_eventstore_options(*eventstore, eventstore_flags);
  eventstore->footer(footer({help::eventstore, help::exit_status}));
  child_config child;
  std::string child_mode = "reliable";
  std::vector<CLI::App*> children;
  for (const auto name : {subscriber_command, echoer_command, replier_command}) {
    children.push_back(add_child_command(app, name, child, child_mode));
  }
  // `_replica --cluster C --service S --data-dir D`, as measure_replicated() starts it.
  replica_config replica;
  auto* replica_child = app.add_subcommand(std::string(replica_command), "");
  replica_child->group("");  // hidden from --help
  replica_child->add_option("--cluster", replica.cluster)->required();
  replica_child->add_option("--service", replica.service)->required();
  replica_child->add_option("--data-dir", replica.data_dir)->required();

  if (argc < 2) {
    std::fputs(app.help().c_str(), stderr);
    return 2;
  }
  if (std::string_view(argv[1]) == "help") {
    std::fputs(app.help().c_str(), stdout);
    return 0;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return refuse(app, e, argc, argv);
  }
  for (auto* c : children) {
    if (!c->parsed()) continue;
    child.spec.mode = parse_mode(child_mode).value_or(run_mode::reliable);
    return child_main(c->get_name(), child);
  }
  if (replica_child->parsed()) return replica_main(replica);
  if (eventstore->parsed()) {
    auto spec = eventstore_flags.spec;
    if (spec.snapshot_every > spec.load_events) {
      std::fprintf(stderr,
                   "meshbus-perf: --snapshot-every %llu: an aggregate of --load-events %llu has no such "
                   "snapshot\nmeshbus-perf: see meshbus-perf eventstore --help\n",
                   static_cast<unsigned long long>(spec.snapshot_every),
                   static_cast<unsigned long long>(spec.load_events));
      return 2;
    }
    if (eventstore_flags.count_option->count() == 0) {
      spec.log_count =
          std::clamp<std::uint64_t>(bytes_per_run / spec.size, min_default_count, max_default_count);
    }
    return eventstore_main(spec, eventstore_flags.rounds, eventstore_flags.json, eventstore_flags.verbose);
  }
  const auto kind = latency->parsed() ? command_kind::latency : command_kind::throughput;
  const auto options = options_of(kind, kind == command_kind::latency ? latency_flags : throughput_flags);
  if (!options) {
    std::fprintf(stderr, "meshbus-perf: see meshbus-perf --help\n");
    return 2;
  }
  return kind == command_kind::latency ? latency_main(*options) : throughput_main(*options);
}

}  // namespace
}  // namespace meshbus_perf

int main(int argc, char** argv) {
  ::signal(SIGPIPE, SIG_IGN);  // a vanished child shows up as a failed write
  return meshbus_perf::run(argc, argv);
}
