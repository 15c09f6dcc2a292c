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
///       flow.request<ReserveStock, StockReserved>(            // a command, by request/reply
///           ReserveStock{placed.order_id, placed.items},
///           [](Flow& flow, meshbus::RequestResult<StockReserved> reserved) {
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
/// flow, and everything the instance publishes or requests carries that correlation
/// id, so the other services' answers find their way back by themselves (events
/// published from their handlers inherit it; see PublishOptions).
///
/// Threading: the steps of one instance (its event handlers, command results,
/// compensations and time-out) run one at a time, under that instance's lock:
/// its state needs no locking of its own. Steps of different instances may run in
/// parallel, on the Node's handler threads (time-outs on the saga's timer thread),
/// so what they share besides their own state needs its own locking. Steps must
/// not block for long (use request() with a continuation rather than waiting for a
/// future) and must not call the Saga's own members other than through the context.
///
/// A step that throws leaves the instance exactly as it was (state and registered
/// compensations are restored; what it already published stays published, except
/// on a durable saga, below): for an event the saga's subscription is
/// `acknowledged` by default, so the event is retried and finally dead-lettered,
/// never lost.
///
/// Durable sagas
/// -------------
/// On a node with a durable log (Options::data_dir; unless SagaOptions::in_memory)
/// a saga keeps every instance in the log, and a Saga of the same name started again
/// in a new process takes up where its flows stood: later events of a flow reach
/// its restored instance, its time-out is re-armed from the stored wall-clock
/// deadline (one that passed while the process was down fires at once, before the
/// mesh has formed again: what its compensations publish reaches the subscribers
/// that start from StartFrom::earliest(), or that the node was connected to in
/// time), its compensations run when it fails or times out, and requests it was
/// waiting for are sent again. What this takes:
///
/// * State is MessagePack-able: MSGPACK_DEFINE_MAP (or MSGPACK_DEFINE). Otherwise
///   the Saga's constructor throws error(invalid_argument). A field added to State
///   later is left default in records written before it.
/// * Closures cannot be stored, so what runs later has a name, declared before
///   start() (in every process that runs the saga):
///
///       saga.compensation("release stock", [](Flow& flow) {
///         (void)flow.publish(ReleaseStock{flow.state().id});
///       });
///       saga.on_result<StockReserved>("reserved", [](Flow& flow, meshbus::RequestResult<StockReserved> r) {
///         if (!r) return flow.fail("no stock: " + r.message());
///         flow.compensate("release stock");                     // by name: stored
///       });
///       ... flow.request<ReserveStock, StockReserved>(ReserveStock{id}, "reserved");
///
///   `flow.compensate(name, action)` with a closure is accepted on a durable saga
///   only when a compensation of that name is declared: the closure runs while
///   this process lives, the declared one after a restart (make them do the same).
///   A request with a closure as continuation throws error(invalid_argument) there.
///   Memory-only sagas take both forms.
/// * After each step (event, request result, time-out) one Node::transact writes
///   the instance's record under "$saga/<name>/<correlation id>" (state, status,
///   notes, registered compensations by name, requests awaiting their result,
///   deadline), and what the step published (SagaContext::publish) goes out of that
///   transaction's outbox: only once it committed, and still after a crash in
///   between (then possibly twice, with the same event id, which acknowledged
///   subscribers drop). Only then are the step's requests sent and its event acknowledged, so
///   an event is never acknowledged before its effect is stored. A step whose
///   record cannot be written (a full disk) is rolled back like one that throws
///   (counted in SagaStats::store_failures). Not covered: what a step does besides
///   the context (its own side effects), and publishing through the Node directly.
/// * Requests are at least once: one still awaiting its result when the process
///   died is sent again (same payload, the flow's correlation id) when the saga
///   starts, as soon as a live instance of its service is known (at most its
///   timeout later; then it fails as no_service). The service may see it twice and
///   should be idempotent per flow.
/// * The saga's subscriptions are durable (SagaOptions::subscribe): events
///   published on a stream it had seen while the process was down are delivered
///   after the restart, while the publisher's history holds them (a stream it never
///   saw starts where SagaOptions::subscribe.start says). An event handled just
///   before a crash, whose position had not been stored, is delivered again and
///   recognised by its id among the instance's last 64 (SagaStats::redelivered),
///   not handled twice.
/// * Finished instances keep their final record (find()), at most
///   finished_capacity of them, in the log too. A stored record that is damaged or
///   does not decode makes start() throw error(storage) naming its key (erase it
///   with Node::transact to start without it) rather than drop a flow silently.
///
/// This header is built only on Node's public API and <meshbus/typed.hpp>; the part
/// that does not depend on State is compiled into the library
/// (meshbus/detail/saga_core.hpp, lib/toolkit/saga_core.cpp).
#pragma once

