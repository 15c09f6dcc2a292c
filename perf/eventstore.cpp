// eventstore's measurements: aggregate commands from several threads, appends pipelined
// from one, loads with and without a snapshot, and the first two again on a replicated
// store (k=1) with its replica in a child process. Each runs on a Node of its own with a
// fresh data directory under /tmp and the library's defaults (Durability::always,
// EventStoreOptions{}: every appended event is also published, here to nobody).
// Whatever a run is set up with (streams, snapshots, claims) is built before its clock
// starts, and checked afterwards against the store's and the aggregate's counters.
#include "eventstore.hpp"

#include <atomic>
#include <cstdio>
#include <exception>
#include <future>
#include <thread>
#include <utility>
#include <vector>

#include "meshbus/aggregate.hpp"
#include "meshbus/event_store.hpp"

namespace meshbus_perf {
namespace {

constexpr std::string_view category = "bench";

/// The event of every command and append: `data` (the marker, then zeros) brings its
/// MessagePack encoding, the payload, to the size asked for.
struct bench_added {
  static constexpr std::string_view event_name = "perf.bench.added";
  static constexpr std::uint32_t event_version = 1;
  std::string data;
  MSGPACK_DEFINE_MAP(data)
};

/// What a bench aggregate's events add up to; packed into its snapshots.
struct bench_state {
  std::uint64_t events = 0;
  std::uint64_t bytes = 0;
  MSGPACK_DEFINE_MAP(events, bytes)
};

std::size_t encoded_size(std::size_t data_bytes) {
  return meshbus::encode_event(bench_added{marked_payload(data_bytes, measured_marker)}).size();
}

/// The event that encodes to `size` bytes; run_error when none does (the string
/// header grows by a byte at 32 and 256 bytes of data, so a few sizes cannot be hit).
bench_added event_of_size(std::size_t size) {
  const auto overhead = encoded_size(1) - 1;
  if (size <= overhead) {
    throw run_error(std::to_string(size) + " bytes is too small: the event takes at least " +
                    std::to_string(overhead + 1));
  }
  std::size_t data = size - overhead;
  while (data > 1 && encoded_size(data) > size) --data;
  if (encoded_size(data) != size) {
    throw run_error("no event encodes to exactly " + std::to_string(size) +
                    " bytes (the MessagePack string "
                    "header grows there); try " +
                    std::to_string(size + 1));
  }
  return bench_added{marked_payload(data, measured_marker)};
}

meshbus::AggregateOptions with_snapshots(std::uint64_t every) {
  meshbus::AggregateOptions o;
  o.snapshot_every = every;
  return o;
}

/// A bench aggregate: each event counts itself and its bytes.
class bench_aggregate {
 public:
  explicit bench_aggregate(meshbus::EventStore& store, std::uint64_t snapshot_every = 0)
      : aggregate_(store, std::string(category), with_snapshots(snapshot_every)) {
    aggregate_.apply<bench_added>([](bench_state& s, const bench_added& e) {
      ++s.events;
      s.bytes += e.data.size();
    });
  }
  meshbus::Aggregate<bench_state>* operator->() noexcept { return &aggregate_; }

 private:
  meshbus::Aggregate<bench_state> aggregate_;
};

/// A Node with a fresh data directory (the library's default durability) and its
/// EventStore (default options). Destroyed in reverse: the store waits for its appends,
/// the node closes its log, the directory goes.
class store_under_test {
 public:
  explicit store_under_test(const char* role)
      : node_(options(role, dir_)), store_(node_), cpu0_(process_cpu_ms()) {}

  meshbus::EventStore& store() noexcept { return store_; }
  /// Group commits, history-log commits and this process's CPU time since set-up.
  std::string counters() const {
    const auto es = store_.stats();
    const auto n = node_.stats();
    char text[256];
    std::snprintf(text, sizeof text,
                  "appends=%llu commits=%llu events_per_commit=%.1f wrong_expected_version=%llu "
                  "append_failures=%llu log_commits=%llu log_events_written=%llu",
                  static_cast<unsigned long long>(es.appends), static_cast<unsigned long long>(es.commits),
                  events_per_commit(), static_cast<unsigned long long>(es.wrong_expected_version),
                  static_cast<unsigned long long>(es.append_failures),
                  static_cast<unsigned long long>(n.store_commits),
                  static_cast<unsigned long long>(n.store_events_written));
    return joined(text, cpu_field(cpu0_));
  }
  double events_per_commit() const {
    const auto es = store_.stats();
    return es.commits != 0 ? static_cast<double>(es.events_appended) / static_cast<double>(es.commits) : 0.0;
  }
  /// Throws run_error unless the store appended exactly `events` events, none refused.
  void check_appended(std::uint64_t events) const {
    const auto es = store_.stats();
    if (es.events_appended != events || es.wrong_expected_version != 0 || es.append_failures != 0) {
      throw run_error("the event store appended " + std::to_string(es.events_appended) + " of " +
                      std::to_string(events) + " events (" + std::to_string(es.wrong_expected_version) +
                      " refused for their expected version, " + std::to_string(es.append_failures) +
                      " failed)");
    }
  }

