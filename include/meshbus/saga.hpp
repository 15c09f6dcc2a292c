/// @file
/// Sagas (process managers): long-running flows that react to typed events, issue
/// commands, keep state per correlation id, time out and compensate.
///
///     struct Order { std::string id; };
///     using Flow = meshbus::Saga<Order>::Context;
///
///     meshbus::Saga<Order> saga(node, "order-fulfilment");
///     saga.start_on<OrderPlaced>([](Flow& flow, const OrderPlaced& placed) {
///       flow.state().id = placed.order_id;
///       flow.execute<ReserveStock, StockReserved>(            // request/reply
///           ReserveStock{placed.order_id, placed.items},
///           [](Flow& flow, meshbus::CommandResult<StockReserved> reserved) {
///             if (!reserved.ok()) return flow.fail("no stock: " + reserved.message());
///             flow.compensate("release stock", [](Flow& flow) {
///               (void)flow.publish(ReleaseStock{flow.state().id});
///             });
///             (void)flow.publish(ChargePayment{flow.state().id});  // an event command
///           });
///     });
///     saga.on<PaymentCaptured>([](Flow& flow, const PaymentCaptured&) { flow.complete(); });
///     saga.on<PaymentDeclined>([](Flow& flow, const PaymentDeclined& d) { flow.fail(d.reason); });
///     saga.start();
///
/// An instance is keyed by the correlation id of the events it handles: the event
/// that starts it (its correlation id, or its event id when it has none) names the
/// flow, and everything the instance publishes or executes carries that correlation
/// id, so the other services' answers find their way back by themselves (events
/// published from their handlers inherit it; see PublishOptions).
///
/// Threading: every step of one Saga (an event handler, a command result, a
/// compensation, a time-out) runs under the saga's lock, one at a time: state needs
/// no locking of its own. Steps run on the Node's handler threads (time-outs on the
/// saga's timer thread); they must not block for long (use execute() with a
/// continuation rather than waiting for a future) and must not call the Saga's own
/// members other than through the context.
///
/// A step that throws leaves the instance exactly as it was (state and registered
/// compensations are restored; what it already published stays published): for an
/// event the saga's subscription is `acknowledged` by default, so the event is
/// retried and finally dead-lettered, never lost. Instances live in this process's
/// memory: a flow whose process dies is gone with it (its events stay replayable
/// from the publishers' history with StartFrom::earliest while they hold them).
///
/// This header is built only on Node's public API and <meshbus/typed.hpp>.
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "meshbus/typed.hpp"

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
  /// Called, outside the saga's lock, with the final record of every instance that
  /// finishes. Runs on the thread of the step that finished it.
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
};

/// One instance, as find() shows it.
template <class State>
struct SagaRecord {
  std::string correlation_id;
  SagaStatus status = SagaStatus::running;
  std::string reason;  ///< why it failed or timed out
  State state{};
  std::vector<std::string> compensations_run;  ///< names, in the order they ran
  std::vector<std::string> notes;              ///< steps and compensations that threw, and why
  std::chrono::system_clock::time_point started_at{};
  std::chrono::system_clock::time_point finished_at{};
};

/// The outcome of a command issued with SagaContext::execute(): the result, or why
/// there is none (a meshbus::error: no_service, timeout, remote_failure,
/// request_rejected, peer_gone, bad_reply, stopped).
template <class R>
class CommandResult {
 public:
  explicit CommandResult(R value) : value_(std::move(value)) {}
  explicit CommandResult(error failure) : failure_(std::move(failure)) {}

  bool ok() const noexcept { return value_.has_value(); }
  explicit operator bool() const noexcept { return ok(); }
  /// The result; throws the failure when there is none.
  const R& value() const {
    if (!value_) throw *failure_;
    return *value_;
  }
  const R* operator->() const { return &value(); }
  /// errc of the failure (only when !ok()).
  errc code() const noexcept { return failure_ ? failure_->code_value() : errc{}; }
  /// What went wrong, or "" when ok().
  std::string message() const { return failure_ ? failure_->what() : std::string(); }

