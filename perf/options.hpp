// The options of `meshbus-perf throughput` and `meshbus-perf latency`, as parsed by main.cpp.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "harness.hpp"

namespace meshbus_perf {

enum class command_kind : std::uint8_t { throughput, latency };

struct command_options {
  command_kind kind = command_kind::throughput;
  std::vector<std::size_t> sizes;
  std::optional<std::uint64_t> count;
  std::uint64_t warmup = default_latency_warmup;
  run_mode mode = run_mode::reliable;
  unsigned handler_threads = 1;
  request_api api = request_api::future;
  bool json = false;
  bool verbose = false;
  /// --mode durable: rounds of raw, reliable, durable, alternating (medians reported).
  unsigned rounds = 5;

  /// The run for --size `size` (typed: the nearest size a sample encodes to).
  run_spec spec(std::size_t size) const;
};

}  // namespace meshbus_perf