 private:
  static meshbus::Options options(const char* role, const scratch_dir& dir) {
    auto o = node_options(next_cluster(), role, 1);
    o.data_dir = dir.path();  // Durability::always, the default
    return o;
  }

  scratch_dir dir_;
  meshbus::Node node_;
  meshbus::EventStore store_;
  double cpu0_;
};

/// Appends `count` events to `stream` with append_async(any()) and waits for them all.
void append_pipelined(meshbus::EventStore& store, const std::string& stream, const meshbus::NewEvent& event,
                      std::uint64_t count) {
  std::vector<std::future<std::uint64_t>> done;
  done.reserve(count);
  for (std::uint64_t i = 0; i < count; ++i) {
    done.push_back(store.append_async(stream, {event}, meshbus::ExpectedVersion::any()));
  }
  for (auto& f : done) (void)f.get();
}

/// The streams of the pipelined appends: "bench-<i>", one per aggregate.
std::vector<std::string> bench_streams(const eventstore_spec& spec) {
  const auto count = std::max<std::uint64_t>(1, spec.aggregates);
  std::vector<std::string> streams;
  streams.reserve(count);
  for (std::uint64_t i = 0; i < count; ++i) {
    streams.push_back(std::string(category) + "-" + std::to_string(i));
  }
  return streams;
}

/// One command on each of spec.aggregates aggregates from spec.threads threads
/// (aggregate i on thread i mod threads), each emitting `event`; every command must
/// leave its aggregate at `version`. Returns the seconds from letting the threads go
/// to the return of the last command.
double execute_all(bench_aggregate& benches, const bench_added& event, const eventstore_spec& spec,
                   std::uint64_t version) {
  const auto threads = std::max(1U, spec.threads);
  // The workers wait for `start`; t0 is taken just before it is given.
  std::promise<void> start;
  const auto started = start.get_future().share();
  std::atomic<bool> abandon{false};
  std::vector<std::exception_ptr> errors(threads);
  std::vector<std::thread> workers;
  auto join_all = [&] {
    for (auto& w : workers) w.join();
  };
  try {
    for (unsigned t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] {
        started.wait();
        if (abandon.load()) return;
        try {
          for (std::uint64_t i = t; i < spec.aggregates && !abandon.load(); i += threads) {
            const auto result = benches->execute(
                std::to_string(i), [&](const bench_state&, meshbus::Changes& out) { out.emit(event); });
            if (result.version != version || result.appended != 1) {
              throw run_error("aggregate bench-" + std::to_string(i) + " is at version " +
                              std::to_string(result.version) + " after a command, not " +
                              std::to_string(version));
            }
          }
        } catch (...) {
          errors[t] = std::current_exception();
          abandon.store(true);  // the others stop too: the run has failed
        }
      });
    }
  } catch (...) {
    abandon.store(true);
    start.set_value();
    join_all();
    throw;
  }
  const auto t0 = monotonic_ns();
  start.set_value();
  join_all();
  const auto t_end = monotonic_ns();
  for (const auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
  return seconds_between(t0, t_end);
}

/// `count` append_async(any()) of `event`, round robin over `streams`, without waiting
/// in between; returns the seconds from the first call to the last completion.
double append_all(meshbus::EventStore& store, const std::vector<std::string>& streams,
                  const meshbus::NewEvent& event, std::uint64_t count) {
  std::vector<std::future<std::uint64_t>> done;
  done.reserve(count);
  const auto t0 = monotonic_ns();
  for (std::uint64_t i = 0; i < count; ++i) {
    done.push_back(store.append_async(streams[i % streams.size()], {event}, meshbus::ExpectedVersion::any()));
  }
  for (auto& f : done) (void)f.get();
  return seconds_between(t0, monotonic_ns());
}

/// Events per group commit between two readings of the store's counters.
double events_per_commit(const meshbus::EventStoreStats& from, const meshbus::EventStoreStats& to) {
  const auto commits = to.commits - from.commits;
  return commits != 0
             ? static_cast<double>(to.events_appended - from.events_appended) / static_cast<double>(commits)
             : 0.0;
}

/// k=1: this process's store (a private service, replicas = 1) and its one replica, this
/// program re-executed as _replica with a data directory of its own, in the same
/// private cluster. Set up once both are members of the service. Destroyed in reverse:
/// the store (waits for its appends), the node, its directory, then the replica (killed
/// by pid unless finish() saw it exit) and the replica's directory.
class replicated_store {
 public:
  replicated_store()
      : cluster_(next_cluster()),
        service_(cluster_ + "-bench"),
        replica_(std::make_unique<perf_child>(
            replica_command, std::vector<std::string>{"--cluster", cluster_, "--service", service_,
                                                      "--data-dir", replica_dir_.path()})),
        node_(options(cluster_, dir_)),
        store_(node_, store_options(service_)),
        cpu0_(process_cpu_ms()) {
    (void)replica_->expect("ready", setup_timeout);
    const auto deadline = std::chrono::steady_clock::now() + setup_timeout;
    while (store_.members().size() != 2) {
      if (std::chrono::steady_clock::now() >= deadline) {
        throw run_error("the replica did not join the service '" + service_ + "' within " +
                        std::to_string(setup_timeout.count()) + " s (" +
                        std::to_string(store_.members().size()) + " members)");
      }
      std::this_thread::sleep_for(10ms);
    }
  }

