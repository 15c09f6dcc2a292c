/// @file
/// meshbus::Node — one participant in a brokerless mesh.
///
/// Threading contract
/// ------------------
/// * Every public member may be called from any thread, except as noted.
/// * In background mode (the default) the Node owns one I/O thread, which owns every
///   socket, and Options::handler_threads handler threads. publish() never blocks on
///   a slow peer: it only waits for space in the send queue (see SendPolicy).
/// * Handlers run on a handler thread, never on the thread that called publish().
///   Events of one stream (publisher, epoch, topic) reach handlers one at a time,
///   in sequence order. Different streams may be handled in parallel when
///   handler_threads > 1. With handler_threads = 0 handlers run on the I/O thread
///   itself (lowest latency; a slow handler then holds up the node's I/O).
/// * A handler may call any member of its own Node, stop() included, but must not
///   destroy it. Calls that wait (a blocking publish(), flush(), wait_for_*()) hold up
///   that handler thread meanwhile; the I/O thread never waits for handlers, so they
///   cannot deadlock it (an inline handler's wait turns the loop itself, handling no
///   other event meanwhile). From an inline handler, stop() only asks for the stop,
///   which completes after the handler returns. A handler that throws is counted
///   (Stats::handler_errors), reported to Options::on_error and the log (when first
///   seen, then at most once per 10 s per cause), and the Node goes on.
/// * With background_thread = false nothing runs by itself: poll_once() runs one
///   round of the I/O loop and then the handlers, on the caller's thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <concepts>
#include <cstdint>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "meshbus/error.hpp"
#include "meshbus/event.hpp"
#include "meshbus/options.hpp"
#include "meshbus/report.hpp"
#include "meshbus/stats.hpp"
#include "meshbus/transaction.hpp"
#include "meshbus/types.hpp"

namespace meshbus {

namespace detail {
class node_impl;
}

/// Result of publish(): refusal is a value, not an exception.
enum class [[nodiscard]] PublishResult : std::uint8_t {
  ok,           ///< queued; it will be sent in order
  would_block,  ///< the send queue or a subscriber's window stayed full (SendPolicy);
                ///< nothing was queued
  store_failed,  ///< the durable log (Options::data_dir) cannot be written (a full disk
                 ///< or map; see Options::on_error): nothing was queued. Events accepted
                 ///< before are kept and written once there is room; try again later
};

/// Optional parts of an event. All views are copied before publish() returns.
/// Designated initializers work: `node.publish(topic, text, {.correlation_id = id})`.
/// Published from inside a handler, an event without its own correlation id gets
/// the handled event's (or, if it has none, the handled event's id), and without its
/// own causation id the handled event's id: a whole flow can be traced.
struct PublishOptions {
  std::string_view event_id{};  ///< default: derived from (publisher, epoch, sequence)
  std::string_view type_name{};
  std::uint32_t type_version = 0;
  std::string_view correlation_id{};
  std::string_view causation_id{};
  std::string_view content_type{};
  std::span<const Header> headers{};
  /// Default: the time the batch is sent (one clock read per batch).
  std::optional<std::chrono::system_clock::time_point> timestamp{};
};

/// What a subscription is promised.
enum class Delivery : std::uint8_t {
  /// In order; a gap (lost events) is reported through on_loss() and skipped, never repaired.
  best_effort,
  /// In order, no gaps (the default): missing events are asked for again (NACK) and
  /// resent from the publisher's history; what history no longer holds is reported
  /// through on_loss(), never skipped silently. The publisher learns by cumulative
  /// acks what this node holds, so its flush() and flow control account for it.
  reliable,
  /// reliable, and acks follow the handler: an event counts as acknowledged once the
  /// handler returned. A handler that throws is called again (up to max_deliver times,
  /// with backoff), then the event is dead-lettered (dead_letters(), topic "$dlq.<topic>").
  /// Unacknowledged events are redelivered by the publisher; duplicates are dropped
  /// by (stream, sequence) and by explicit event id within a window.
  acknowledged,
};

/// Where a subscription starts on streams that were already running when it began.
/// Streams that start later are always received from their first event.
struct StartFrom {
  enum class Kind : std::uint8_t { now, earliest, sequence, time };
  Kind kind = Kind::now;
  std::uint64_t sequence = 0;
  /// Kind::time: nanoseconds since the Unix epoch.
  std::uint64_t time_ns = 0;