 private:
  std::optional<R> value_;
  std::optional<error> failure_;
};

template <class State>
class Saga;

namespace detail {
template <class State>
class saga_core;
}

/// What a step of a saga instance sees: its state, the event being handled, and the
/// ways to act on behalf of the flow. Valid only during the step.
template <class State>
class SagaContext {
 public:
  using Step = std::function<void(SagaContext&)>;

  const std::string& correlation_id() const noexcept { return instance_.correlation_id; }
  State& state() noexcept { return instance_.state; }
  const State& state() const noexcept { return instance_.state; }
  /// The event this step handles; nullptr for command results, compensations and time-outs.
  const Event* event() const noexcept { return event_; }
  /// The saga's name.
  const std::string& saga() const noexcept;

  /// Publishes a typed event (a fire-and-forget command, or a fact) in this flow:
  /// correlation id = the instance's, causation id = the handled event's, unless set.
  template <TypedEvent T>
  PublishResult publish(const T& event, PublishOptions options = {}) {
    return publish(event_topic<T>(), event, options);
  }
  template <TypedEvent T>
  PublishResult publish(std::string_view topic, const T& event, PublishOptions options = {});

  /// Sends a command to the service named after Cmd (or `service`) by request/reply
  /// and continues this instance with the outcome: `on_result(context, CommandResult<Result>)`
  /// runs later as a step of its own, unless the instance has finished meanwhile
  /// (then it is counted late). The command carries the instance's correlation id.
  template <TypedEvent Cmd, TypedEvent Result, class F>
  void execute(const Cmd& command, F&& on_result, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    execute<Cmd, Result>(Cmd::event_name, command, std::forward<F>(on_result), timeout);
  }
  template <TypedEvent Cmd, TypedEvent Result, class F>
  void execute(std::string_view service, const Cmd& command, F&& on_result,
               std::chrono::milliseconds timeout = std::chrono::seconds(5));

  /// Registers how to undo what was just done. If the instance fails or times out,
  /// its compensations run newest first, each as a step; one that throws is noted
  /// in the record and the others still run.
  void compensate(std::string name, Step action) {
    instance_.compensations.emplace_back(std::move(name), std::move(action));
  }
  /// Ends the instance successfully once this step returns. Compensations are dropped.
  void complete() { finish_ = SagaStatus::completed; }
  /// Ends the instance as failed once this step returns: its compensations run.
  void fail(std::string reason) {
    finish_ = SagaStatus::compensated;
    reason_ = std::move(reason);
  }
  /// Moves this instance's deadline to `from_now` after now.
  void set_timeout(std::chrono::milliseconds from_now);

 private:
  friend class detail::saga_core<State>;
  SagaContext(detail::saga_core<State>& core, typename detail::saga_core<State>::instance& inst, const Event* event)
      : core_(core), instance_(inst), event_(event) {}

  detail::saga_core<State>& core_;
  typename detail::saga_core<State>::instance& instance_;
  const Event* event_;
  std::optional<SagaStatus> finish_;
  std::string reason_;
};

namespace detail {

/// The shared part of a Saga: subscriptions and request callbacks hold it, so a
/// step that is running when the Saga is destroyed finishes safely (and does nothing
/// once `closed`).
template <class State>
class saga_core : public std::enable_shared_from_this<saga_core<State>> {
 public:
  using clock = std::chrono::steady_clock;
  using context = SagaContext<State>;

  struct instance {
    std::string correlation_id;
    State state{};
    std::vector<std::pair<std::string, typename context::Step>> compensations;
    std::vector<std::string> notes;
    clock::time_point deadline{};
    std::chrono::system_clock::time_point started_at{};
  };

  saga_core(Node& node, std::string name, SagaOptions options)
      : node_(node), name_(std::move(name)), options_(std::move(options)) {
    if (!options_.clock) options_.clock = [] { return clock::now(); };
  }

  Node& node() noexcept { return node_; }
  const std::string& name() const noexcept { return name_; }
  const SagaOptions& options() const noexcept { return options_; }