  meshbus::EventStore& store() noexcept { return store_; }

  /// The store's replication counters, its node's request counters and this process's
  /// CPU time since set-up.
  std::string counters() const {
    const auto es = store_.stats();
    char text[256];
    std::snprintf(text, sizeof text,
                  "appends=%llu commits=%llu takeovers=%llu not_enough_replicas=%llu fenced=%llu "
                  "append_failures=%llu",
                  static_cast<unsigned long long>(es.appends), static_cast<unsigned long long>(es.commits),
                  static_cast<unsigned long long>(es.takeovers),
                  static_cast<unsigned long long>(es.not_enough_replicas),
                  static_cast<unsigned long long>(es.fenced),
                  static_cast<unsigned long long>(es.append_failures));
    return joined(joined(text, request_counters(node_.stats())), cpu_field(cpu0_));
  }

  /// Ends the replica: it reports what it holds, which must be every event appended
  /// here. Returns its counters, for --verbose.
  std::string finish() {
    replica_->send("done");
    const auto result = replica_->expect("result", report_timeout);
    const auto fields = split(result, ' ');
    const auto held = static_cast<std::uint64_t>(parse_field(fields, 0));
    const int status = replica_->wait_exit(exit_timeout);
    const auto appended = store_.stats().events_appended;
    if (held != appended) {
      throw run_error("the replica holds " + std::to_string(held) + " of the " + std::to_string(appended) +
                      " events appended");
    }
    std::string details;
    append_child_details(details, fields, 1, "replica", status);
    return details;
  }

 private:
  static meshbus::Options options(const std::string& cluster, const scratch_dir& dir) {
    auto o = node_options(cluster, "replicated", 1);
    o.data_dir = dir.path();  // Durability::always, the default
    return o;
  }
  static meshbus::EventStoreOptions store_options(const std::string& service) {
    meshbus::EventStoreOptions o;
    o.service = service;
    o.replicas = 1;
    return o;
  }

  std::string cluster_;
  std::string service_;
  scratch_dir replica_dir_;
  std::unique_ptr<perf_child> replica_;
  scratch_dir dir_;
  meshbus::Node node_;
  meshbus::EventStore store_;
  double cpu0_;
};

/// Throws run_error unless, between the two readings, `events` events were appended
/// with nothing refused or failed and no stream claimed.
void check_timed(const meshbus::EventStoreStats& from, const meshbus::EventStoreStats& to,
                 std::uint64_t events) {
  const auto appended = to.events_appended - from.events_appended;
  const auto refused = to.wrong_expected_version - from.wrong_expected_version;
  const auto failed = (to.append_failures - from.append_failures) +
                      (to.not_enough_replicas - from.not_enough_replicas) + (to.fenced - from.fenced);
  const auto claims = to.takeovers - from.takeovers;
  if (appended != events || refused != 0 || failed != 0 || claims != 0) {
    throw run_error("the replicated store appended " + std::to_string(appended) + " of " +
                    std::to_string(events) + " events (" + std::to_string(refused) +
                    " refused for their expected version, " + std::to_string(failed) + " failed, " +
                    std::to_string(claims) + " streams claimed)");
  }
}

}  // namespace