  /// From the moment the subscription is in effect at each publisher.
  static StartFrom now() noexcept { return {Kind::now, 0, 0}; }
  /// From the oldest event each publisher still holds in its history.
  static StartFrom earliest() noexcept { return {Kind::earliest, 1, 0}; }
  /// From sequence `seq` of every stream (what history no longer holds is reported lost).
  static StartFrom at(std::uint64_t seq) noexcept { return {Kind::sequence, seq == 0 ? 1 : seq, 0}; }
  /// From the first event of every stream published at or after `t` (by the event's
  /// timestamp). Served like earliest(): events before `t` are passed over at the
  /// subscriber, not reported lost.
  static StartFrom time(std::chrono::system_clock::time_point t) noexcept {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
    return {Kind::time, 1, ns < 0 ? 0 : static_cast<std::uint64_t>(ns)};
  }
};

struct SubscribeOptions {
  Delivery delivery = Delivery::reliable;
  StartFrom start = StartFrom::now();
  /// acknowledged: how many times a handler is called for one event before the event
  /// is dead-lettered.
  unsigned max_deliver = 5;
  /// acknowledged: the wait before the first retry; it doubles for each further one.
  std::chrono::milliseconds retry_backoff{50};
  /// A service group (competing consumers): the nodes subscribing with the same
  /// group name share the work, each batch of events going to one live member only
  /// (the least loaded). A node may subscribe several patterns in one group (say
  /// "shop.payment.charge" and "shop.payment.refund", each with its own handler): a
  /// batch goes to the group when any of its patterns matches, and on the member it
  /// goes to, to each of its subscriptions of the group whose pattern matches. The same
  /// pattern twice in one group on one node throws error(invalid_argument); an
  /// ordinary subscription of the same pattern is independent of the group's.
  /// Members are meant to subscribe the same set of patterns: the set most of the
  /// group's nodes subscribe is the group's, and a node with another set gets no work
  /// (reported as fault group_conflict) until its set is the group's again
  /// (docs/protocol.md §7). Group subscriptions are always acknowledged: when a member
  /// leaves, or stops being one, what it had not acknowledged and cannot finish goes
  /// to the others. Events of one stream may then be handled by several members in
  /// parallel. Empty: an ordinary subscription.
  std::string group;
  /// A durable subscription (needs Options::data_dir): its position in every stream
  /// is stored under this name after the handler returns, and a subscription of the
  /// same name after a restart resumes at the next event, however the process ended.
  /// Events handled but not yet committed when a process dies are delivered again
  /// (at most one run of 4096 events per stream; counted in
  /// Stats::durable_redeliveries). A durable subscription is `acknowledged` (a
  /// `reliable` one is made so; best_effort is refused): it acknowledges what it
  /// committed, so its publishers keep the rest for it, flush() waits for it, and a
  /// handler that keeps throwing dead-letters its event. Not in a service group. Empty:
  /// not durable.
  std::string durable_name;
};

/// Events that will never arrive for a subscription.
struct LossNotice {
  enum class Reason : std::uint8_t {
    gap,             ///< best_effort: a gap was skipped
    not_in_history,  ///< the publisher no longer holds the events
    publisher_gone,  ///< the publisher left or restarted before they could be repaired
  };
  NodeId publisher;
  std::uint64_t epoch = 0;
  std::string topic;
  /// `to` of an open-ended notice: the publisher is gone (it crashed or restarted,
  /// or did not come back within Options::peer_resume) and where its stream ended is
  /// not known, so everything it published from `from` on is lost, however much that
  /// was (possibly nothing).
  static constexpr std::uint64_t open_end = UINT64_MAX;
  std::uint64_t from = 0;  ///< first sequence lost
  std::uint64_t to = 0;    ///< last sequence lost (inclusive), or open_end
  bool open_ended() const noexcept { return to == open_end; }
  Reason reason = Reason::not_in_history;
  std::string pattern;  ///< the subscription that lost them
};

const char* to_string(LossNotice::Reason r) noexcept;

/// A subscriber that has not acknowledged everything this node published (flush()).
struct UnacknowledgedSubscriber {
  enum class State : std::uint8_t {
    connected,  ///< a peer now: it has not caught up (yet)
    absent,     ///< declared gone without a goodbye; may still come back (Options::peer_resume)
    gone,       ///< restarted, its process ended, or not back in time: these never reached it
  };
  NodeId id;
  std::string name;          ///< its node name ("" when it never said)
  std::uint64_t events = 0;  ///< published, not acknowledged by it
  State state = State::connected;
};

const char* to_string(UnacknowledgedSubscriber::State s) noexcept;

/// What flush() found. `flushed`: everything published was handed to ZeroMQ and
/// acknowledged by every reliable and acknowledged subscriber, and no such subscriber
/// was forgotten, since the previous flush(), with events it never acknowledged.
/// Otherwise `unacknowledged` says who lacks what.
struct FlushResult {
  bool flushed = false;
  std::vector<UnacknowledgedSubscriber> unacknowledged;
  explicit operator bool() const noexcept { return flushed; }
  /// One line for a log or an error message: "2 subscribers did not acknowledge
  /// everything: 1a2b3c4d 'billing' (absent) lacks 120 events, ...".
  std::string describe() const;
};

/// An event whose handler kept failing, kept in the node's dead-letter store.
struct DeadLetter {
  std::uint64_t id = 0;  ///< unique within this node
  std::string topic;
  std::string payload;
  NodeId publisher;
  std::uint64_t epoch = 0;
  std::uint64_t sequence = 0;
  std::string event_id;
  std::string type_name;
  std::uint32_t type_version = 0;
  std::string correlation_id;
  std::string causation_id;
  std::string content_type;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string pattern;  ///< the subscription whose handler failed
  std::string reason;   ///< the last error
  unsigned attempts = 0;
  std::chrono::system_clock::time_point failed_at{};
};

/// A typed event: a struct with MSGPACK_DEFINE_MAP and, as static members, its name
/// and version (and optionally the topic it is published on, default: its name):
///
///     struct OrderPlaced {
///       static constexpr std::string_view event_name = "orders.placed";
///       static constexpr std::uint32_t event_version = 2;
///       std::string order_id;
///       double amount = 0;
///       MSGPACK_DEFINE_MAP(order_id, amount)
///     };
///
/// The typed members of Node below are defined in <meshbus/typed.hpp>; using one
/// without including it is a compile error that says so.
template <class T>
concept TypedEvent = requires {
  { T::event_name } -> std::convertible_to<std::string_view>;
  { T::event_version } -> std::convertible_to<std::uint32_t>;
} && std::is_default_constructible_v<T>;

/// The answer to a request: `return meshbus::Reply{"text"};` from a handler.
struct Reply {
  Reply() = default;
  Reply(std::string payload_bytes)  // NOLINT(google-explicit-constructor): a reply is its payload
      : payload(std::move(payload_bytes)) {}
  Reply(std::string payload_bytes, std::string type, std::uint32_t version)
      : payload(std::move(payload_bytes)), type_name(std::move(type)), type_version(version) {}