  /// An event for this saga: `step` runs on the instance of its flow, which `starts`
  /// creates when there is none. Throws what the step threw (after the roll-back).
  void on_event(const Event& e, bool starts, const std::function<void(context&)>& step) {
    std::string key(e.correlation_id().empty() ? e.id() : std::string(e.correlation_id()));
    finished_call done;
    {
      std::unique_lock lock(mu_);
      if (closed_) return;
      auto it = running_.find(key);
      bool created = false;
      if (it == running_.end()) {
        if (finished_.contains(key)) {
          ++stats_.late;
          return;
        }
        if (!starts) {
          ++stats_.unknown_flow;
          return;
        }
        if (running_.size() >= options_.max_instances) {
          ++stats_.refused;
          throw poison_event("saga '" + name_ + "' already runs " + std::to_string(running_.size()) +
                             " instances (SagaOptions::max_instances): flow " + key + " was not started");
        }
        auto inst = std::make_unique<instance>();
        inst->correlation_id = key;
        inst->started_at = std::chrono::system_clock::now();
        set_deadline(*inst, options_.clock() + options_.timeout);
        it = running_.emplace(key, std::move(inst)).first;
        created = true;
      }
      try {
        done = run_step(*it->second, &e, step, true);
      } catch (...) {
        if (created) {
          deadlines_.erase({it->second->deadline, key});
          running_.erase(it);
        }
        throw;
      }
      if (created) ++stats_.started;
    }
    done();
  }

  /// The result of a command issued by the instance `key`.
  void on_result(const std::string& key, const std::function<void(context&)>& step) {
    finished_call done;
    {
      std::lock_guard lock(mu_);
      if (closed_) return;
      const auto it = running_.find(key);
      if (it == running_.end()) {
        ++stats_.late;
        return;
      }
      done = run_step(*it->second, nullptr, step, false);
    }
    done();
  }

  /// Times out every instance whose deadline is at or before the clock's now.
  std::size_t run_timeouts() {
    std::vector<finished_call> done;
    {
      std::lock_guard lock(mu_);
      if (closed_) return 0;
      const auto now = options_.clock();
      while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
        const auto key = deadlines_.begin()->second;
        deadlines_.erase(deadlines_.begin());
        auto& inst = *running_.at(key);
        inst.deadline = clock::time_point::max();
        const auto before = inst.deadline;
        context ctx(*this, inst, nullptr);
        if (on_timeout_) {
          try {
            on_timeout_(ctx);
          } catch (const std::exception& ex) {
            ++stats_.step_errors;
            inst.notes.push_back(std::string("on_timeout threw: ") + ex.what());
          }
        }
        if (ctx.finish_) {
          done.push_back(finish(inst, *ctx.finish_, ctx.reason_));
        } else if (inst.deadline != before) {
          continue;  // on_timeout gave it more time
        } else {
          done.push_back(finish(inst, SagaStatus::timed_out,
                                "timed out: no final state within its deadline"));
        }
      }
    }
    for (auto& d : done) d();
    return done.size();
  }

  void set_on_timeout(std::function<void(context&)> f) {
    std::lock_guard lock(mu_);
    on_timeout_ = std::move(f);
  }

  void set_deadline(instance& inst, clock::time_point at) {
    if (inst.deadline != clock::time_point{}) deadlines_.erase({inst.deadline, inst.correlation_id});
    inst.deadline = at;
    const bool earliest = deadlines_.empty() || at < deadlines_.begin()->first;
    deadlines_.insert({at, inst.correlation_id});
    if (earliest) timer_cv_.notify_all();
  }

  std::optional<SagaRecord<State>> find(const std::string& key) const {
    std::lock_guard lock(mu_);
    if (const auto it = running_.find(key); it != running_.end()) {
      SagaRecord<State> r;
      r.correlation_id = key;
      r.state = it->second->state;
      r.notes = it->second->notes;
      r.started_at = it->second->started_at;
      return r;
    }
    if (const auto it = finished_.find(key); it != finished_.end()) return it->second;
    return std::nullopt;
  }

  SagaStats stats() const {
    std::lock_guard lock(mu_);
    auto s = stats_;
    s.running = running_.size();
    return s;
  }

