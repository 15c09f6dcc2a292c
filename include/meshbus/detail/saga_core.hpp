/// @file
/// The State-independent core of meshbus::Saga, compiled once into the library
/// (lib/toolkit/saga_core.cpp): instances by correlation id, their deadlines and
/// timer, steps with roll-back, compensations, finished records and counters.
/// Saga<State> adds only what knows State: the instance type with its state, and
/// the typed steps. Internal to <meshbus/saga.hpp>; include that.
///
/// Locking: the core's lock guards the tables (running and finished instances,
/// deadlines, counters) and is held only briefly, never while a step runs. Each
/// instance has a lock of its own, held for the whole of each of its steps, so the
/// steps of one instance run one at a time and those of different instances may
/// run in parallel. Order: an instance's lock before the core's, never the reverse.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "meshbus/event.hpp"
#include "meshbus/node.hpp"
#include "meshbus/saga_options.hpp"

namespace meshbus::detail {

class saga_core;
class saga_step;

/// A step of an instance: an event handler, a command continuation, a
/// compensation or the time-out hook, seen through the State-independent context.
using saga_step_fn = std::function<void(saga_step&)>;

/// One instance of a saga, without its State: Saga<State> derives from it. Every
/// field is guarded by `mu` except `deadline`, which the core's lock guards.
class saga_instance {
 public:
  virtual ~saga_instance() = default;

  /// Keeps a copy of the state before a step, to put back if the step throws.
  virtual void save_state() = 0;
  virtual void restore_state() = 0;
  virtual void drop_saved_state() noexcept = 0;

  std::mutex mu;  ///< held while one of its steps runs
  std::string correlation_id;
  std::vector<std::pair<std::string, saga_step_fn>> compensations;
  std::vector<std::string> notes;
  std::chrono::system_clock::time_point started_at{};
  std::chrono::steady_clock::time_point deadline{};  ///< guarded by the core's lock
  /// Set, with both locks held, once it has left the running table: finished, or
  /// dropped because the step that created it threw (`record` then stays empty).
  bool gone = false;
  struct final_record {
    SagaStatus status = SagaStatus::running;
    std::string reason;
    std::vector<std::string> compensations_run;
    std::chrono::system_clock::time_point finished_at{};
  };
  std::optional<final_record> record;
};

/// What a step may do to its instance (SagaContext<State> wraps it).
class saga_step {
 public:
  saga_step(saga_core& core, saga_instance& instance, const Event* event) noexcept
      : core_(core), instance_(instance), event_(event) {}

  saga_core& core() const noexcept { return core_; }
  saga_instance& instance() const noexcept { return instance_; }
  const Event* event() const noexcept { return event_; }

  void compensate(std::string name, saga_step_fn action) {
    instance_.compensations.emplace_back(std::move(name), std::move(action));
  }
  void complete() noexcept { finish_ = SagaStatus::completed; }
  void fail(std::string reason) {
    finish_ = SagaStatus::compensated;
    reason_ = std::move(reason);
  }
  void set_timeout(std::chrono::milliseconds from_now);

  const std::optional<SagaStatus>& finish() const noexcept { return finish_; }
  std::string& reason() noexcept { return reason_; }

 private:
  saga_core& core_;
  saga_instance& instance_;
  const Event* event_;
  std::optional<SagaStatus> finish_;
  std::string reason_;
};

/// The shared part of a Saga: subscriptions and request callbacks hold it, so a
/// step that is running when the Saga is destroyed finishes safely (and nothing
/// new starts once it is closed).
class saga_core : public std::enable_shared_from_this<saga_core> {
 public:
  using clock = std::chrono::steady_clock;
  using instance_factory = std::function<std::shared_ptr<saga_instance>()>;

  /// `options` are already checked; `make` creates an instance of the State type.
  saga_core(Node& node, std::string name, SagaOptions options, instance_factory make);

  Node& node() const noexcept { return node_; }
  const std::string& name() const noexcept { return name_; }
  const SagaOptions& options() const noexcept { return options_; }

  /// An event for this saga: `step` runs on the instance of its flow, which a
  /// `starts` event creates when there is none. Throws what the step threw (after
  /// the roll-back), and poison_event beyond max_instances.
  void on_event(const Event& e, bool starts, const saga_step_fn& step);
  /// The result of a command issued by the instance `key`; a step that throws is
  /// rolled back and noted.
  void on_result(const std::string& key, const saga_step_fn& step);
  /// Times out every instance whose deadline is at or before the clock's now;
  /// returns how many ended.
  std::size_t run_timeouts();
  void set_on_timeout(saga_step_fn step);
  /// Moves the deadline of `inst` (whose lock the caller holds) to `at`.
  void set_deadline(saga_instance& inst, clock::time_point at);

  /// Calls `read` with the running or finished instance `key`, under its lock.
  /// False when there is none.
  bool find(const std::string& key, const std::function<void(const saga_instance&)>& read) const;
  SagaStats stats() const;

  /// The timer thread's body: sleeps until the next deadline (or a new earlier one)
  /// and returns once closed.
  void run_timer();
  /// Nothing new starts from here on; the timer thread returns.
  void close();

 private:
  using finished_call = std::function<void()>;

  std::shared_ptr<saga_instance> running_instance(const std::string& key, bool count_late);
  finished_call run_step(saga_instance& inst, const Event* e, const saga_step_fn& step, bool rethrow);
  finished_call finish(saga_instance& inst, SagaStatus status, std::string reason);
  void set_deadline_locked(saga_instance& inst, clock::time_point at);
  void remember_locked(const std::string& key, std::shared_ptr<saga_instance> inst);
  template <class F>
  void count(F&& bump) {
    std::lock_guard lock(mu_);
    bump(stats_);
  }

  Node& node_;
  const std::string name_;
  const SagaOptions options_;
  const instance_factory make_;
  mutable std::mutex mu_;  ///< guards everything below
  std::condition_variable timer_cv_;
  bool closed_ = false;
  std::map<std::string, std::shared_ptr<saga_instance>> running_;
  std::set<std::pair<clock::time_point, std::string>> deadlines_;
  std::map<std::string, std::shared_ptr<saga_instance>> finished_;
  std::deque<std::string> finished_order_;
  saga_step_fn on_timeout_;
  SagaStats stats_;
};

}  // namespace meshbus::detail
