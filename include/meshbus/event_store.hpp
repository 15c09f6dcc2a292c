/// @file
/// meshbus::EventStore — event sourcing in a node's durable log (Options::data_dir):
/// streams of events per aggregate, appended with optimistic concurrency, read
/// forward, backward and all together by position, and published on the mesh
/// atomically with the append.
///
///     meshbus::Node node({.name = "orders", .data_dir = "/var/lib/orders"});
///     meshbus::EventStore store(node);
///     auto v = store.append("order-42", meshbus::ExpectedVersion::no_stream(), OrderPlaced{"42", 3});
///     store.append("order-42", meshbus::ExpectedVersion::exactly(v), OrderShipped{"42"});
///     for (const auto& e : store.read("order-42")) ...
///
/// Streams and versions
/// --------------------
/// A stream is named "<category>-<id>" (the category is what comes before the first
/// '-', and is a topic: "order", "shop.order"); the id is any text without NUL bytes.
/// A stream's version counts its events: its first event is version 1, and a stream
/// that does not exist is at version 0. Every appended event also gets the next
/// position of the node's store (1, 2, ...), the order of read_all().
///
/// Optimistic concurrency
/// ----------------------
/// append() takes what the writer expects of the stream (ExpectedVersion, as
/// EventStoreDB has it): any(), no_stream(), stream_exists() or exactly(v). When
/// the stream is elsewhere, nothing is appended and append() throws
/// meshbus::wrong_expected_version, which carries the stream's actual version. Of two
/// writers that loaded version v and append with exactly(v), one wins and the other
/// gets wrong_expected_version (and reloads). This holds for the appends made through
/// one node's store; which node writes an aggregate is the business of ownership.
///
/// Publishing, atomically
/// ----------------------
/// Each appended event is also published (EventStoreOptions::publish) on its
/// category's topic ("<topic_prefix>.<category>"), with its type name and version,
/// event id "<stream>@<version>" unless the event brought its own, and headers
/// "es-stream", "es-version" and "es-position". It goes out of the same write
/// transaction's outbox (<meshbus/transaction.hpp>): only once the append committed,
/// and still after a crash in between (then possibly twice, with the same event id,
/// which acknowledged subscribers drop). Never one without the other.
///
/// Durability and throughput
/// -------------------------
/// Appends waiting at the same time are committed together in one write transaction
/// (one sync under Durability::always): append() returns once its events are synced
/// as Options::durability says. append_async() lets one thread keep many appends in
/// flight, which is what fills a commit.
///
/// Threading: every member may be called from any thread, handlers included. An
/// event appended from a handler carries that handler's flow (correlation id, and the
/// handled event as causation) unless it has its own.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <future>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "meshbus/error.hpp"
#include "meshbus/node.hpp"
#include "meshbus/typed.hpp"

namespace meshbus {

/// What an append expects of its stream.
struct ExpectedVersion {
  enum class Kind : std::uint8_t {
    any,            ///< no check
    no_stream,      ///< the stream has no events yet (version 0)
    stream_exists,  ///< the stream has at least one event
    exact,          ///< the stream is at `version` (0: no stream)
  };
  Kind kind = Kind::any;
  std::uint64_t version = 0;

  static constexpr ExpectedVersion any() noexcept { return {Kind::any, 0}; }
  static constexpr ExpectedVersion no_stream() noexcept { return {Kind::no_stream, 0}; }
  static constexpr ExpectedVersion stream_exists() noexcept { return {Kind::stream_exists, 0}; }
  static constexpr ExpectedVersion exactly(std::uint64_t v) noexcept { return {Kind::exact, v}; }
  /// True when a stream at version `actual` is what this expects.
  constexpr bool admits(std::uint64_t actual) const noexcept {
    switch (kind) {
      case Kind::any: return true;
      case Kind::no_stream: return actual == 0;
      case Kind::stream_exists: return actual > 0;
      case Kind::exact: return actual == version;
    }
    return false;
  }
  /// "any", "no stream", "an existing stream" or "version N".
  std::string describe() const;
};

/// An append found its stream at another version than it expected: nothing was
/// appended. code_value() is errc::wrong_expected_version.
class wrong_expected_version : public error {
 public:
  wrong_expected_version(std::string stream, ExpectedVersion expected, std::uint64_t actual);
  const std::string& stream() const noexcept { return stream_; }
  ExpectedVersion expected() const noexcept { return expected_; }
  /// The stream's version when the append was refused (0: no stream).
  std::uint64_t actual_version() const noexcept { return actual_; }