std::string eventstore_size_problem(std::size_t size) {
  try {
    (void)event_of_size(size);
    return {};
  } catch (const run_error& e) {
    return e.what();
  }
}

append_side measure_aggregate_commands(const eventstore_spec& spec) {
  append_side r;
  try {
    store_under_test s("commands");
    bench_aggregate benches(s.store());
    const auto event = event_of_size(spec.size);
    const auto seconds = execute_all(benches, event, spec, 1);
    s.check_appended(spec.aggregates);
    append_outcome out;
    out.events = spec.aggregates;
    out.seconds = seconds;
    out.events_per_commit = s.events_per_commit();
    char text[96];
    std::snprintf(text, sizeof text, "threads=%u conflicts=%llu", std::max(1U, spec.threads),
                  static_cast<unsigned long long>(benches->stats().conflicts));
    out.details = joined(text, s.counters());
    r.outcome = std::move(out);
  } catch (const std::exception& e) {
    r.error = e.what();
  }
  return r;
}

append_side measure_pipelined_appends(const eventstore_spec& spec) {
  append_side r;
  try {
    store_under_test s("appends");
    const auto event = meshbus::NewEvent::of(event_of_size(spec.size));
    const auto streams = bench_streams(spec);
    const auto seconds = append_all(s.store(), streams, event, spec.appends);

    s.check_appended(spec.appends);
    append_outcome out;
    out.events = spec.appends;
    out.seconds = seconds;
    out.events_per_commit = s.events_per_commit();
    out.details = s.counters();
    r.outcome = std::move(out);
  } catch (const std::exception& e) {
    r.error = e.what();
  }
  return r;
}

replicated_sides measure_replicated(const eventstore_spec& spec) {
  replicated_sides r;
  try {
    replicated_store s;
    bench_aggregate benches(s.store());
    const auto event = event_of_size(spec.size);
    const auto streams = bench_streams(spec);

    // Untimed: the first command on each aggregate claims its stream for this instance.
    const auto warm_up = execute_all(benches, event, spec, 1);
    auto before = s.store().stats();
    if (before.takeovers != spec.aggregates || before.events_appended != spec.aggregates) {
      throw run_error("the warm-up claimed " + std::to_string(before.takeovers) + " and appended to " +
                      std::to_string(before.events_appended) + " of " + std::to_string(spec.aggregates) +
                      " streams");
    }
    char text[128];
    std::snprintf(text, sizeof text, "warm-up (claims) %.3f s", warm_up);
    std::string set_up = text;

    append_outcome commands;
    commands.events = spec.aggregates;
    commands.seconds = execute_all(benches, event, spec, 2);
    auto after = s.store().stats();
    check_timed(before, after, spec.aggregates);
    commands.events_per_commit = events_per_commit(before, after);
    std::snprintf(text, sizeof text, "threads=%u conflicts=%llu", std::max(1U, spec.threads),
                  static_cast<unsigned long long>(benches->stats().conflicts));
    commands.details = joined(joined(text, set_up), s.counters());

    before = after;
    append_outcome appends;
    appends.events = spec.appends;
    appends.seconds = append_all(s.store(), streams, meshbus::NewEvent::of(event), spec.appends);
    after = s.store().stats();
    check_timed(before, after, spec.appends);
    appends.events_per_commit = events_per_commit(before, after);

    appends.details = s.counters();
    appends.details += "; " + s.finish();  // the replica's counters
    r.commands.outcome = std::move(commands);
    r.appends.outcome = std::move(appends);
  } catch (const std::exception& e) {
    r.commands.outcome.reset();
    r.appends.outcome.reset();
    r.commands.error = r.appends.error = e.what();
  }
  return r;
}

