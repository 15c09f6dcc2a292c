// Fault injection for tests: drops, duplicates, reorders and delays whole messages,
// and can cut a link and restore it. Seeded, so a run can be repeated. No I/O and
// no clock of its own: messages go in with push(now) and come out with pop(now).
//
// Used by the reliability tests to drive the state machines through a lossy
// network, and by zmq_transport on the inbound side of a node when a plan is set
// (MESHBUS_FAULTS; see fault_plan::parse) — on both ends, that is both directions.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <string_view>

namespace meshbus::transport {

using fault_clock = std::chrono::steady_clock;

struct fault_plan {
  double drop = 0.0;       ///< probability a message is lost
  double duplicate = 0.0;  ///< probability it arrives twice
  double reorder = 0.0;    ///< probability it is overtaken by the next message
  double delay = 0.0;      ///< probability it is delayed by up to max_delay
  fault_clock::duration max_delay = std::chrono::milliseconds(20);
  std::uint64_t seed = 1;
  /// The link is cut (everything dropped) from cut_at after start, for cut_for.
  fault_clock::duration cut_at{};
  fault_clock::duration cut_for{};

  bool any() const noexcept {
    return drop > 0 || duplicate > 0 || reorder > 0 || delay > 0 || cut_for.count() > 0;
  }
  /// "drop=0.05,dup=0.01,reorder=0.1,delay=0.02,max_delay_ms=20,seed=7,cut_at_ms=500,
  /// cut_for_ms=2000"; throws meshbus::error(configuration) naming the bad item.
  static fault_plan parse(std::string_view spec);
};

struct fault_counters {
  std::uint64_t passed = 0, dropped = 0, duplicated = 0, reordered = 0, delayed = 0;
};

template <class Message>
class fault_injector {
 public:
  using copier = std::function<Message(const Message&)>;

  fault_injector(fault_plan plan, copier copy, fault_clock::time_point start = fault_clock::now())
      : plan_(plan), copy_(std::move(copy)), rng_(plan.seed), start_(start) {}

  /// While cut, every message is dropped.
  void cut(bool down) noexcept { cut_ = down; }
  bool is_cut() const noexcept { return cut_; }

  void push(Message&& m, fault_clock::time_point now) {
    const bool scheduled_cut =
        plan_.cut_for.count() > 0 && now >= start_ + plan_.cut_at && now < start_ + plan_.cut_at + plan_.cut_for;
    if (cut_ || scheduled_cut || chance(plan_.drop)) {
      ++counters_.dropped;
      return;
    }
    auto at = now;
    if (chance(plan_.delay)) {
      ++counters_.delayed;
      std::uniform_int_distribution<std::int64_t> d(0, plan_.max_delay.count());
      at += fault_clock::duration(d(rng_));
    }
    if (chance(plan_.duplicate)) {
      ++counters_.duplicated;
      enqueue(copy_(m), at);
    }
    // A reordered message waits for the next one to go first (or 1 ms, whichever comes first).
    if (held_) {
      enqueue(std::move(m), at);
      enqueue(std::move(*held_), at);
      held_.reset();
      return;
    }
    if (chance(plan_.reorder)) {
      ++counters_.reordered;
      held_ = std::move(m);
      held_at_ = now;
      return;
    }
    enqueue(std::move(m), at);
  }

  /// The next message due at `now`, if any.
  bool pop(Message& out, fault_clock::time_point now) {
    if (held_ && now - held_at_ >= std::chrono::milliseconds(1)) {
      enqueue(std::move(*held_), now);
      held_.reset();
    }
    auto it = queue_.begin();
    if (it == queue_.end() || it->first.first > now) return false;
    out = std::move(it->second);
    queue_.erase(it);
    ++counters_.passed;
    return true;
  }

  /// When pop() may next return something (time_point::max() when nothing waits).
  fault_clock::time_point next_release() const {
    auto next = queue_.empty() ? fault_clock::time_point::max() : queue_.begin()->first.first;
    if (held_) next = std::min(next, held_at_ + std::chrono::milliseconds(1));
    return next;
  }

  bool empty() const noexcept { return queue_.empty() && !held_; }
  const fault_counters& counters() const noexcept { return counters_; }

 private:
  bool chance(double p) { return p > 0 && std::uniform_real_distribution<double>(0, 1)(rng_) < p; }
  void enqueue(Message&& m, fault_clock::time_point at) { queue_.emplace(std::make_pair(at, order_++), std::move(m)); }

  fault_plan plan_;
  copier copy_;
  std::mt19937_64 rng_;
  bool cut_ = false;
  fault_clock::time_point start_;
  std::map<std::pair<fault_clock::time_point, std::uint64_t>, Message> queue_;
  std::optional<Message> held_;
  fault_clock::time_point held_at_{};
  std::uint64_t order_ = 0;
  fault_counters counters_;
};

}  // namespace meshbus::transport