 private:
  std::string stream_;
  ExpectedVersion expected_;
  std::uint64_t actual_ = 0;
};

/// An event to append.
struct NewEvent {
  std::string type_name;  ///< required: the event's type
  std::uint32_t type_version = 0;
  std::string payload;
  /// Default: "<stream>@<version>". An explicit id is kept as it is.
  std::string event_id;
  /// Default: the flow of the handler append() is called from, if any.
  std::string correlation_id;
  std::string causation_id;
  std::vector<std::pair<std::string, std::string>> headers;

  /// A typed event, encoded as Node::publish encodes it.
  template <TypedEvent T>
  static NewEvent of(const T& event) {
    NewEvent e;
    e.type_name = std::string(T::event_name);
    e.type_version = T::event_version;
    e.payload = encode_event(event);
    return e;
  }
};

/// An event as the store recorded it.
struct RecordedEvent {
  std::string stream;
  std::uint64_t version = 0;   ///< in its stream, from 1
  std::uint64_t position = 0;  ///< in the node's store, from 1
  std::string event_id;
  std::string type_name;
  std::uint32_t type_version = 0;
  std::string payload;
  std::string correlation_id;
  std::string causation_id;
  std::chrono::system_clock::time_point recorded_at{};
  std::vector<std::pair<std::string, std::string>> headers;

  /// True when this is an event of T's type (any version).
  template <TypedEvent T>
  bool is() const noexcept {
    return type_name == T::event_name;
  }
  /// Decodes it as T, through the registered upcasters (register_upcaster). Throws
  /// poison_event with the reason when it cannot (another type, a newer version, a
  /// field that does not decode, a failed validation).
  template <TypedEvent T>
  T as() const {
    return decode_event<T>(std::as_bytes(std::span(payload.data(), payload.size())), type_name, type_version);
  }
};

/// A stored state of one stream at one version (Aggregate keeps them).
struct Snapshot {
  std::uint64_t version = 0;        ///< the stream's version the state is at
  std::uint32_t state_version = 0;  ///< the version of the state's layout
  std::string state;                ///< its bytes
};

struct EventStoreOptions {
  /// Events are published on "<topic_prefix>.<category>", or on "<category>" when
  /// this is empty.
  std::string topic_prefix{};
  /// False: appended events are stored only, not published.
  bool publish = true;
  /// Appends committed together: at most this many events in one write transaction.
  std::size_t max_commit_events = 4096;
  /// Appends waiting for their commit, at most (append() blocks for room; the
  /// overflow policy is to wait, never to drop).
  std::size_t max_pending_appends = 65536;

  // --- replication among the instances of a service (docs/event_sourcing.md) ---
  /// The service whose instances share the streams ("orders"): each instance's store
  /// replicates the streams it owns to the others, and commands for an aggregate go to
  /// its owner (Aggregate::handle / send). Empty: this store is on its own.
  std::string service{};
  /// With a service: an append returns once this many other instances hold its events
  /// durably (as Kafka's min.insync.replicas), or fails with
  /// error(not_enough_replicas) — never a silent downgrade. 0: no replication.
  unsigned replicas = 0;
  /// How long an append or a takeover waits for the other instances.
  std::chrono::milliseconds replication_timeout{5000};
};

/// Counters of one EventStore.
struct EventStoreStats {
  std::uint64_t appends = 0;          ///< appends committed
  std::uint64_t events_appended = 0;  ///< events those appends held
  std::uint64_t commits = 0;          ///< write transactions (each with one or more appends)
  std::uint64_t wrong_expected_version = 0;  ///< appends refused for their expected version
  std::uint64_t append_failures = 0;  ///< appends that failed for the store (full disk, ...)
  std::uint64_t not_enough_replicas = 0;  ///< appends refused for want of acknowledging replicas
  std::uint64_t fenced = 0;           ///< appends refused because another instance took the stream over
  std::uint64_t takeovers = 0;        ///< streams this instance claimed (a new term)
  std::uint64_t replicated_in = 0;    ///< events written here as another owner's replica
  /// events fetched from another instance on its (re)joining: appended while this one was away
  std::uint64_t synced_in = 0;
  std::uint64_t replication_malformed = 0;  ///< replication requests that did not decode (dropped)
};

class EventStore {
 public:
  /// Throws error(invalid_argument) when `node` has no durable log (Options::data_dir).
  explicit EventStore(Node& node, EventStoreOptions options = {});
  /// Waits for the appends in flight.
  ~EventStore();
  EventStore(const EventStore&) = delete;
  EventStore& operator=(const EventStore&) = delete;