#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "meshbus/detail/saga_core.hpp"
#include "meshbus/saga_options.hpp"
#include "meshbus/typed.hpp"

namespace meshbus {

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

/// The outcome of a request issued with SagaContext::request(): the result, or why
/// there is none (a meshbus::error: no_service, timeout, remote_failure,
/// request_rejected, peer_gone, bad_reply, stopped).
template <class R>
class RequestResult {
 public:
  explicit RequestResult(R value) : value_(std::move(value)) {}
  explicit RequestResult(error failure) : failure_(std::move(failure)) {}

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

/// A State a durable saga can store: MSGPACK_DEFINE_MAP (or MSGPACK_DEFINE) gives it these.
template <class S>
concept saga_storable_state = requires(const S& s, S& t, msgpack::packer<msgpack::sbuffer>& pk,
                                       const msgpack::object& o) {
  s.msgpack_pack(pk);
  t.msgpack_unpack(o);
};

/// The outcome of a request as a RequestResult<Rep>.
template <TypedEvent Rep>
RequestResult<Rep> request_outcome(std::optional<Rep> reply, const std::exception_ptr& failed) {
  if (reply) return RequestResult<Rep>(std::move(*reply));
  try {
    std::rethrow_exception(failed);
  } catch (const error& e) {
    return RequestResult<Rep>(e);
  } catch (const std::exception& e) {
    return RequestResult<Rep>(error(errc::remote_failure, e.what()));
  }
}

/// An instance of a Saga<State>: the State-independent part and the state.
template <class State>
class saga_instance_of final : public saga_instance {
 public:
  State state{};

  void save_state() override { saved_ = state; }
  void restore_state() override {
    if (saved_) state = std::move(*saved_);
    saved_.reset();
  }
  void drop_saved_state() noexcept override { saved_.reset(); }
  std::string encode_state() const override {
    if constexpr (saga_storable_state<State>) {
      msgpack::sbuffer buffer;
      msgpack::pack(buffer, state);
      return std::string(buffer.data(), buffer.size());
    } else {
      throw error(errc::invalid_argument, "the saga's State is not MessagePack-able (MSGPACK_DEFINE_MAP)");
    }
  }
  void decode_state(std::string_view bytes) override {
    if constexpr (saga_storable_state<State>) {
      const auto handle = msgpack::unpack(bytes.data(), bytes.size());
      State value{};
      handle.get().convert(value);
      state = std::move(value);
    } else {
      throw error(errc::invalid_argument, "the saga's State is not MessagePack-able (MSGPACK_DEFINE_MAP)");
    }
  }

 private:
  std::optional<State> saved_;
};

}  // namespace detail

/// What a step of a saga instance sees: its state, the event being handled, and the
/// ways to act on behalf of the flow. Valid only during the step.
template <class State>
class SagaContext {
 public:
  using Step = std::function<void(SagaContext&)>;

  const std::string& correlation_id() const noexcept { return step_.instance().correlation_id; }
  State& state() noexcept { return instance().state; }
  const State& state() const noexcept { return instance().state; }
  /// The event this step handles; nullptr for request results, compensations and time-outs.
  const Event* event() const noexcept { return step_.event(); }
  /// The saga's name.
  const std::string& saga() const noexcept { return step_.core().name(); }

  /// Publishes a typed event (a fire-and-forget command, or a fact) in this flow:
  /// correlation id = the instance's, causation id = the handled event's, unless set.
  /// On a durable saga the event goes out once the step's record is written (from
  /// that transaction's outbox; `options.timestamp` is not kept): the result is
  /// then ok, and a refusal is met later as the outbox meets it.
  template <TypedEvent T>
  PublishResult publish(const T& event, PublishOptions options = {}) {
    return publish(event_topic<T>(), event, options);
  }
  template <TypedEvent T>
  PublishResult publish(std::string_view topic, const T& event, PublishOptions options = {});