  std::string payload;
  std::string type_name;  ///< for typed replies
  std::uint32_t type_version = 0;
  NodeId responder;  ///< set by meshbus on the requester's side
  std::string_view text() const noexcept { return payload; }
};

/// How a request is made; typed and untyped requests take the same options.
struct RequestOptions {
  std::chrono::milliseconds timeout{5000};
  /// For untyped requests that carry a type; a typed request sets both to its type's.
  std::string_view type_name{};
  std::uint32_t type_version = 0;
  /// Default: the flow of the handler this is called from (as for publish), if any.
  std::string_view correlation_id{};
};

/// Serves one request. It gets the request as an Event: topic() is the service,
/// publisher() the requester, id() the request id, payload() and type_name() what
/// was sent. Throw to fail the request (the requester gets errc::remote_failure
/// with the message), or poison_event when it can never be handled
/// (errc::request_rejected). Runs on a handler thread, like event handlers.
using RequestHandler = std::function<Reply(const Event& request)>;
/// Completion of request_async: exactly one of `reply` and `failure` is set
/// (failure holds a meshbus::error). Runs on a handler thread.
using ReplyCallback = std::function<void(std::optional<Reply> reply, std::exception_ptr failure)>;

/// How a service is served (Node::serve).
struct ServeOptions {
  /// Run the service's requests on a thread of its own, one at a time in arrival
  /// order, instead of on the node's handler threads. For a service that handlers
  /// wait for — directly or through other nodes, as EventStore's replication — which
  /// busy handler threads must not hold up. At most 65536 requests wait; more are
  /// answered as failed ("queue full"; counted in Stats::requests_refused).
  bool own_thread = false;
};

/// Identifies a served service for unserve().
struct Service {
  std::uint64_t id = 0;
  explicit operator bool() const noexcept { return id != 0; }
};

using Handler = std::function<void(const Event&)>;
/// A durable subscription's handler whose writes commit with its position (see
/// Node::subscribe(pattern, TransactionalHandler, options)).
using TransactionalHandler = std::function<void(const Event&, Transaction&)>;
using PeerHandler = std::function<void(const PeerEvent&)>;
using LossHandler = std::function<void(const LossNotice&)>;

/// Identifies a subscription for unsubscribe().
struct Subscription {
  std::uint64_t id = 0;
  explicit operator bool() const noexcept { return id != 0; }
};

namespace detail {
template <class T>
inline constexpr bool typed_header_included = false;

/// Node's typed members are carried out by typed_node<T>, which <meshbus/typed.hpp>
/// defines (detail/typed_node.hpp) for every TypedEvent. Without that header only
/// this primary template exists, and its static_assert says what to include; the
/// stubs keep the compiler from piling further errors on top of it.
template <class T>
struct typed_node {
  static_assert(typed_header_included<T>,
                "meshbus: Node's typed members (publish/subscribe of a TypedEvent, typed request, "
                "request_async and serve) are defined in <meshbus/typed.hpp>: #include <meshbus/typed.hpp>");
  template <class... A>
  static PublishResult publish(A&&...) { return PublishResult::ok; }
  template <class... A>
  static Subscription subscribe(A&&...) { return {}; }
  template <class Rep, class... A>
  static std::future<Rep> request(A&&...) { return {}; }
  template <class Rep, class... A>
  static void request_async(A&&...) {}
  template <class Rep, class... A>
  static Service serve(A&&...) { return {}; }
};
}  // namespace detail

class Node {
 public:
  /// Binds, starts discovery and (in background mode) the threads.
  /// Throws meshbus::error: address_in_use, network, configuration.
  explicit Node(Options options = {});
  /// Stops (see stop()).
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  /// Publishes one event on `topic` (dot-separated segments, no wildcards).
  /// Throws meshbus::error: invalid_topic, message_too_large, invalid_argument, stopped.
  PublishResult publish(std::string_view topic, std::span<const std::byte> payload,
                        const PublishOptions& options = {});
  PublishResult publish(std::string_view topic, std::string_view text,
                        const PublishOptions& options = {});
  /// Publishes a typed event (MessagePack map, its type name and version in the
  /// envelope) on its topic, or on `topic`. Needs <meshbus/typed.hpp>.
  template <TypedEvent T>
  PublishResult publish(const T& event, const PublishOptions& options = {}) {
    return detail::typed_node<T>::publish(*this, event, options);
  }
  template <TypedEvent T>
  PublishResult publish(std::string_view topic, const T& event, const PublishOptions& options = {}) {
    return detail::typed_node<T>::publish(*this, topic, event, options);
  }