std::string serve_replica(const replica_config& c) {
  if (c.cluster.empty() || c.service.empty() || c.data_dir.empty()) throw run_error("bad replica arguments");
  auto o = node_options(c.cluster, "replica", 1);
  o.data_dir = c.data_dir;
  meshbus::Node node(o);
  meshbus::EventStoreOptions eo;
  eo.service = c.service;
  eo.replicas = 1;
  meshbus::EventStore store(node, eo);
  if (!write_line(1, "ready")) return {};
  if (!await_driver("done", replica_timeout)) return {};
  const auto es = store.stats();
  char text[128];
  std::snprintf(text, sizeof text, "%llu replicated_in=%llu replication_malformed=%llu",
                static_cast<unsigned long long>(es.replicated_in),
                static_cast<unsigned long long>(es.replicated_in),
                static_cast<unsigned long long>(es.replication_malformed));
  return joined(text, request_counters(node.stats()));
}

load_side measure_loads(const eventstore_spec& spec) {
  load_side r;
  try {
    if (spec.snapshot_every == 0 || spec.load_events < spec.snapshot_every) {
      throw run_error("an aggregate of " + std::to_string(spec.load_events) +
                      " events has no snapshot every " + std::to_string(spec.snapshot_every));
    }
    store_under_test s("loads");
    bench_aggregate full(s.store());
    bench_aggregate snapshotted(s.store(), spec.snapshot_every);
    const auto event = event_of_size(spec.size);
    const auto new_event = meshbus::NewEvent::of(event);

    // "bench-full": every event, no snapshot. "bench-snapshot": the same number, its
    // snapshot saved by the command that carries it to the last multiple of
    // snapshot_every (as execute() does), then the rest.
    const auto full_stream = full->stream_of("full");
    const auto snapshot_stream = snapshotted->stream_of("snapshot");
    const auto at = spec.load_events / spec.snapshot_every * spec.snapshot_every;
    append_pipelined(s.store(), full_stream, new_event, spec.load_events);
    append_pipelined(s.store(), snapshot_stream, new_event, at - 1);
    (void)snapshotted->execute("snapshot",
                               [&](const bench_state&, meshbus::Changes& out) { out.emit(event); });
    append_pipelined(s.store(), snapshot_stream, new_event, spec.load_events - at);
    if (snapshotted->stats().snapshots_saved != 1) throw run_error("the snapshot was not saved");

    // Untimed: both load as intended.
    const auto f = full->load("full");
    const auto n = snapshotted->load("snapshot");
    if (f.version != spec.load_events || f.snapshot_version != 0 || f.events_applied != spec.load_events ||
        f.state.events != spec.load_events) {
      throw run_error("the aggregate without a snapshot loaded at version " + std::to_string(f.version) +
                      " with " + std::to_string(f.events_applied) + " events applied");
    }
    if (n.version != spec.load_events || n.snapshot_version != at ||
        n.events_applied != spec.load_events - at || n.state.events != spec.load_events) {
      throw run_error("the aggregate with snapshots loaded at version " + std::to_string(n.version) +
                      " from a snapshot at " + std::to_string(n.snapshot_version) + " with " +
                      std::to_string(n.events_applied) + " events applied");
    }

    load_outcome out;
    out.snapshot_version = at;
    out.events_after_snapshot = spec.load_events - at;
    out.full_us.reserve(spec.loads);
    out.snapshot_us.reserve(spec.loads);
    std::uint64_t checksum = 0;  // uses every load's state
    for (std::uint64_t i = 0; i < spec.loads; ++i) {
      auto t0 = monotonic_ns();
      checksum += full->load("full").state.events;
      auto t1 = monotonic_ns();
      out.full_us.push_back(static_cast<double>(t1 - t0) / 1e3);
      t0 = monotonic_ns();
      checksum += snapshotted->load("snapshot").state.events;
      t1 = monotonic_ns();
      out.snapshot_us.push_back(static_cast<double>(t1 - t0) / 1e3);
    }
    if (checksum != 2 * spec.loads * spec.load_events)
      throw run_error("a timed load came back with another state");
    const auto fs = full->stats();
    const auto ns = snapshotted->stats();
    char text[160];
    std::snprintf(text, sizeof text, "events_applied=%llu/%llu snapshots_used=%llu/%llu",
                  static_cast<unsigned long long>(fs.events_applied),
                  static_cast<unsigned long long>(ns.events_applied),
                  static_cast<unsigned long long>(fs.snapshots_used),
                  static_cast<unsigned long long>(ns.snapshots_used));
    out.details = joined(text, s.counters());
    r.outcome = std::move(out);
  } catch (const std::exception& e) {
    r.error = e.what();
  }
  return r;
}

}  // namespace meshbus_perf