  /// Sends a request (a command or a query) to the service named after Req, or to
  /// `service`, and continues this instance with the outcome:
  /// `on_result(context, RequestResult<Rep>)` runs later as a step of its own, unless
  /// the instance has finished meanwhile (then it is counted late). The request
  /// carries the instance's correlation id unless `options` sets one. Memory-only
  /// sagas; a durable saga throws error(invalid_argument): name a declared
  /// continuation instead (below).
  template <TypedEvent Req, TypedEvent Rep, class F>
    requires(!std::is_convertible_v<F, std::string_view>)
  void request(const Req& request, F&& on_result, const RequestOptions& options = RequestOptions{}) {
    this->template request<Req, Rep>(Req::event_name, request, std::forward<F>(on_result), options);
  }
  template <TypedEvent Req, TypedEvent Rep, class F>
    requires(!std::is_convertible_v<F, std::string_view>)
  void request(std::string_view service, const Req& request, F&& on_result,
               const RequestOptions& options = RequestOptions{});
  /// The same with the continuation declared as `continuation` (Saga::on_result<Rep>):
  /// the request is remembered with the instance until its result has run, and sent
  /// once this step is done (on a durable saga: once its record is written; again
  /// after a restart if its result had not run). Throws error(invalid_argument) when
  /// no continuation of that name is declared for Rep.
  template <TypedEvent Req, TypedEvent Rep>
  void request(const Req& request, std::string_view continuation, const RequestOptions& options = RequestOptions{}) {
    this->template request<Req, Rep>(Req::event_name, request, continuation, options);
  }
  template <TypedEvent Req, TypedEvent Rep>
  void request(std::string_view service, const Req& request, std::string_view continuation,
               const RequestOptions& options = RequestOptions{});

  /// Registers how to undo what was just done. If the instance fails or times out,
  /// its compensations run newest first, each as a step; one that throws is noted
  /// in the record and the others still run. On a durable saga `name` must be
  /// declared (Saga::compensation), or this throws error(invalid_argument): `action`
  /// runs while this process lives, the declared one after a restart.
  void compensate(std::string name, Step action) {
    step_.compensate(std::move(name), [action = std::move(action)](detail::saga_step& s) {
      SagaContext context(s);
      action(context);
    });
  }
  /// Registers the compensation declared as `name` (Saga::compensation); throws
  /// error(invalid_argument) when there is none. Stored with a durable instance.
  void compensate(std::string name) { step_.compensate(std::move(name)); }
  /// Ends the instance successfully once this step returns. Compensations are dropped.
  void complete() noexcept { step_.complete(); }
  /// Ends the instance as failed once this step returns: its compensations run.
  void fail(std::string reason) { step_.fail(std::move(reason)); }
  /// Moves this instance's deadline to `from_now` after now.
  void set_timeout(std::chrono::milliseconds from_now) { step_.set_timeout(from_now); }

 private:
  friend class Saga<State>;
  explicit SagaContext(detail::saga_step& step) noexcept : step_(step) {}
  detail::saga_instance_of<State>& instance() const noexcept {
    return static_cast<detail::saga_instance_of<State>&>(step_.instance());
  }

  detail::saga_step& step_;
};

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
  /// options.subscribe, max_instances = 0, a clock of its own with timer_thread, or
  /// a durable saga whose State is not MessagePack-able.
  Saga(Node& node, std::string name, SagaOptions options = {})
      : core_(std::make_shared<detail::saga_core>(
            node, std::move(name), check(std::move(options)),
            [] { return std::make_shared<detail::saga_instance_of<State>>(); })) {
    if (core_->name().empty()) throw error(errc::invalid_argument, "a saga needs a name");
    if (core_->durable() && !detail::saga_storable_state<State>) {
      throw error(errc::invalid_argument,
                  "saga '" + core_->name() +
                      "' runs on a node with a durable log, which keeps its instances across restarts: its State "
                      "needs MSGPACK_DEFINE_MAP (or set SagaOptions::in_memory to keep them in memory only)");
    }
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
    static_assert(std::is_invocable_v<F&, Context&>, "on_timeout takes (Context&)");
    core_->set_on_timeout([step = std::forward<F>(step)](detail::saga_step& s) mutable {
      Context context(s);
      step(context);
    });
    return *this;
  }

