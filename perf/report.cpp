// The table and JSON output of meshbus-perf; see report.hpp. Everything is printed with
// printf and fixed decimals, so that a JSON line keeps its exact form from run to run (the
// only string, a failed run's error, is escaped by json_string()).
#include "report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <initializer_list>
#include <utility>

namespace meshbus_perf {

std::string with_commas(double value) {
  auto digits = std::to_string(std::llround(value));
  for (auto at = static_cast<std::ptrdiff_t>(digits.size()) - 3; at > 0; at -= 3) {
    digits.insert(static_cast<std::size_t>(at), 1, ',');
  }
  return digits;
}

double median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const auto n = values.size();
  return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

std::string median_and_range(const std::vector<double>& ratios) {
  if (ratios.empty()) return "-";
  const auto [lo, hi] = std::minmax_element(ratios.begin(), ratios.end());
  int decimals = 2;
  if (*lo > 0 && *lo < 0.1) decimals = 2 - static_cast<int>(std::floor(std::log10(*lo)));
  char text[96];
  std::snprintf(text, sizeof text, "%.*f (%.*f-%.*f)", decimals, median(ratios), decimals, *lo, decimals, *hi);
  return text;
}

namespace {

std::string json_string(std::string_view text) {
  std::string out = "\"";
  for (const char ch : text) {
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (static_cast<unsigned char>(ch) < 0x20) {
      char esc[8];
      std::snprintf(esc, sizeof esc, "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(ch)));
      out += esc;
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

/// `"<p>name":null,...` for each name, then `"<p>error":"..."`, for a failed side.
std::string json_failed_side(const std::string& p, std::initializer_list<const char*> names,
                             const std::string& error) {
  std::string out;
  for (const char* n : names) out += "\"" + p + n + "\":null,";
  return out + "\"" + p + "error\":" + json_string(error) + ",";
}

/// "<measured>/<baseline>" as JSON, or null.
std::string json_ratio(double measured, double baseline, bool both) {
  if (!both || baseline <= 0) return "null";
  char text[32];
  std::snprintf(text, sizeof text, "%.3f", measured / baseline);
  return text;
}

// --- throughput output

/// `"<prefix>events_per_s":..,"<prefix>mb_per_s":..,"<prefix>lost":..,` or nulls and an error.
std::string json_side(const char* prefix, const throughput_side& r, const run_spec& spec) {
  if (!r.outcome) {
    return json_failed_side(prefix, {"events_per_s", "mb_per_s", "lost"}, r.error);
  }
  const auto& o = *r.outcome;
  const double eps = o.events_per_s();
  char text[512];
  std::snprintf(text, sizeof text,
                "\"%sevents_per_s\":%.0f,\"%smb_per_s\":%.2f,\"%slost\":%llu,\"%sseconds\":%.6f,"
                "\"%ssend_seconds\":%.6f,\"%sflush_seconds\":%.6f,",
                prefix, eps, prefix, eps * static_cast<double>(spec.size) / 1e6, prefix,
                static_cast<unsigned long long>(spec.count - o.received), prefix, o.seconds, prefix,
                o.send_seconds, prefix, o.flush_seconds);
  return text;
}

// --- latency output

double to_us(std::int64_t ns) noexcept { return static_cast<double>(ns) / 1e3; }

/// `"<prefix><kind>p50_us":..,...,"<prefix><kind>mean_us":..,`, all null without `s`.
std::string json_summary(const char* prefix, const char* kind, const latency_summary* s) {
  const latency_summary none;
  const auto& v = s != nullptr ? *s : none;
  const std::pair<const char*, std::int64_t> fields[] = {
      {"p50_us", v.p50}, {"p99_us", v.p99}, {"p999_us", v.p999}, {"max_us", v.max}, {"mean_us", v.mean}};
  std::string out;
  for (const auto& [name, ns] : fields) {
    char text[32] = "null";
    if (s != nullptr) std::snprintf(text, sizeof text, "%.2f", to_us(ns));
    out += "\"" + std::string(prefix) + kind + name + "\":" + text + ",";
  }
  return out;
}

/// One-way and round-trip fields, or nulls and an error. --mode request has no
/// one-way figure: its p50_us... are the round trip, as its rtt_ fields.
std::string json_side(const char* prefix, const latency_side& r) {
  if (!r.outcome) {
    return json_failed_side(prefix,
                            {"p50_us", "p99_us", "p999_us", "max_us", "mean_us", "rtt_p50_us", "rtt_p99_us",
                             "rtt_p999_us", "rtt_max_us", "rtt_mean_us"},
                            r.error);
  }
  const auto& one_way = r.outcome->one_way;
  return json_summary(prefix, "", one_way ? &*one_way : &r.outcome->round_trip) +
         json_summary(prefix, "rtt_", &r.outcome->round_trip);
}

}  // namespace

void print_details(const char* what, std::size_t size, const char* transport, const std::string& error,
                   const std::string& text) {
  if (!error.empty()) {
    std::fprintf(stderr, "[%s %s %zu B] failed: %s\n", what, transport, size, error.c_str());
  } else {
    std::fprintf(stderr, "[%s %s %zu B] %s\n", what, transport, size, text.c_str());
  }
}

void print_throughput_header(const command_options& o) {
  std::printf("# throughput, meshbus mode %s, handler threads %u: publisher and subscriber in two processes over "
              "TCP loopback\n",
              to_string(o.mode), o.handler_threads);
  if (o.mode == run_mode::typed) {
    std::printf(
        "# typed: meshbus publish(event) encodes and subscribe<T>() decodes a MessagePack event of the "
        "size (reliable); raw: plain bytes of the size\n");
  }
  std::printf("# raw = ZeroMQ PUB/SUB, XPUB_NODROP + blocking send, one message per event\n");
  std::printf("%8s %10s %13s %9s %9s %13s %12s %12s %6s\n", "size", "count", "raw ev/s", "raw MB/s",
              "raw lost", "meshbus ev/s", "meshbus MB/s", "meshbus lost", "ratio");
  std::fflush(stdout);
}

void print_throughput_row(const command_options& o, const run_spec& spec, const throughput_side& raw,
                          const throughput_side& mesh) {
  const bool both = raw.outcome && mesh.outcome;
  const double mesh_eps = mesh.outcome ? mesh.outcome->events_per_s() : 0.0;
  const double raw_eps = raw.outcome ? raw.outcome->events_per_s() : 0.0;
  const bool typed = spec.mode == run_mode::typed;
  if (o.json) {
    const auto requested =
        typed ? "\"requested_size\":" + std::to_string(spec.requested_size) + "," : std::string();
    std::printf("{\"size\":%zu,%s\"count\":%llu,\"mode\":\"%s\",\"handler_threads\":%u,%s%s\"ratio\":%s}\n",
                spec.size, requested.c_str(), static_cast<unsigned long long>(spec.count),
                to_string(spec.mode), spec.handler_threads, json_side("", mesh, spec).c_str(),
                json_side("baseline_", raw, spec).c_str(), json_ratio(mesh_eps, raw_eps, both).c_str());
  } else {
    auto cells = [&](const throughput_side& r, std::string& eps, std::string& mbs, std::string& lost) {
      if (!r.outcome) {
        eps = mbs = lost = "failed";
        return;
      }
      const double e = r.outcome->events_per_s();
      eps = with_commas(e);
      char text[32];
      std::snprintf(text, sizeof text, "%.1f", e * static_cast<double>(spec.size) / 1e6);
      mbs = text;
      lost = with_commas(static_cast<double>(spec.count - r.outcome->received));
    };
    std::string raw_eps_text, raw_mbs, raw_lost, mesh_eps_text, mesh_mbs, mesh_lost;
    cells(raw, raw_eps_text, raw_mbs, raw_lost);
    cells(mesh, mesh_eps_text, mesh_mbs, mesh_lost);
    char ratio_text[32] = "-";
    if (both && raw_eps > 0) std::snprintf(ratio_text, sizeof ratio_text, "%.2f", mesh_eps / raw_eps);
    std::printf("%8zu %10s %13s %9s %9s %13s %12s %12s %6s\n", spec.size,
                with_commas(static_cast<double>(spec.count)).c_str(), raw_eps_text.c_str(), raw_mbs.c_str(),
                raw_lost.c_str(), mesh_eps_text.c_str(), mesh_mbs.c_str(), mesh_lost.c_str(), ratio_text);
    if (typed && spec.size != spec.requested_size) {
      std::printf(
          "#   no typed event encodes to %zu bytes (the MessagePack string header grows there): %zu is the "
          "nearest\n",
          spec.requested_size, spec.size);
    }
    for (const auto* r : {&raw, &mesh}) {
      if (!r->outcome) std::printf("#   %s run failed: %s\n", r == &raw ? "raw" : "meshbus", r->error.c_str());
    }
  }
  std::fflush(stdout);
}

std::string describe(const throughput_outcome& o) {
  char text[160];
  std::snprintf(text, sizeof text, "end-to-end %.3f s, send loop %.3f s, flush %.3f s, first event after %.3f ms",
                o.seconds, o.send_seconds, o.flush_seconds, o.first_seconds * 1e3);
  return o.details.empty() ? text : text + ("; " + o.details);
}

void print_latency_header(const command_options& o) {
  if (o.mode == run_mode::request) {
    std::printf(
        "# latency, meshbus request/reply, handler threads %u: one request at a time, requester and "
        "replier in two processes over TCP loopback\n",
        o.handler_threads);
    std::printf(
        "# raw = ZeroMQ DEALER -> ROUTER sending each request back; meshbus = %s(\"%.*s\")%s -> "
        "serve(\"%.*s\") returning a copy\n",
        o.api == request_api::future ? "request" : "request_async", static_cast<int>(echo_service.size()),
        echo_service.data(), o.api == request_api::future ? ".get()" : ", the completion sending the next",
        static_cast<int>(echo_service.size()), echo_service.data());
    std::printf(
        "# microseconds; round trip only (the replier takes no times); ratio = meshbus p50 / raw p50\n");
  } else {
    std::printf(
        "# latency, meshbus mode %s, handler threads %u: one event at a time, pinger and echoer in two "
        "processes over TCP loopback\n",
        to_string(o.mode), o.handler_threads);
    std::printf(
        "# microseconds; one-way = echoer's receipt - embedded send time; ratio = meshbus p50 / raw p50\n");
  }
  std::printf("%8s %8s %-10s %8s %8s %10s %8s %8s %8s %10s %8s %6s\n", "size", "count", "", "raw p50", "raw p99",
              "raw p99.9", "raw max", "mesh p50", "mesh p99", "mesh p99.9", "mesh max", "ratio");
  std::fflush(stdout);
}

void print_latency_row(const command_options& o, const run_spec& spec, const latency_side& raw,
                       const latency_side& mesh) {
  const bool both = raw.outcome && mesh.outcome;
  // The one-way or the round-trip summary of a side, if it has one.
  auto pick = [](const latency_side& r, bool round_trip) -> const latency_summary* {
    if (!r.outcome) return nullptr;
    if (round_trip) return &r.outcome->round_trip;
    return r.outcome->one_way ? &*r.outcome->one_way : nullptr;
  };
  auto ratio_of = [&](bool round_trip) -> std::optional<double> {
    const auto* m = pick(mesh, round_trip);
    const auto* b = pick(raw, round_trip);
    if (m == nullptr || b == nullptr || b->p50 <= 0) return std::nullopt;
    return static_cast<double>(m->p50) / static_cast<double>(b->p50);
  };
  if (o.json) {
    const auto ratio = [&](bool round_trip) {
      round_trip = round_trip || spec.mode == run_mode::request;  // its only figure
      const auto* m = pick(mesh, round_trip);
      const auto* b = pick(raw, round_trip);
      if (!both || m == nullptr || b == nullptr) return std::string("null");
      return json_ratio(static_cast<double>(m->p50), static_cast<double>(b->p50), true);
    };
    std::printf(
        "{\"size\":%zu,\"count\":%llu,\"warmup\":%llu,\"mode\":\"%s\",%s\"handler_threads\":%u,%s%s"
        "\"ratio_p50\":%s,\"rtt_ratio_p50\":%s}\n",
        spec.size, static_cast<unsigned long long>(spec.count), static_cast<unsigned long long>(spec.warmup),
        to_string(spec.mode),
        spec.mode != run_mode::request         ? ""
        : spec.api == request_api::future ? "\"request_api\":\"future\","
                                          : "\"request_api\":\"callback\",",
        spec.handler_threads, json_side("", mesh).c_str(),
        json_side("baseline_", raw).c_str(), ratio(false).c_str(), ratio(true).c_str());
  } else {
    // --mode request has no one-way figure: its row is left out.
    const bool one_way_row = spec.mode != run_mode::request;
    for (const bool round_trip : {false, true}) {
      if (!round_trip && !one_way_row) continue;
      auto cells = [&](const latency_side& r) {
        if (!r.outcome) return std::string("  failed   failed     failed   failed");
        const auto* s = pick(r, round_trip);
        if (s == nullptr) return std::string("       -        -          -        -");
        char text[64];
        std::snprintf(text, sizeof text, "%8.1f %8.1f %10.1f %8.1f", to_us(s->p50), to_us(s->p99),
                      to_us(s->p999), to_us(s->max));
        return std::string(text);
      };
      char ratio_text[32] = "-";
      if (const auto ratio = ratio_of(round_trip))
        std::snprintf(ratio_text, sizeof ratio_text, "%.2f", *ratio);
      std::printf("%8zu %8s %-10s %s %s %6s\n", spec.size, with_commas(static_cast<double>(spec.count)).c_str(),
                  round_trip ? "round trip" : "one-way", cells(raw).c_str(), cells(mesh).c_str(), ratio_text);
    }
    for (const auto* r : {&raw, &mesh}) {
      if (!r->outcome) std::printf("#   %s run failed: %s\n", r == &raw ? "raw" : "meshbus", r->error.c_str());
    }
  }
  std::fflush(stdout);
}

}  // namespace meshbus_perf

namespace meshbus_perf {

// --- eventstore output

void print_eventstore_header(const eventstore_spec& spec, unsigned rounds) {
  std::printf(
      "# eventstore: %u rounds of the runs below, alternating; each run a Node of its own with a fresh data "
      "directory under /tmp, durability always; every event's payload %zu B\n",
      rounds, spec.size);
  std::printf(
      "# log = the durable log alone: publish() %s events, then flush() (throughput --mode durable's "
      "publisher, no subscriber)\n",
      with_commas(static_cast<double>(spec.log_count)).c_str());
  std::printf(
      "# k=0: no replication; k=1: EventStoreOptions::replicas = 1, the replica in a second process over "
      "loopback, every stream claimed by a warm-up command before the timed runs\n");
  std::fflush(stdout);
}

void print_eventstore_round(const eventstore_spec& spec, unsigned round, const eventstore_round& r) {
  std::printf(
      "{\"mode\":\"eventstore\",\"size\":%zu,\"round\":%u,\"log_events_per_s\":%.0f,"
      "\"command_events_per_s\":%.0f,\"append_async_events_per_s\":%.0f,\"load_us\":%.1f,"
      "\"snapshot_load_us\":%.1f,\"command_events_per_commit\":%.1f,"
      "\"append_async_events_per_commit\":%.1f,\"command_k1_events_per_s\":%.0f,"
      "\"append_async_k1_events_per_s\":%.0f,\"command_k1_events_per_commit\":%.1f,"
      "\"append_async_k1_events_per_commit\":%.1f}\n",
      spec.size, round, r.log_events_per_s, r.command_events_per_s, r.append_events_per_s, r.full_load_us,
      r.snapshot_load_us, r.command_events_per_commit, r.append_events_per_commit, r.command_k1_events_per_s,
      r.append_k1_events_per_s, r.command_k1_events_per_commit, r.append_k1_events_per_commit);
  std::fflush(stdout);
}

void print_eventstore_summary(const eventstore_spec& spec, bool json, std::uint64_t snapshot_version,
                              const std::vector<eventstore_round>& rounds) {
  if (rounds.empty()) return;
  // Per round: each rate, its ratio to the log's events/s of the same round, and k=1's
  // ratio to k=0 of the same round.
  std::vector<double> log, commands, appends, commands_k1, appends_k1, full_us, snapshot_us, full_per_s,
      snapshot_per_s;
  std::vector<double> vs_commands, vs_appends, vs_commands_k1, vs_appends_k1, vs_full, vs_snapshot, speedup;
  std::vector<double> commands_kept, appends_kept;
  std::vector<double> command_batches, append_batches, command_k1_batches, append_k1_batches;
  for (const auto& r : rounds) {
    log.push_back(r.log_events_per_s);
    commands.push_back(r.command_events_per_s);
    appends.push_back(r.append_events_per_s);
    commands_k1.push_back(r.command_k1_events_per_s);
    appends_k1.push_back(r.append_k1_events_per_s);
    full_us.push_back(r.full_load_us);
    snapshot_us.push_back(r.snapshot_load_us);
    full_per_s.push_back(1e6 / r.full_load_us);
    snapshot_per_s.push_back(1e6 / r.snapshot_load_us);
    vs_commands.push_back(r.command_events_per_s / r.log_events_per_s);
    vs_appends.push_back(r.append_events_per_s / r.log_events_per_s);
    vs_commands_k1.push_back(r.command_k1_events_per_s / r.log_events_per_s);
    vs_appends_k1.push_back(r.append_k1_events_per_s / r.log_events_per_s);
    vs_full.push_back(full_per_s.back() / r.log_events_per_s);
    vs_snapshot.push_back(snapshot_per_s.back() / r.log_events_per_s);
    speedup.push_back(r.full_load_us / r.snapshot_load_us);
    commands_kept.push_back(r.command_k1_events_per_s / r.command_events_per_s);
    appends_kept.push_back(r.append_k1_events_per_s / r.append_events_per_s);
    command_batches.push_back(r.command_events_per_commit);
    append_batches.push_back(r.append_events_per_commit);
    command_k1_batches.push_back(r.command_k1_events_per_commit);
    append_k1_batches.push_back(r.append_k1_events_per_commit);
  }
  const auto events_after = spec.load_events - snapshot_version;
  if (json) {
    auto ratio_fields = [](const char* name, const std::vector<double>& v) {
      const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
      char text[160];
      std::snprintf(text, sizeof text, "\"median_%s\":%.6g,\"min_%s\":%.6g,\"max_%s\":%.6g", name, median(v),
                    name, *lo, name, *hi);
      return std::string(text);
    };
    std::printf(
        "{\"mode\":\"eventstore\",\"size\":%zu,\"rounds\":%zu,\"log_count\":%llu,\"aggregates\":%llu,"
        "\"threads\":%u,\"appends\":%llu,\"load_events\":%llu,\"snapshot_every\":%llu,"
        "\"snapshot_version\":%llu,\"loads\":%llu,\"median_log_events_per_s\":%.0f,"
        "\"median_command_events_per_s\":%.0f,\"median_append_async_events_per_s\":%.0f,"
        "\"median_command_k1_events_per_s\":%.0f,\"median_append_async_k1_events_per_s\":%.0f,"
        "\"median_command_events_per_commit\":%.1f,\"median_append_async_events_per_commit\":%.1f,"
        "\"median_command_k1_events_per_commit\":%.1f,\"median_append_async_k1_events_per_commit\":%.1f,"
        "\"median_load_us\":%.1f,\"median_snapshot_load_us\":%.1f,%s,%s,%s,%s,%s,%s,%s,%s,%s}\n",
        spec.size, rounds.size(), static_cast<unsigned long long>(spec.log_count),
        static_cast<unsigned long long>(spec.aggregates), spec.threads,
        static_cast<unsigned long long>(spec.appends), static_cast<unsigned long long>(spec.load_events),
        static_cast<unsigned long long>(spec.snapshot_every),
        static_cast<unsigned long long>(snapshot_version), static_cast<unsigned long long>(spec.loads),
        median(log), median(commands), median(appends), median(commands_k1), median(appends_k1),
        median(command_batches), median(append_batches), median(command_k1_batches),
        median(append_k1_batches), median(full_us), median(snapshot_us),
        ratio_fields("ratio_command", vs_commands).c_str(),
        ratio_fields("ratio_append_async", vs_appends).c_str(),
        ratio_fields("ratio_command_k1", vs_commands_k1).c_str(),
        ratio_fields("ratio_append_async_k1", vs_appends_k1).c_str(),
        ratio_fields("ratio_command_k1_to_k0", commands_kept).c_str(),
        ratio_fields("ratio_append_async_k1_to_k0", appends_kept).c_str(),
        ratio_fields("ratio_load", vs_full).c_str(), ratio_fields("ratio_snapshot_load", vs_snapshot).c_str(),
        ratio_fields("snapshot_speedup", speedup).c_str());
    std::fflush(stdout);
    return;
  }
  const auto n = [](std::uint64_t v) { return with_commas(static_cast<double>(v)); };
  const auto execute_row = "Aggregate::execute(), " + n(spec.aggregates) + " aggregates, " +
                           std::to_string(spec.threads) + " threads";
  const auto append_row = "EventStore::append_async(any()), " + n(spec.appends) + " from 1 thread";
  const std::string rows[] = {
      "durable log: publish() + flush()",
      execute_row + ", k=0",
      execute_row + ", k=1",
      append_row + ", k=0",
      append_row + ", k=1",
      "Aggregate::load(), " + n(spec.load_events) + " events, no snapshot",
      "Aggregate::load(), snapshot at " + n(snapshot_version) + " + " + n(events_after) + " events",
  };
  std::printf("%-62s %12s %-8s %9s %9s  %s\n", "", "median", "", "ev/commit", "us/load",
              "ratio to the log's events/s");
  auto row = [&](const std::string& what, double rate, const char* unit, const std::string& per_commit,
                 const std::string& us, const std::string& ratio) {
    std::printf("%-62s %12s %-8s %9s %9s  %s\n", what.c_str(), with_commas(rate).c_str(), unit,
                per_commit.c_str(), us.c_str(), ratio.c_str());
  };
  auto fixed = [](double v) {
    char text[32];
    std::snprintf(text, sizeof text, "%.1f", v);
    return std::string(text);
  };
  row(rows[0], median(log), "events/s", "", "", "(baseline)");
  row(rows[1], median(commands), "events/s", fixed(median(command_batches)), "",
      median_and_range(vs_commands));
  row(rows[2], median(commands_k1), "events/s", fixed(median(command_k1_batches)), "",
      median_and_range(vs_commands_k1));
  row(rows[3], median(appends), "events/s", fixed(median(append_batches)), "", median_and_range(vs_appends));
  row(rows[4], median(appends_k1), "events/s", fixed(median(append_k1_batches)), "",
      median_and_range(vs_appends_k1));
  row(rows[5], median(full_per_s), "loads/s", "", fixed(median(full_us)), median_and_range(vs_full));
  row(rows[6], median(snapshot_per_s), "loads/s", "", fixed(median(snapshot_us)),
      median_and_range(vs_snapshot));
  std::printf(
      "# medians of %zu rounds (a load: the median of %llu timed loads in its round); ev/commit: events "
      "per group commit of the event store; ratio: per round, the rate / the log's events/s, median "
      "(min-max)\n",
      rounds.size(), static_cast<unsigned long long>(spec.loads));
  std::printf("# k=1 / k=0 (per round, median (min-max)): execute %s, append_async %s\n",
              median_and_range(commands_kept).c_str(), median_and_range(appends_kept).c_str());
  std::printf(
      "# the snapshot makes a load %s times as fast (per round: us without / us with, median "
      "(min-max))\n",
      median_and_range(speedup).c_str());
  std::fflush(stdout);
}

}  // namespace meshbus_perf