  /// Appends `events` to `stream` if it is at the version `expected` admits, in one
  /// atomic step, and returns the stream's new version. Throws
  /// wrong_expected_version (nothing appended), error(invalid_argument) for a bad
  /// stream name, an empty list, an event without a type or of a type its category
  /// was not declared with, error(storage) when the log cannot be written (nothing
  /// appended), error(stopped) after the node stopped.
  std::uint64_t append(std::string_view stream, std::span<const NewEvent> events,
                       ExpectedVersion expected = ExpectedVersion::any());
  /// Typed events: `store.append("order-42", ExpectedVersion::exactly(3), Shipped{...}, Paid{...})`.
  template <TypedEvent... T>
  std::uint64_t append(std::string_view stream, ExpectedVersion expected, const T&... events) {
    const NewEvent list[] = {NewEvent::of(events)...};
    return append(stream, std::span<const NewEvent>(list), expected);
  }
  /// The same, returning at once: the future holds the new version or the error.
  /// Checks of the arguments throw here, before anything is queued.
  std::future<std::uint64_t> append_async(std::string_view stream, std::vector<NewEvent> events,
                                          ExpectedVersion expected = ExpectedVersion::any());

  /// Refuses, from now on, appends of other event types to streams of `category`.
  /// Aggregate declares its category with the types it applies.
  void declare_category(std::string_view category, std::vector<std::string> type_names);

  /// The stream's version (0: no stream).
  std::uint64_t version(std::string_view stream) const;
  /// Events of `stream` from version `from` on, at most `max` of them, oldest first.
  std::vector<RecordedEvent> read(std::string_view stream, std::uint64_t from = 1,
                                  std::size_t max = std::numeric_limits<std::size_t>::max()) const;
  /// Events of `stream` from version `from` down (default: its last), newest first.
  std::vector<RecordedEvent> read_backward(std::string_view stream,
                                           std::uint64_t from = std::numeric_limits<std::uint64_t>::max(),
                                           std::size_t max = std::numeric_limits<std::size_t>::max()) const;
  /// Every stream's events together, from position `from` on, in the order they
  /// were appended.
  std::vector<RecordedEvent> read_all(std::uint64_t from = 1, std::size_t max = 1000) const;
  /// The position of the last event appended (0: none).
  std::uint64_t last_position() const;
  /// Waits until an event past `position` is in the store, at most `timeout`;
  /// returns last_position() (Projection follows the store with it).
  std::uint64_t wait_past(std::uint64_t position, std::chrono::milliseconds timeout) const;

  /// Snapshots (one per stream, the last saved): written by Aggregate.
  void save_snapshot(std::string_view stream, const Snapshot& snapshot);
  std::optional<Snapshot> snapshot(std::string_view stream) const;

  // --- ownership (with EventStoreOptions::service) ---
  /// The live instances of the service, this one included, in id order.
  std::vector<NodeId> members() const;
  /// The instance that owns `stream` among the live members: rendezvous hashing, so a
  /// change of members moves only the streams of the instance that came or went.
  /// Without a service: this node.
  NodeId owner_of(std::string_view stream) const;
  /// Handles requests of type `type_name` sent to this instance: at its own address
  /// (request_to) or to the service's command service, which every instance serves
  /// (Aggregate::handle registers its commands here). The handler can tell them
  /// apart by Event::topic(): command_service() for the latter. An empty handler
  /// removes the type's. Handlers run one at a time on a thread of the store's own for
  /// each of the two addresses, never on the node's handler threads: an event handler
  /// may send a command and wait for its reply.
  void on_request(std::string type_name, RequestHandler handler);
  /// "<service>.command": where clients send commands (any instance takes them and
  /// forwards each to its aggregate's owner). Empty without a service.
  std::string command_service() const;
  /// Sends a request to one instance of the service, at its own address.
  Reply request_to(const NodeId& instance, std::span<const std::byte> payload, const RequestOptions& options) const;

  /// "order" for "order-42"; throws error(invalid_argument) for a bad stream name.
  static std::string category_of(std::string_view stream);
  /// The topic the events of `category` are published on.
  std::string topic_of(std::string_view category) const;
  Node& node() const noexcept;
  EventStoreStats stats() const;

 private:
  class impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace meshbus