  /// The timer thread's body: sleeps until the next deadline (or a new earlier one).
  void run_timer() {
    std::unique_lock lock(mu_);
    while (!closed_) {
      if (deadlines_.empty()) {
        timer_cv_.wait(lock);
        continue;
      }
      const auto next = deadlines_.begin()->first;
      if (clock::now() < next) {
        timer_cv_.wait_until(lock, next);
        continue;
      }
      lock.unlock();
      run_timeouts();
      lock.lock();
    }
  }

  void close() {
    std::lock_guard lock(mu_);
    closed_ = true;
    timer_cv_.notify_all();
  }

 private:
  friend class SagaContext<State>;
  using finished_call = std::function<void()>;

  /// Runs one step; a step that throws is rolled back (state and compensations).
  /// Returns what to call after the lock is released (the on_finished callback).
  finished_call run_step(instance& inst, const Event* e, const std::function<void(context&)>& step, bool rethrow) {
    State saved = inst.state;
    const auto compensations = inst.compensations.size();
    const auto deadline = inst.deadline;
    context ctx(*this, inst, e);
    try {
      step(ctx);
    } catch (const std::exception& ex) {
      ++stats_.step_errors;
      inst.state = std::move(saved);
      inst.compensations.resize(compensations);
      if (inst.deadline != deadline) set_deadline(inst, deadline);
      if (rethrow) throw;
      inst.notes.push_back(std::string("a step threw: ") + ex.what());
      return [] {};
    }
    ++stats_.steps;
    if (!ctx.finish_) return [] {};
    return finish(inst, *ctx.finish_, ctx.reason_);
  }

  /// Ends an instance: compensations (unless completed), the record, the counters.
  finished_call finish(instance& inst, SagaStatus status, std::string reason) {
    SagaRecord<State> record;
    record.correlation_id = inst.correlation_id;
    record.status = status;
    record.reason = std::move(reason);
    record.started_at = inst.started_at;
    if (status != SagaStatus::completed) {
      while (!inst.compensations.empty()) {
        auto [name, action] = std::move(inst.compensations.back());
        inst.compensations.pop_back();
        context ctx(*this, inst, nullptr);
        try {
          action(ctx);
          record.compensations_run.push_back(name);
        } catch (const std::exception& ex) {
          ++stats_.step_errors;
          inst.notes.push_back("compensation '" + name + "' threw: " + ex.what());
        }
      }
    }
    switch (status) {
      case SagaStatus::completed: ++stats_.completed; break;
      case SagaStatus::compensated: ++stats_.compensated; break;
      case SagaStatus::timed_out: ++stats_.timed_out; break;
      case SagaStatus::running: break;
    }
    record.state = std::move(inst.state);
    record.notes = std::move(inst.notes);
    record.finished_at = std::chrono::system_clock::now();
    const auto key = inst.correlation_id;
    if (inst.deadline != clock::time_point::max()) deadlines_.erase({inst.deadline, key});
    running_.erase(key);  // `inst` is gone from here on
    remember(key, record);
    if (!options_.on_finished) return [] {};
    return [cb = options_.on_finished, key, status, why = record.reason] { cb(key, status, why); };
  }

  void remember(const std::string& key, SagaRecord<State> record) {
    if (options_.finished_capacity == 0) {
      ++stats_.forgotten;
      return;
    }
    while (finished_order_.size() >= options_.finished_capacity) {
      finished_.erase(finished_order_.front());
      finished_order_.pop_front();
      ++stats_.forgotten;
    }
    finished_.emplace(key, std::move(record));
    finished_order_.push_back(key);
  }

  Node& node_;
  const std::string name_;
  SagaOptions options_;
  mutable std::mutex mu_;
  std::condition_variable timer_cv_;
  bool closed_ = false;
  std::map<std::string, std::unique_ptr<instance>> running_;
  std::set<std::pair<clock::time_point, std::string>> deadlines_;
  std::map<std::string, SagaRecord<State>> finished_;
  std::deque<std::string> finished_order_;
  std::function<void(context&)> on_timeout_;
  SagaStats stats_;
};

}  // namespace detail

