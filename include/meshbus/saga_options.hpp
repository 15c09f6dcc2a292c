/// @file
/// The options and counters of a meshbus::Saga (<meshbus/saga.hpp>), and where an
/// instance of one stands.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "meshbus/node.hpp"

namespace meshbus {

/// Where an instance of a saga stands. Everything but `running` is final.
enum class SagaStatus : std::uint8_t {
  running,
  completed,    ///< complete() was called
  compensated,  ///< fail() was called; its compensations ran, newest first
  timed_out,    ///< its time ran out; on_timeout ran, then its compensations
};

inline const char* to_string(SagaStatus s) noexcept {
  switch (s) {
    case SagaStatus::running: return "running";
    case SagaStatus::completed: return "completed";
    case SagaStatus::compensated: return "compensated";
    case SagaStatus::timed_out: return "timed_out";
  }
  return "unknown";
}

struct SagaOptions {
  /// How long an instance may run, from its start, before it times out. A step can
  /// move its own deadline (SagaContext::set_timeout).
  std::chrono::milliseconds timeout{30000};
  /// Running instances at most. Overflow policy: a starting event beyond it is
  /// refused — dead-lettered with the reason (the subscription's dead-letter store)
  /// and counted in SagaStats::refused — never dropped silently.
  std::size_t max_instances = 10000;
  /// Finished instances remembered, for find() and to recognise late events of a
  /// finished flow (counted as late, not started again). Overflow policy: the
  /// oldest is forgotten first, counted in SagaStats::forgotten.
  std::size_t finished_capacity = 10000;
  /// How the saga subscribes to its events. Default: acknowledged, so an event whose
  /// step throws is retried and then dead-lettered. `group` must stay empty: an
  /// instance's state lives in one process, so all events of a flow must reach it.
  /// On a durable saga (see `in_memory`) each event type's subscription is durable,
  /// named "$saga/<saga name>/<event type name>" (`durable_name`, if set, replaces
  /// "$saga/<saga name>"), so it resumes where it stood after a restart; `delivery`
  /// must then not be best_effort.
  SubscribeOptions subscribe = [] {
    SubscribeOptions o;
    o.delivery = Delivery::acknowledged;
    return o;
  }();
  /// Runs time-outs on a thread of the saga's own. false: nothing times out until
  /// the caller calls Saga::run_timeouts().
  bool timer_thread = true;
  /// The clock deadlines are measured on; default std::chrono::steady_clock. A clock
  /// of your own (tests drive one by hand) needs timer_thread = false.
  std::function<std::chrono::steady_clock::time_point()> clock;
  /// On a node with a durable log (Options::data_dir) a saga keeps its instances there
  /// and takes them up again after a restart (<meshbus/saga.hpp>, "Durable sagas"):
  /// its State must then be MessagePack-able (MSGPACK_DEFINE_MAP). true: instances
  /// live in this process's memory only, even on a durable node. Without a data
  /// directory they always do.
  bool in_memory = false;
  /// Called, outside the instance's lock, with the final record of every instance
  /// that finishes. Runs on the thread of the step that finished it.
  std::function<void(const std::string& correlation_id, SagaStatus status, const std::string& reason)> on_finished;
};

/// Counters of one Saga.
struct SagaStats {
  std::uint64_t started = 0;
  std::uint64_t completed = 0;
  std::uint64_t compensated = 0;
  std::uint64_t timed_out = 0;
  std::uint64_t refused = 0;          ///< starting events beyond max_instances (dead-lettered)
  std::uint64_t steps = 0;            ///< steps that ran to the end
  std::uint64_t step_errors = 0;      ///< steps that threw (rolled back)
  std::uint64_t unknown_flow = 0;     ///< non-starting events of no running instance (ignored)
  std::uint64_t late = 0;             ///< events and command results of finished instances (ignored)
  std::uint64_t forgotten = 0;        ///< finished records dropped beyond finished_capacity
  std::uint64_t running = 0;          ///< instances running now
  // Durable sagas only:
  std::uint64_t restored = 0;         ///< running instances taken up from the durable log at start()
  /// events an instance had handled already, delivered again after a crash (ignored)
  std::uint64_t redelivered = 0;
  std::uint64_t store_failures = 0;   ///< steps rolled back because their record could not be written
};

}  // namespace meshbus