  /// Calls `handler` for every event whose topic matches `pattern`: `*` matches
  /// one segment, `**` any number (zero or more). Throws meshbus::error:
  /// invalid_topic, invalid_argument, stopped.
  Subscription subscribe(std::string_view pattern, Handler handler,
                         const SubscribeOptions& options = SubscribeOptions{});
  /// Typed subscription: `handler(const T&)` or `handler(const T&, const Event&)`, for
  /// events on T's topic or on `pattern`. Older versions are upcast (see
  /// register_upcaster); events that are of another type, newer than T, do not decode
  /// (the reason names the field) or fail validation never reach the handler: they
  /// are dead-lettered. Needs <meshbus/typed.hpp>.
  template <TypedEvent T, class F>
  Subscription subscribe(F&& handler, const SubscribeOptions& options = SubscribeOptions{}) {
    return detail::typed_node<T>::subscribe(*this, std::forward<F>(handler), options);
  }
  template <TypedEvent T, class F>
  Subscription subscribe(std::string_view pattern, F&& handler, const SubscribeOptions& options = SubscribeOptions{}) {
    return detail::typed_node<T>::subscribe(*this, pattern, std::forward<F>(handler), options);
  }
  /// A durable subscription (options.durable_name is required; Options::data_dir too)
  /// whose handler writes the node's key/values and publishes through a Transaction
  /// that commits atomically with the subscription's position, once per event (the
  /// inbox and outbox patterns): however the process ends, each event's writes happen
  /// exactly once, and what it published goes out once it committed. A handler that
  /// throws commits nothing (the delivery mode's retry rules apply).
  Subscription subscribe(std::string_view pattern, TransactionalHandler handler, const SubscribeOptions& options);

