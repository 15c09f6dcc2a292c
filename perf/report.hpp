// What meshbus-perf prints: per size one table row (two for latency: one-way and round
// trip) or one JSON object per line on stdout, and with --verbose each run's details on
// stderr. The formats are what ./run bench and the README show; keep them stable.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

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

void print_latency_header(const command_options& o);
void print_latency_row(const command_options& o, const run_spec& spec, const latency_side& raw,
                       const latency_side& mesh);

}  // namespace meshbus_perf
