/// @file
/// The State-independent core of meshbus::Saga, compiled once into the library
/// (lib/toolkit/saga_core.cpp): instances by correlation id, their deadlines and
/// timer, steps with roll-back, compensations, finished records and counters, and,
/// on a durable node, each instance's record in the node's durable log (through
/// Node::transact, under keys "$saga/<name>/<correlation id>"). Saga<State> adds
/// only what knows State: the instance type with its state, and the typed steps.
/// Internal to <meshbus/saga.hpp>; include that.
///
/// Locking: the core's lock guards the tables (running and finished instances,
/// deadlines, counters, declared compensations and continuations) and is held only
/// briefly, never while a step runs. Each instance has a lock of its own, held for
/// the whole of each of its steps and the write of its record, so the steps of one
/// instance run one at a time and those of different instances may run in
/// parallel. Order: an instance's lock before the core's, never the reverse; the
/// log's write lock (inside Node::transact) after both.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
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

/// A request made with a named continuation: kept with the instance (and in its
/// stored record) until its result has been handled, and sent again when the
/// instance is taken up after a restart.
struct saga_request {
  std::uint64_t id = 0;      ///< per instance
  std::string continuation;  ///< declared with Saga::on_result
  std::string service;
  std::string payload;  ///< the request, encoded
  std::string type_name;
  std::uint32_t type_version = 0;
  std::chrono::milliseconds timeout{5000};
  std::string correlation_id;
};

/// An event a step of a durable saga published: held until the step's record is
/// written, then published from the same transaction's outbox.
struct saga_publication {
  std::string topic;
  std::string payload;
  std::string event_id;
  std::string type_name;
  std::uint32_t type_version = 0;
  std::string correlation_id;
  std::string causation_id;
  std::string content_type;
  std::vector<std::pair<std::string, std::string>> headers;
};

/// What a step leaves to be done once it is committed.
struct saga_effects {
  std::vector<saga_publication> publications;  ///< durable sagas only
  std::vector<saga_request> requests;          ///< sent after the step
};

/// One instance of a saga, without its State: Saga<State> derives from it. Every
/// field is guarded by `mu` except `deadline`, which the core's lock guards.
class saga_instance {
 public:
  virtual ~saga_instance() = default;

  /// Keeps a copy of the state before a step, to put back if the step throws.
  virtual void save_state() = 0;
  virtual void restore_state() = 0;
  virtual void drop_saved_state() noexcept = 0;
  /// The state as MessagePack, and back (durable sagas: the State type is checked
  /// when the Saga is made).
  virtual std::string encode_state() const = 0;
  virtual void decode_state(std::string_view bytes) = 0;

  std::mutex mu;  ///< held while one of its steps runs
  std::string correlation_id;
  /// Registered compensations, oldest first: the name, and the action registered
  /// with it in this process (empty: the one declared under that name).
  std::vector<std::pair<std::string, saga_step_fn>> compensations;
  /// Requests with a named continuation whose result has not been handled yet.
  std::vector<saga_request> requests;
  std::uint64_t next_request = 1;
  /// Durable sagas: ids of the last events it handled, so that one delivered again
  /// after a crash (handled, its position not yet stored) is not handled twice.
  std::deque<std::string> handled;
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
  saga_step(saga_core& core, saga_instance& instance, const Event* event, saga_effects& effects) noexcept
      : core_(core), instance_(instance), event_(event), effects_(effects) {}

  saga_core& core() const noexcept { return core_; }
  saga_instance& instance() const noexcept { return instance_; }
  const Event* event() const noexcept { return event_; }
  /// True when the saga keeps its instances in the node's durable log.
  bool durable() const noexcept;

  /// Registers a compensation with an action of this process. On a durable saga
  /// `name` must have been declared (Saga::compensation): after a restart the
  /// declared one runs. Throws error(invalid_argument) otherwise.
  void compensate(std::string name, saga_step_fn action);
  /// Registers the compensation declared under `name`; throws error(invalid_argument)
  /// when there is none.
  void compensate(std::string name);
  /// Makes a request whose result goes to its declared continuation; it is sent once
  /// the step is committed. Throws error(invalid_argument) for an undeclared one.
  void request(saga_request r);
  /// Durable sagas: an event published once the step is committed.
  void publish_later(saga_publication p) { effects_.publications.push_back(std::move(p)); }

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
  saga_effects& effects_;
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
  /// Sends a request of instance `key` and routes its outcome to on_result() (made
  /// by Saga::on_result, which knows the reply type). May throw.
  using request_sender = std::function<void(saga_core& core, const std::string& key, const saga_request& r)>;