  // --- the node's key/values (Options::data_dir) ---
  /// True when the node has a durable log.
  bool durable() const noexcept;
  /// The value stored under `key`; throws error(storage) without a data directory
  /// or when the record is damaged.
  std::optional<std::string> stored(std::string_view key) const;
  /// Every key starting with `prefix`, in key order, with its value. Keys under
  /// "$saga/" (durable sagas) and "$es/" (the event store) are kept apart: only a
  /// prefix starting with one of them lists them.
  std::vector<std::pair<std::string, std::string>> stored_range(std::string_view prefix) const;
  /// At most `limit` of them, from the key `from` on (inclusive; empty: the first),
  /// or with `backward` from `from` down in reverse key order (empty: the last). A
  /// `from` outside `prefix` counts as empty. For paging through a large range.
  std::vector<std::pair<std::string, std::string>> stored_range(std::string_view prefix, std::string_view from,
                                                                std::size_t limit, bool backward = false) const;
  /// Runs `work` in a write transaction and commits it (synced as Options::durability
  /// says); events it publishes go out after the commit. Throws what `work` throws
  /// (nothing is written then), or error(storage) when the commit fails (a full disk:
  /// nothing is written). Keys starting with '$' are meshbus's own. One write
  /// transaction at a time per node: others wait; never call it from inside `work`.
  void transact(const std::function<void(Transaction&)>& work);

  /// After this returns no new call of the handler starts (one already running
  /// may finish). Unknown or already removed subscriptions are ignored.
  void unsubscribe(Subscription subscription);

  // --- request/reply: over ROUTER/DEALER, to one live instance of a service ---
  //
  // One verb pair, typed or not: request() and request_async() ask, serve() answers.
  // Commands and queries (CQRS) are typed requests - a command changes state, a
  // query only reads - and need no names of their own: a typed request without a
  // service goes to the service named after its type, so
  //     inventory.serve<ReserveStock, Reserved>([](const ReserveStock& c) { ... });
  //     auto reserved = shop.request<ReserveStock, Reserved>(ReserveStock{"apple", 3});
  // are a command handler and a command.

  /// Sends a request to one live instance of `service` (round robin over the
  /// instances, this node included). Fails at once with errc::no_service when none
  /// is alive; otherwise the future holds the reply or a meshbus::error: timeout,
  /// remote_failure, request_rejected, peer_gone, stopped.
  std::future<Reply> request(std::string_view service, std::span<const std::byte> payload,
                             const RequestOptions& options = RequestOptions{});
  std::future<Reply> request(std::string_view service, std::string_view text,
                             const RequestOptions& options = RequestOptions{});
  /// The same, completing through a callback on a handler thread.
  void request_async(std::string_view service, std::span<const std::byte> payload, ReplyCallback done,
                     const RequestOptions& options = RequestOptions{});
  void request_async(std::string_view service, std::string_view text, ReplyCallback done,
                     const RequestOptions& options = RequestOptions{});
  /// Serves `service` (a name with topic syntax) on this node; peers learn of it by
  /// HELLO and subscription updates. One handler per service per node. Throws
  /// meshbus::error: invalid_topic, invalid_argument (already served), stopped.
  Service serve(std::string_view service, RequestHandler handler);
  Service serve(std::string_view service, RequestHandler handler, const ServeOptions& options);
  void unserve(Service service);
  /// Live instances of `service` (this node included when it serves it).
  std::vector<NodeId> instances(std::string_view service) const;

