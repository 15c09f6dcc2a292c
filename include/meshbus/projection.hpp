/// @file
/// meshbus::Projection<Doc> — the read side (CQRS): a read model of documents kept up
/// to date from the events of an EventStore, queried while it follows.
///
///     struct OrderRow {                              // a document: MessagePack
///       std::string status;
///       int items = 0;
///       MSGPACK_DEFINE_MAP(status, items)
///     };
///     meshbus::Projection<OrderRow> by_status(store, "orders-by-status", {.categories = {"order"}});
///     by_status.on<OrderPlaced>([](const OrderPlaced& e, const meshbus::RecordedEvent& r, auto& docs) {
///       docs.put(r.stream, OrderRow{"placed", e.items});
///     });
///     by_status.on<OrderShipped>([](const OrderShipped&, const meshbus::RecordedEvent& r, auto& docs) {
///       auto row = docs.get(r.stream).value_or(OrderRow{});
///       row.status = "shipped";
///       docs.put(r.stream, row);
///     });
///     by_status.on_query<CountByStatus, StatusCount>([](const CountByStatus& q, const auto& view) { ... });
///     by_status.start();
///
/// Following
/// ---------
/// A projection follows its store by position (read_all): it catches up from where its
/// checkpoint stands, then goes on with each new commit. Its documents' writes and its
/// checkpoint commit together, in one transaction per run of events (at most
/// ProjectionOptions::batch): after any crash it resumes at the next event, each event
/// applied exactly once. Catch-up and live are one walk over one sequence of positions,
/// so there is no seam to lose or repeat an event at. Events of other categories, and
/// of types the projection has no on<E>() for, are passed over.
///
/// Why the store and not a subscription: positions in one store are a total order over
/// every stream it holds (with replication, every instance's), while a subscription
/// orders events per publisher only and a node does not replay its own history to its
/// own subscriptions.
///
/// Rebuilding
/// ----------
/// rebuild() builds a new generation of the read model from position 1 beside the one
/// that serves; queries go on being answered by the old one until the new one has
/// caught up, then the new one serves and the old one's documents are deleted.
///
/// A handler that throws
/// ---------------------
/// The run of events is rolled back and the failing event retried alone, up to
/// max_attempts times with a doubling backoff. Then the projection stops at that
/// position: stats().failure names the event and the reason, on_error is told, the
/// failure is kept in the log (a restarted projection retries it), and resume()
/// tries again after a fix. An event is never skipped silently. An event that does not
/// decode as its handler's type fails the same way.
///
/// Lag: stats().lag_events (positions not yet applied) and lag_ms (how long ago the
/// oldest of them was recorded).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "meshbus/event_store.hpp"
#include "meshbus/transaction.hpp"
#include "meshbus/typed.hpp"

namespace meshbus {

struct ProjectionOptions {
  /// The categories followed; empty: all.
  std::vector<std::string> categories{};
  /// Events applied in one transaction, at most.
  std::size_t batch = 256;
  /// Calls of a handler for one event before the projection stops at it.
  unsigned max_attempts = 5;
  /// The wait before the first retry; it doubles for each further one.
  std::chrono::milliseconds retry_backoff{50};
  /// Told when the projection stops at an event (from the projection's thread).
  std::function<void(const std::string& failure)> on_error{};
};

struct ProjectionStats {
  std::uint64_t generation = 0;   ///< of the read model that serves
  std::uint64_t checkpoint = 0;   ///< the last position applied (or passed over)
  std::uint64_t applied = 0;      ///< events handed to handlers in this run
  std::uint64_t lag_events = 0;   ///< positions in the store after the checkpoint
  std::uint64_t lag_ms = 0;       ///< age of the oldest of them (0: caught up)
  std::uint64_t retries = 0;      ///< handler calls repeated after a throw
  std::uint64_t rebuilds = 0;     ///< generations that took over in this run
  bool rebuilding = false;        ///< a new generation is being built
  bool stopped = false;           ///< stopped at a failing event (see failure)
  std::string failure;            ///< which event, and why ("" when running)
};

namespace detail {

/// The part of Projection that does not depend on Doc (lib/toolkit/projection.cpp):
/// generations, following, checkpoints, retries, rebuilds.
class projection_core {
 public:
  /// Applies one event, writing documents under `doc_prefix` in `tx`; returns false
  /// for an event it has no handler for.
  using apply_fn = std::function<bool(const RecordedEvent&, Transaction&, const std::string& doc_prefix)>;

  projection_core(EventStore& store, std::string name, ProjectionOptions options, apply_fn apply);
  ~projection_core();
  projection_core(const projection_core&) = delete;
  projection_core& operator=(const projection_core&) = delete;

  void start();
  void stop();
  void resume();
  std::future<void> rebuild();
  bool wait_caught_up(std::chrono::milliseconds timeout) const;
  /// "$proj/<name>/<generation>/d/": where the serving generation's documents are.
  std::string doc_prefix() const;
  ProjectionStats stats() const;
  EventStore& store() const noexcept;
  const std::string& name() const noexcept;

 private:
  class impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace detail

template <typename Doc>
class Projection {
  static_assert(std::is_default_constructible_v<Doc>, "meshbus::Projection<Doc>: Doc must be default-constructible");