  /// Declares the compensation `name`: `step(context)`, registered by
  /// SagaContext::compensate(name). Durable sagas store it by name, so it must be
  /// declared in every process that runs the saga. Before start().
  template <class F>
  Saga& compensation(std::string name, F&& step) {
    static_assert(std::is_invocable_v<F&, Context&>, "a compensation takes (Context&)");
    check_not_started();
    core_->declare_compensation(std::move(name), [step = std::forward<F>(step)](detail::saga_step& s) mutable {
      Context context(s);
      step(context);
    });
    return *this;
  }
  /// Declares the request continuation `name` for replies of type Rep:
  /// `step(context, RequestResult<Rep>)`, named in SagaContext::request. Before start().
  template <TypedEvent Rep, class F>
  Saga& on_result(std::string name, F&& step) {
    static_assert(std::is_invocable_v<F&, Context&, RequestResult<Rep>>,
                  "a request continuation takes (Context&, meshbus::RequestResult<Rep>)");
    check_not_started();
    auto shared = std::make_shared<std::decay_t<F>>(std::forward<F>(step));
    core_->declare_continuation(
        std::move(name), std::string(Rep::event_name),
        [shared](detail::saga_core& core, const std::string& key, const detail::saga_request& r) {
          RequestOptions o;
          o.timeout = r.timeout;
          o.type_name = r.type_name;
          o.type_version = r.type_version;
          o.correlation_id = r.correlation_id;
          core.node().request_async(
              r.service, std::as_bytes(std::span(r.payload.data(), r.payload.size())),
              [core = core.shared_from_this(), key, id = r.id, shared](std::optional<Reply> reply,
                                                                       std::exception_ptr failed) {
                std::optional<Rep> value;
                if (!failed) {
                  try {
                    value.emplace(detail::decode_reply<Rep>(*reply));
                  } catch (...) {
                    failed = std::current_exception();
                  }
                }
                auto outcome = detail::request_outcome<Rep>(std::move(value), failed);
                core->on_result(key, id, [&](detail::saga_step& s) {
                  Context context(s);
                  (*shared)(context, std::move(outcome));
                });
              },
              o);
        });
    return *this;
  }

  /// Takes up the instances a durable saga stored (throws error(storage) for a record
  /// that is damaged or does not decode), subscribes to every declared event type,
  /// sends again the requests restored instances wait for, and starts the timer thread.
  /// Throws meshbus::error(invalid_argument) when already started or nothing is declared.
  void start() {
    if (started_) throw error(errc::invalid_argument, "saga '" + core_->name() + "' is already started");
    if (declared_.empty()) {
      throw error(errc::invalid_argument, "saga '" + core_->name() + "' has no steps: declare start_on<T>() first");
    }
    core_->restore();
    for (auto& subscribe : declared_) subscriptions_.push_back(subscribe());
    declared_.clear();
    if (core_->durable()) resend_ = std::thread([core = core_] { core->resend_requests(); });
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
    if (resend_.joinable()) resend_.join();
  }

  /// Times out what is due now on the saga's clock (what the timer thread does).
  /// Returns how many instances ended.
  std::size_t run_timeouts() { return core_->run_timeouts(); }

  /// A running or remembered finished instance (waits for a step of it that is running).
  std::optional<SagaRecord<State>> find(const std::string& correlation_id) const {
    std::optional<SagaRecord<State>> found;
    core_->find(correlation_id, [&](const detail::saga_instance& inst) {
      auto& r = found.emplace();
      r.correlation_id = inst.correlation_id;
      r.state = static_cast<const detail::saga_instance_of<State>&>(inst).state;
      r.notes = inst.notes;
      r.started_at = inst.started_at;
      if (inst.record) {
        r.status = inst.record->status;
        r.reason = inst.record->reason;
        r.compensations_run = inst.record->compensations_run;
        r.finished_at = inst.record->finished_at;
      }
    });
    return found;
  }
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

  void check_not_started() const {
    if (started_) {
      throw error(errc::invalid_argument, "saga '" + core_->name() + "': declare its steps before start()");
    }
  }