  /// Typed request/reply (<meshbus/typed.hpp>): sends a Req to `service`, or to the
  /// service named after Req (Req::event_name), and expects a Rep. The same
  /// failures as above, plus errc::bad_reply for a reply that does not decode as Rep.
  template <TypedEvent Req, TypedEvent Rep>
  std::future<Rep> request(const Req& request, const RequestOptions& options = RequestOptions{}) {
    return detail::typed_node<Req>::template request<Rep>(*this, Req::event_name, request, options);
  }
  template <TypedEvent Req, TypedEvent Rep>
  std::future<Rep> request(std::string_view service, const Req& request,
                           const RequestOptions& options = RequestOptions{}) {
    return detail::typed_node<Req>::template request<Rep>(*this, service, request, options);
  }
  /// The same, completing through `done(std::optional<Rep> reply, std::exception_ptr
  /// failure)` on a handler thread (exactly one of the two is set).
  template <TypedEvent Req, TypedEvent Rep, class F>
  void request_async(const Req& request, F&& done, const RequestOptions& options = RequestOptions{}) {
    detail::typed_node<Req>::template request_async<Rep>(*this, Req::event_name, request, std::forward<F>(done),
                                                         options);
  }
  template <TypedEvent Req, TypedEvent Rep, class F>
  void request_async(std::string_view service, const Req& request, F&& done,
                     const RequestOptions& options = RequestOptions{}) {
    detail::typed_node<Req>::template request_async<Rep>(*this, service, request, std::forward<F>(done), options);
  }
  /// Serves typed requests on `service`, or on the service named after Req:
  /// `handler(const Req&)` or `handler(const Req&, const Event&)` returns a Rep. A
  /// request that does not decode as Req is rejected (errc::request_rejected).
  template <TypedEvent Req, TypedEvent Rep, class F>
  Service serve(F&& handler) {
    return detail::typed_node<Req>::template serve<Rep>(*this, Req::event_name, std::forward<F>(handler));
  }
  template <TypedEvent Req, TypedEvent Rep, class F>
  Service serve(std::string_view service, F&& handler) {
    return detail::typed_node<Req>::template serve<Rep>(*this, service, std::forward<F>(handler));
  }

  /// Peer joined / suspect / alive again / left, on a handler thread. Replaces
  /// any previous peer handler.
  void on_peer(PeerHandler handler);
  /// Events that will never arrive (see LossNotice), on a handler thread. Every loss
  /// is also counted in Stats::events_lost. Replaces any previous loss handler.
  void on_loss(LossHandler handler);

  /// The dead-letter store: events whose acknowledged handler kept failing (bounded
  /// by Options::dead_letter_capacity; the oldest go first, counted). With a data
  /// directory it is kept in the durable log, so a restarted node still holds them.
  std::vector<DeadLetter> dead_letters() const;
  /// Delivers a dead letter again to the subscription that failed it (max_deliver
  /// fresh attempts); for one kept from an earlier run of the node, to the
  /// subscription that now has the same pattern, durable name and group. It leaves
  /// the store once handled; if its handler fails again, it is dead-lettered again
  /// under a new id, which replaces it. False when no dead letter has that id or
  /// there is no such subscription (the letter stays).
  bool replay_dead_letter(std::uint64_t id);
  /// Asks the node `node` to replay its dead letter `id` (as replay_dead_letter() does
  /// there). Its answer is an event on "$meshbus.dlq.replayed" with headers "dlq-node",
  /// "dlq-id" and "dlq-result" ("replayed" or "unknown"). Every node answers these
  /// requests; this is how `meshbus dlq replay` works.
  PublishResult request_dead_letter_replay(const NodeId& node, std::uint64_t id);