  /// `options` are already checked; `make` creates an instance of the State type.
  saga_core(Node& node, std::string name, SagaOptions options, instance_factory make);

  Node& node() const noexcept { return node_; }
  const std::string& name() const noexcept { return name_; }
  const SagaOptions& options() const noexcept { return options_; }
  /// On a durable node, unless SagaOptions::in_memory.
  bool durable() const noexcept { return durable_; }

  /// Declarations (before start). Throw error(invalid_argument) for a name declared twice.
  void declare_compensation(std::string name, saga_step_fn step);
  void declare_continuation(std::string name, std::string reply_type, request_sender send);
  bool has_compensation(const std::string& name) const;
  /// The reply type a continuation was declared for; nullopt when not declared.
  std::optional<std::string> continuation_reply_type(const std::string& name) const;

  /// Durable sagas, at start(): takes up the instances stored in the node's log
  /// (running ones with their deadlines; finished ones for find()). Throws
  /// error(storage) for a record that is damaged or does not decode, naming it.
  void restore();
  /// Sends again the requests the restored instances were waiting for, each once a
  /// live instance serves its service (or its timeout passed: it then fails as
  /// no_service). Returns when all are sent or the core is closed (a thread of the
  /// Saga runs it).
  void resend_requests();

  /// An event for this saga: `step` runs on the instance of its flow, which a
  /// `starts` event creates when there is none. Throws what the step threw (after
  /// the roll-back), error(storage) when its record cannot be written (rolled back
  /// too), and poison_event beyond max_instances.
  void on_event(const Event& e, bool starts, const saga_step_fn& step);
  /// The result of a command issued by the instance `key`; a step that throws is
  /// rolled back and noted.
  void on_result(const std::string& key, const saga_step_fn& step);
  /// The result of request `request_id` of instance `key` (a named continuation):
  /// runs only while the instance still waits for it.
  void on_result(const std::string& key, std::uint64_t request_id, const saga_step_fn& step);
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
  struct snapshot;

  std::shared_ptr<saga_instance> running_instance(const std::string& key, bool count_late);
  finished_call run_step(saga_instance& inst, const Event* e, const saga_step_fn& step, bool rethrow,
                         std::uint64_t answered_request = 0);
  finished_call conclude(saga_instance& inst, snapshot& before, saga_effects& effects,
                         std::optional<SagaStatus> finish, std::string reason, bool rethrow, bool is_step);
  snapshot take(saga_instance& inst);
  saga_instance::final_record compensate_all(saga_instance& inst, SagaStatus status, std::string reason,
                                             saga_effects& effects);
  finished_call finish(saga_instance& inst, saga_instance::final_record record);
  void roll_back(saga_instance& inst, snapshot& before);
  /// Writes the instance's record (running, or `record` when it finished) and the
  /// step's publications in one transaction. Returns what went wrong, or "".
  std::string persist(saga_instance& inst, const saga_instance::final_record* record, saga_effects& effects);
  std::string encode(const saga_instance& inst, const saga_instance::final_record* record) const;
  std::string key_of(const std::string& correlation_id) const;
  void send(saga_instance& inst, const saga_request& r);
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
  const bool durable_;
  mutable std::mutex mu_;  ///< guards everything below
  std::condition_variable timer_cv_;
  bool closed_ = false;
  std::map<std::string, std::shared_ptr<saga_instance>> running_;
  std::set<std::pair<clock::time_point, std::string>> deadlines_;
  std::map<std::string, std::shared_ptr<saga_instance>> finished_;
  std::deque<std::string> finished_order_;
  saga_step_fn on_timeout_;
  std::map<std::string, saga_step_fn, std::less<>> compensations_;
  struct continuation {
    std::string reply_type;
    request_sender send;
  };
  std::map<std::string, continuation, std::less<>> continuations_;
  SagaStats stats_;
};

}  // namespace meshbus::detail