/// A saga: declare its steps (start_on, on, on_timeout), then start() it. The Saga
/// must not outlive its Node; destroying it unsubscribes and stops its timer.
template <class State>
class Saga {
  static_assert(std::is_default_constructible_v<State> && std::is_copy_constructible_v<State> &&
                    std::is_copy_assignable_v<State>,
                "saga state is default-constructible and copyable (a step that throws is rolled back)");

 public:
  using Context = SagaContext<State>;

  /// Throws meshbus::error(invalid_argument) for an empty name, a group in
  /// options.subscribe, max_instances = 0, or a clock of its own with timer_thread.
  Saga(Node& node, std::string name, SagaOptions options = {})
      : core_(std::make_shared<detail::saga_core<State>>(node, std::move(name), check(std::move(options)))) {
    if (core_->name().empty()) throw error(errc::invalid_argument, "a saga needs a name");
  }
  ~Saga() { stop(); }
  Saga(const Saga&) = delete;
  Saga& operator=(const Saga&) = delete;

  /// Events of type T (on T's topic, or `pattern`) start a new instance for their
  /// flow, then run `step(context, const T&)` on it; for a flow already running the
  /// step runs on that instance. An event of a finished flow is counted late.
  template <TypedEvent T, class F>
  Saga& start_on(F&& step) {
    return add<T>(event_topic<T>(), std::forward<F>(step), true);
  }
  template <TypedEvent T, class F>
  Saga& start_on(std::string_view pattern, F&& step) {
    return add<T>(pattern, std::forward<F>(step), true);
  }
  /// Events of type T run `step(context, const T&)` on the running instance of their
  /// flow; events of no running flow are counted (unknown_flow or late) and ignored.
  template <TypedEvent T, class F>
  Saga& on(F&& step) {
    return add<T>(event_topic<T>(), std::forward<F>(step), false);
  }
  template <TypedEvent T, class F>
  Saga& on(std::string_view pattern, F&& step) {
    return add<T>(pattern, std::forward<F>(step), false);
  }
  /// Runs when an instance's deadline passes: it may complete(), fail(), or
  /// set_timeout() to give it more time. Otherwise the instance ends timed_out and
  /// its compensations run.
  template <class F>
  Saga& on_timeout(F&& step) {
    core_->set_on_timeout(std::forward<F>(step));
    return *this;
  }

  /// Subscribes to every declared event type and starts the timer thread.
  /// Throws meshbus::error(invalid_argument) when already started or nothing is declared.
  void start() {
    if (started_) throw error(errc::invalid_argument, "saga '" + core_->name() + "' is already started");
    if (declared_.empty()) {
      throw error(errc::invalid_argument, "saga '" + core_->name() + "' has no steps: declare start_on<T>() first");
    }
    for (auto& subscribe : declared_) subscriptions_.push_back(subscribe());
    declared_.clear();
    if (core_->options().timer_thread) timer_ = std::thread([core = core_] { core->run_timer(); });
    started_ = true;
  }
  /// Unsubscribes and stops the timer; running instances stay as they are (find()).
  void stop() {
    if (stopped_) return;
    stopped_ = true;
    core_->close();
    if (!core_->node().stopped()) {
      for (const auto s : subscriptions_) core_->node().unsubscribe(s);
    }
    if (timer_.joinable()) timer_.join();
  }

  /// Times out what is due now on the saga's clock (what the timer thread does).
  /// Returns how many instances ended.
  std::size_t run_timeouts() { return core_->run_timeouts(); }

  /// A running or remembered finished instance.
  std::optional<SagaRecord<State>> find(const std::string& correlation_id) const { return core_->find(correlation_id); }
  SagaStats stats() const { return core_->stats(); }
  const std::string& name() const noexcept { return core_->name(); }