  /// Asks every node for the events it holds of flow `correlation_id`: those whose
  /// correlation id it is, and the event whose id it is (the flow's first event). Each
  /// node answers with events on `reply_topic`, which must be "$meshbus.trace.reply" or
  /// a topic below it (subscribe to it first): records in chunks, then one "done" with
  /// `request_id`, the count and whether that was all (docs/protocol.md §10). Every
  /// node answers these requests; this is how `meshbus trace` works. Throws
  /// error(invalid_argument) for an empty correlation id, one over 255 bytes, or
  /// another reply topic.
  PublishResult request_trace(std::string_view correlation_id, std::string_view reply_topic,
                              std::uint64_t request_id);

  /// Waits until at least `count` peers are ready subscribers of `topic` (their
  /// subscriptions are in effect at this node's PUB socket, so nothing published
  /// from now on misses them). False on timeout.
  bool wait_for_subscribers(std::string_view topic, std::size_t count,
                            std::chrono::milliseconds timeout);
  /// Waits until at least `count` peers have joined. False on timeout.
  bool wait_for_peers(std::size_t count, std::chrono::milliseconds timeout);
  /// Waits until everything published so far is held by every reliable subscriber
  /// (and processed by every acknowledged one), as their acks say; with only
  /// best-effort subscribers, until it is handed to ZeroMQ. A subscriber declared gone
  /// without a goodbye still counts while it may come back (Options::peer_resume):
  /// flush() waits for it. Converts to false on timeout, and when a subscriber was
  /// forgotten since the last flush() with events it never acknowledged (each such
  /// subscriber is reported once); `unacknowledged` then says who lacks how many.
  FlushResult flush(std::chrono::milliseconds timeout);

  /// Runs one round of the I/O loop (waiting up to `timeout` for input) and then
  /// every pending handler, on this thread. Only with background_thread = false.
  /// Returns how many inputs and handler batches were processed.
  std::size_t poll_once(std::chrono::milliseconds timeout = std::chrono::milliseconds(0));

  /// Flushes (bounded by Options::linger), says goodbye to peers, stops the threads.
  /// Handlers already queued still run. Idempotent.
  void stop();
  bool stopped() const noexcept;

  Stats stats() const;
  std::vector<PeerInfo> peers() const;
  /// This node's report: its statistics, peers, streams with their rates, the
  /// subscribers behind on its streams and its latency histograms (meshbus/report.hpp).
  /// Built on the I/O thread; rates are over the time since the previous report. With
  /// Options::background_thread = false, call it (and reports()) on the thread that
  /// calls poll_once(): that thread is the I/O thread.
  NodeReport report();
  /// The reports of this node (first) and of every live peer that answers within
  /// `timeout`; the others are listed as unanswered. What `meshbus stats` and `meshbus
  /// top` show. Peers answer each asker at most 10 times a second (burst 20).
  MeshReport reports(std::chrono::milliseconds timeout = std::chrono::milliseconds(2000));
  /// The configured seeds (Options::seeds, MESHBUS_PEERS) and where each stands.
  std::vector<SeedInfo> seeds() const;
  const NodeId& id() const noexcept;
  std::uint64_t epoch() const noexcept;
  const std::string& name() const noexcept;
  const std::string& cluster() const noexcept;
  /// The address the sockets are bound to and their ports.
  const std::string& bind_address() const noexcept;
  std::uint16_t router_port() const noexcept;
  std::uint16_t pub_port() const noexcept;
  std::uint16_t beacon_port() const noexcept;
  /// The level of this node's logger (Options::log_level), from now on. With an
  /// application's logger (Options::logger), that logger's level: it is shared.
  void set_log_level(LogLevel level);
  /// The port of the metrics endpoint (Options::metrics_address); 0 when it is off.
  std::uint16_t metrics_port() const noexcept;

 private:
  template <class T>
  friend struct detail::typed_node;

  // Completes on the I/O thread, for the typed future form: a future's get() may be
  // called on a handler thread, which must not be the one that completes it.
  void request_on_io_thread(std::string_view service, std::span<const std::byte> payload, ReplyCallback done,
                            const RequestOptions& options);

  std::unique_ptr<detail::node_impl> impl_;
};

}  // namespace meshbus
