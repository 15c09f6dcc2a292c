// What meshbus-perf prints: per size one table row (two for latency: one-way and round
// trip) or one JSON object per line on stdout, and with --verbose each run's details on
// stderr. The formats are what ./run bench and the README show; keep them stable.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "eventstore.hpp"
#include "latency.hpp"
#include "options.hpp"
#include "throughput.hpp"

namespace meshbus_perf {

/// 1234567.8 -> "1,234,568".
std::string with_commas(double value);

/// The median of `values` (0 when there are none).
double median(std::vector<double> values);
/// Per-round ratios as "median (min-max)", e.g. "0.97 (0.78-1.16)": two decimals, more
/// when the smallest needs them for three significant digits ("0.0118 (0.0102-0.0131)").
std::string median_and_range(const std::vector<double>& ratios);

/// --verbose: one run's details, or why it failed, on stderr.
void print_details(const char* what, std::size_t size, const char* transport, const std::string& error,
                   const std::string& text);
/// --verbose text of a throughput run: its times and counters.
std::string describe(const throughput_outcome& o);

void print_throughput_header(const command_options& o);
void print_throughput_row(const command_options& o, const run_spec& spec, const throughput_side& raw,
                          const throughput_side& mesh);

/// One round of `meshbus-perf eventstore`, as measured.
struct eventstore_round {
  double log_events_per_s = 0;      ///< the durable log alone: publish + flush
  double command_events_per_s = 0;  ///< Aggregate::execute() from several threads, k=0
  double append_events_per_s = 0;   ///< EventStore::append_async(any()) from one thread, k=0
  double full_load_us = 0;          ///< median load without a snapshot
  double snapshot_load_us = 0;      ///< median load with one
  double command_events_per_commit = 0;
  double append_events_per_commit = 0;
  double command_k1_events_per_s = 0;  ///< the same commands on a replicated store (replicas = 1)
  double append_k1_events_per_s = 0;   ///< the same appends on it
  double command_k1_events_per_commit = 0;
  double append_k1_events_per_commit = 0;
};

/// The header (table only).
void print_eventstore_header(const eventstore_spec& spec, unsigned rounds);
/// --json: one line per round as it ends.
void print_eventstore_round(const eventstore_spec& spec, unsigned round, const eventstore_round& r);
/// The medians, each rate's ratio to the log's events/s of its round (median, min-max),
/// what replication (k=1) keeps of the k=0 rates and what the snapshot does for a load;
/// `snapshot_version` is where its snapshot is.
void print_eventstore_summary(const eventstore_spec& spec, bool json, std::uint64_t snapshot_version,
                              const std::vector<eventstore_round>& rounds);

void print_latency_header(const command_options& o);
void print_latency_row(const command_options& o, const run_spec& spec, const latency_side& raw,
                       const latency_side& mesh);

}  // namespace meshbus_perf