 public:
  /// The documents of one generation, as a handler writes them (in its transaction).
  class Documents {
   public:
    std::optional<Doc> get(std::string_view key) { return decode_opt(tx_.get(prefix_ + std::string(key)), key); }
    void put(std::string_view key, const Doc& doc) { tx_.put(prefix_ + std::string(key), encode(doc)); }
    void erase(std::string_view key) { tx_.erase(prefix_ + std::string(key)); }

   private:
    friend class Projection;
    Documents(Transaction& tx, const std::string& prefix) : tx_(tx), prefix_(prefix) {}
    Transaction& tx_;
    const std::string& prefix_;
  };

  /// The serving generation's documents, read-only (queries).
  class View {
   public:
    std::optional<Doc> get(std::string_view key) const { return owner_.get(key); }
    std::vector<std::pair<std::string, Doc>> list(std::string_view key_prefix = {}, std::size_t max = 10000) const {
      return owner_.list(key_prefix, max);
    }

   private:
    friend class Projection;
    explicit View(const Projection& owner) : owner_(owner) {}
    const Projection& owner_;
  };

  /// Keys are kept under "$proj/<name>/" in the node's log; `name` is a topic-like
  /// name (letters, digits, '.', '-', '_').
  Projection(EventStore& store, std::string name, ProjectionOptions options = {})
      : core_(store, std::move(name), std::move(options),
              [this](const RecordedEvent& e, Transaction& tx, const std::string& prefix) {
                return apply(e, tx, prefix);
              }) {}

  /// How an event of type E changes the documents: fn(const E&, const RecordedEvent&, Documents&).
  template <TypedEvent E, typename F>
  Projection& on(F&& fn) {
    static_assert(std::is_invocable_v<F&, const E&, const RecordedEvent&, Documents&>,
                  "on<E>(fn): fn(const E&, const meshbus::RecordedEvent&, Projection<Doc>::Documents&)");
    handlers_[std::string(E::event_name)] = [fn = std::forward<F>(fn)](const RecordedEvent& e, Documents& docs) mutable {
      fn(e.as<E>(), e, docs);
    };
    return *this;
  }

  /// Answers the typed query Q (a request to the service named after Q) with
  /// fn(const Q&, const View&) -> R, from the serving generation.
  template <TypedEvent Q, TypedEvent R, typename F>
  Service on_query(F&& fn) {
    static_assert(std::is_invocable_r_v<R, F&, const Q&, const View&>, "on_query<Q, R>(fn): R fn(const Q&, const View&)");
    return core_.store().node().template serve<Q, R>(
        [this, fn = std::forward<F>(fn)](const Q& q) mutable { return fn(q, View(*this)); });
  }

  /// Starts following (handlers registered first). Idempotent.
  void start() { core_.start(); }
  /// Stops following; the documents stay and serve.
  void stop() { core_.stop(); }
  /// After a failure: tries the failing event again.
  void resume() { core_.resume(); }
  /// Builds a fresh generation from the beginning while this one serves; the future
  /// is ready once it serves (or holds why it could not be built).
  std::future<void> rebuild() { return core_.rebuild(); }
  /// True once the checkpoint has reached the store's last position.
  bool wait_caught_up(std::chrono::milliseconds timeout) const { return core_.wait_caught_up(timeout); }

  std::optional<Doc> get(std::string_view key) const {
    return decode_opt(core_.store().node().stored(core_.doc_prefix() + std::string(key)), key);
  }
  /// The serving generation's documents whose key starts with `key_prefix`, in key order.
  std::vector<std::pair<std::string, Doc>> list(std::string_view key_prefix = {}, std::size_t max = 10000) const {
    const auto prefix = core_.doc_prefix();
    std::vector<std::pair<std::string, Doc>> out;
    for (auto& [k, v] : core_.store().node().stored_range(prefix + std::string(key_prefix), {}, max)) {
      auto key = k.substr(prefix.size());
      out.emplace_back(key, decode(v, key));
    }
    return out;
  }
  View view() const { return View(*this); }
  ProjectionStats stats() const { return core_.stats(); }
  const std::string& name() const noexcept { return core_.name(); }

 private:
  bool apply(const RecordedEvent& e, Transaction& tx, const std::string& prefix) {
    const auto h = handlers_.find(e.type_name);
    if (h == handlers_.end()) return false;
    Documents docs(tx, prefix);
    h->second(e, docs);
    return true;
  }

  static std::string encode(const Doc& doc) {
    msgpack::sbuffer b;
    msgpack::pack(b, doc);
    return std::string(b.data(), b.size());
  }
  static Doc decode(const std::string& bytes, std::string_view key) {
    try {
      auto h = msgpack::unpack(bytes.data(), bytes.size());
      Doc d{};
      h.get().convert(d);
      return d;
    } catch (const std::exception& e) {
      throw error(errc::storage, "the projection document '" + std::string(key) + "' does not decode: " + e.what());
    }
  }
  static std::optional<Doc> decode_opt(const std::optional<std::string>& bytes, std::string_view key) {
    if (!bytes) return std::nullopt;
    return decode(*bytes, key);
  }

  std::map<std::string, std::function<void(const RecordedEvent&, Documents&)>, std::less<>> handlers_;
  detail::projection_core core_;  // last: its thread stops before the handlers go
};

}  // namespace meshbus