 private:
  static SagaOptions check(SagaOptions o) {
    if (!o.subscribe.group.empty()) {
      throw error(errc::invalid_argument,
                  "a saga keeps each flow's state in one process: SagaOptions::subscribe.group must be empty");
    }
    if (o.max_instances == 0) throw error(errc::invalid_argument, "SagaOptions::max_instances must be at least 1");
    if (o.clock && o.timer_thread) {
      throw error(errc::invalid_argument,
                  "a SagaOptions::clock of your own needs timer_thread = false (call run_timeouts() yourself)");
    }
    return o;
  }

  template <TypedEvent T, class F>
  Saga& add(std::string_view pattern, F&& step, bool starts) {
    static_assert(std::is_invocable_v<F&, Context&, const T&>, "a saga step takes (Context&, const T&)");
    if (started_) {
      throw error(errc::invalid_argument, "saga '" + core_->name() + "': declare its steps before start()");
    }
    if (!types_.insert(std::string(T::event_name)).second) {
      throw error(errc::invalid_argument, "saga '" + core_->name() + "' already has a step for " +
                                              std::string(T::event_name) + ": one per event type");
    }
    declared_.push_back([core = core_, topic = std::string(pattern), step = std::forward<F>(step), starts]() mutable {
      return core->node().template subscribe<T>(
          topic,
          [core, step = std::move(step), starts](const T& value, const Event& e) mutable {
            core->on_event(e, starts, [&](Context& ctx) { step(ctx, value); });
          },
          core->options().subscribe);
    });
    return *this;
  }

  std::shared_ptr<detail::saga_core<State>> core_;
  std::vector<std::function<Subscription()>> declared_;
  std::set<std::string> types_;
  std::vector<Subscription> subscriptions_;
  std::thread timer_;
  bool started_ = false;
  bool stopped_ = false;
};

// --- SagaContext members that need saga_core ------------------------------------

template <class State>
const std::string& SagaContext<State>::saga() const noexcept {
  return core_.name();
}

template <class State>
template <TypedEvent T>
PublishResult SagaContext<State>::publish(std::string_view topic, const T& event, PublishOptions options) {
  if (options.correlation_id.empty()) options.correlation_id = instance_.correlation_id;
  std::string cause;
  if (options.causation_id.empty() && event_ != nullptr) {
    cause = event_->id();
    options.causation_id = cause;
  }
  return core_.node().publish(topic, event, options);
}

template <class State>
template <TypedEvent Cmd, TypedEvent Result, class F>
void SagaContext<State>::execute(std::string_view service, const Cmd& command, F&& on_result,
                                 std::chrono::milliseconds timeout) {
  static_assert(std::is_invocable_v<F&, SagaContext&, CommandResult<Result>>,
                "a command continuation takes (Context&, meshbus::CommandResult<Result>)");
  const auto bytes = encode_event(command);
  RequestOptions options;
  options.timeout = timeout;
  options.type_name = Cmd::event_name;
  options.type_version = Cmd::event_version;
  options.correlation_id = instance_.correlation_id;
  // The continuation runs later; the core, not this context, is what it may hold on to.
  auto core = core_.shared_from_this();
  core_.node().request_async(
      service, std::as_bytes(std::span(bytes.data(), bytes.size())),
      [core, key = instance_.correlation_id, then = std::forward<F>(on_result)](std::optional<Reply> reply,
                                                                                 std::exception_ptr failed) mutable {
        auto outcome = [&]() -> CommandResult<Result> {
          try {
            if (failed) std::rethrow_exception(failed);
            return CommandResult<Result>(decode_event<Result>(
                std::as_bytes(std::span(reply->payload.data(), reply->payload.size())), reply->type_name,
                reply->type_version));
          } catch (const error& e) {
            return CommandResult<Result>(e);
          } catch (const poison_event& e) {
            return CommandResult<Result>(error(errc::bad_reply, e.what()));
          } catch (const std::exception& e) {
            return CommandResult<Result>(error(errc::remote_failure, e.what()));
          }
        }();
        core->on_result(key, [&](SagaContext& ctx) { then(ctx, std::move(outcome)); });
      },
      options);
}

template <class State>
void SagaContext<State>::set_timeout(std::chrono::milliseconds from_now) {
  core_.set_deadline(instance_, core_.options().clock() + from_now);
}

}  // namespace meshbus