  template <TypedEvent T, class F>
  Saga& add(std::string_view pattern, F&& step, bool starts) {
    static_assert(std::is_invocable_v<F&, Context&, const T&>, "a saga step takes (Context&, const T&)");
    check_not_started();
    if (!types_.insert(std::string(T::event_name)).second) {
      throw error(errc::invalid_argument, "saga '" + core_->name() + "' already has a step for " +
                                              std::string(T::event_name) + ": one per event type");
    }
    declared_.push_back([core = core_, topic = std::string(pattern), step = std::forward<F>(step), starts]() mutable {
      auto options = core->options().subscribe;
      if (core->durable()) {
        options.durable_name = (options.durable_name.empty() ? "$saga/" + core->name() : options.durable_name) + "/" +
                               std::string(T::event_name);
      }
      return core->node().template subscribe<T>(
          topic,
          [core, step = std::move(step), starts](const T& value, const Event& e) mutable {
            core->on_event(e, starts, [&](detail::saga_step& s) {
              Context context(s);
              step(context, value);
            });
          },
          options);
    });
    return *this;
  }

  std::shared_ptr<detail::saga_core> core_;
  std::vector<std::function<Subscription()>> declared_;
  std::set<std::string> types_;
  std::vector<Subscription> subscriptions_;
  std::thread timer_;
  std::thread resend_;  ///< durable sagas: sends again what restored instances wait for
  bool started_ = false;
  bool stopped_ = false;
};

// --- SagaContext members that act through the Node ---------------------------------

template <class State>
template <TypedEvent T>
PublishResult SagaContext<State>::publish(std::string_view topic, const T& event, PublishOptions options) {
  if (options.correlation_id.empty()) options.correlation_id = correlation_id();
  if (options.causation_id.empty() && step_.event() != nullptr) options.causation_id = step_.event()->id();
  if (!step_.durable()) return step_.core().node().publish(topic, event, options);
  detail::saga_publication p;
  p.topic = topic;
  p.payload = encode_event(event);
  p.event_id = options.event_id;
  p.type_name = T::event_name;
  p.type_version = T::event_version;
  p.correlation_id = options.correlation_id;
  p.causation_id = options.causation_id;
  p.content_type = options.content_type;
  for (const auto& h : options.headers) p.headers.emplace_back(h.name, h.value);
  step_.publish_later(std::move(p));
  return PublishResult::ok;
}

template <class State>
template <TypedEvent Req, TypedEvent Rep, class F>
  requires(!std::is_convertible_v<F, std::string_view>)
void SagaContext<State>::request(std::string_view service, const Req& request, F&& on_result,
                                 const RequestOptions& options) {
  static_assert(std::is_invocable_v<F&, SagaContext&, RequestResult<Rep>>,
                "a request continuation takes (Context&, meshbus::RequestResult<Rep>)");
  if (step_.durable()) {
    throw error(errc::invalid_argument,
                "saga '" + saga() +
                    "' keeps its instances in the node's durable log, where a closure cannot be stored: declare the "
                    "continuation with Saga::on_result<Rep>(name, step) and pass its name to request()");
  }
  RequestOptions in_flow = options;
  if (in_flow.correlation_id.empty()) in_flow.correlation_id = correlation_id();
  // The continuation runs later; the core, not this context, is what it may hold on to.
  step_.core().node().template request_async<Req, Rep>(
      service, request,
      [core = step_.core().shared_from_this(), key = correlation_id(), then = std::forward<F>(on_result)](
          std::optional<Rep> reply, std::exception_ptr failed) mutable {
        auto outcome = detail::request_outcome<Rep>(std::move(reply), failed);
        core->on_result(key, [&](detail::saga_step& s) {
          SagaContext context(s);
          then(context, std::move(outcome));
        });
      },
      in_flow);
}

template <class State>
template <TypedEvent Req, TypedEvent Rep>
void SagaContext<State>::request(std::string_view service, const Req& request, std::string_view continuation,
                                 const RequestOptions& options) {
  const auto reply_type = step_.core().continuation_reply_type(std::string(continuation));
  if (reply_type && *reply_type != Rep::event_name) {
    throw error(errc::invalid_argument, "saga '" + saga() + "': continuation '" + std::string(continuation) +
                                            "' takes replies of type " + *reply_type + ", not " +
                                            std::string(Rep::event_name));
  }
  detail::saga_request r;
  r.continuation = continuation;
  r.service = service;
  r.payload = encode_event(request);
  r.type_name = Req::event_name;
  r.type_version = Req::event_version;
  r.timeout = options.timeout;
  r.correlation_id = options.correlation_id.empty() ? correlation_id() : std::string(options.correlation_id);
  step_.request(std::move(r));  // checks that it is declared
}

}  // namespace meshbus
