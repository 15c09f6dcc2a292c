// Latency histograms that handler threads record into and any thread reads
// (NodeReport::delivery_latency, handler_time). The buckets are those of
// meshbus::LatencyHistogram; a record is a few relaxed atomic adds, made once per
// batch (weighted by its events), never per event.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>

#include "meshbus/report.hpp"

namespace meshbus::detail {

class atomic_histogram {
 public:
  /// `events` events that took `ns` each.
  void record(std::uint64_t ns, std::uint64_t events) noexcept {
    if (events == 0) return;
    // A skewed or replayed timestamp must not wrap the sum (a batch has < 2^20 events).
    ns = std::min<std::uint64_t>(ns, std::uint64_t{3600} * 1'000'000'000);
    const auto& b = LatencyHistogram::bounds_ns;
    const auto at = static_cast<std::size_t>(std::lower_bound(b.begin(), b.end(), ns) - b.begin());
    counts_[at].fetch_add(events, std::memory_order_relaxed);
    count_.fetch_add(events, std::memory_order_relaxed);
    sum_ns_.fetch_add(ns * events, std::memory_order_relaxed);
  }

  LatencyHistogram snapshot() const noexcept {
    LatencyHistogram h;
    for (std::size_t i = 0; i < counts_.size(); ++i) h.counts[i] = counts_[i].load(std::memory_order_relaxed);
    h.count = 0;
    for (auto c : h.counts) h.count += c;  // consistent with the buckets, whatever raced
    h.sum_ns = sum_ns_.load(std::memory_order_relaxed);
    return h;
  }

 private:
  std::array<std::atomic<std::uint64_t>, LatencyHistogram::bounds_ns.size() + 1> counts_{};
  std::atomic<std::uint64_t> count_{0};
  std::atomic<std::uint64_t> sum_ns_{0};
};

}  // namespace meshbus::detail
