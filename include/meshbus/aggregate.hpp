/// @file
/// meshbus::Aggregate<State> — event-sourced aggregates on an EventStore: typed apply
/// functions rebuild the state from its events, commands decide new events against
/// the version they loaded, and snapshots every N events keep loads short.
///
///     struct Cart {                         // the state: MessagePack, for snapshots
///       std::map<std::string, int> items;
///       bool closed = false;
///       MSGPACK_DEFINE_MAP(items, closed)
///     };
///     meshbus::Aggregate<Cart> carts(store, "cart", {.snapshot_every = 100});
///     carts.apply<ItemAdded>([](Cart& c, const ItemAdded& e) { c.items[e.sku] += e.quantity; });
///     carts.apply<CartClosed>([](Cart& c, const CartClosed&) { c.closed = true; });
///
///     auto r = carts.execute("42", [](const Cart& c, meshbus::Changes& out) {
///       if (c.closed) throw std::runtime_error("cart 42 is closed");
///       out.emit(ItemAdded{"apple", 2});
///     });                                   // r.version, r.state
///     auto cart = carts.load("42");         // cart.state, cart.version
///
/// Loading
/// -------
/// load(id) reads the stream "<category>-<id>": the latest snapshot, if there is a usable
/// one, and the events after it, applied in order. Each event is decoded as the type its
/// apply function takes, through the registered upcasters (register_upcaster), so old
/// event versions become current ones. An event that does not decode, or of a type
/// with no apply function, makes load() throw poison_event naming the stream, the
/// version and the reason: an aggregate is never rebuilt with an event left out.
///
/// Commands
/// --------
/// execute(id, decide) loads the aggregate, calls decide(state, changes), and appends
/// what decide emitted with ExpectedVersion::exactly(the version it loaded): the
/// decision is made on the state it is appended after, or not at all. When another
/// writer appended in between, the command is decided again on the new state, at most
/// AggregateOptions::max_retries times; then wrong_expected_version reaches the caller.
/// What decide throws reaches the caller as it is (nothing appended). A decision that
/// emits nothing appends nothing.
///
/// Snapshots
/// ---------
/// With snapshot_every = N, a command whose events carry the stream past a multiple of
/// N saves the state (MessagePack of State) with the stream's version and
/// AggregateOptions::state_version. A snapshot is a cache, never the truth: one of an
/// older state version goes through the function given to upcast_snapshot<Old>() for
/// that version, or is ignored; one that does not decode, or is ahead of the stream, is
/// ignored; in each case the state is rebuilt from the events (counted in
/// AggregateStats::snapshots_ignored).
///
/// Threading: apply() and upcast_snapshot() before use; load() and execute() from any
/// thread. Two execute() of one aggregate at once are safe (optimistic concurrency);
/// one writer per aggregate (ownership) avoids the retries.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "meshbus/event_store.hpp"
#include "meshbus/typed.hpp"

namespace meshbus {

struct AggregateOptions {
  /// Save a snapshot each time a command carries the stream past a multiple of this
  /// many events; 0: no snapshots. Needs a State MessagePack can pack (MSGPACK_DEFINE_MAP).
  std::uint64_t snapshot_every = 0;
  /// The version of State's layout, stored with each snapshot: raise it when State
  /// changes, and register upcast_snapshot<OldState>() or let old snapshots be ignored.
  std::uint32_t state_version = 1;
  /// execute(): how many times a command is decided again after a concurrent append.
  unsigned max_retries = 3;
};

/// Counters of one Aggregate.
struct AggregateStats {
  std::uint64_t loads = 0;
  std::uint64_t events_applied = 0;     ///< by loads
  std::uint64_t snapshots_used = 0;     ///< loads that started from a snapshot
  std::uint64_t snapshots_ignored = 0;  ///< snapshots not usable (decode, version, ahead)
  std::uint64_t snapshots_saved = 0;
  std::uint64_t snapshot_failures = 0;  ///< snapshots the log could not write (the command stood)
  std::uint64_t commands = 0;           ///< decisions made (execute() calls and their retries)
  std::uint64_t conflicts = 0;          ///< decisions made again after a concurrent append
};

/// The events a command decides (execute's second argument).
class Changes {
 public:
  template <TypedEvent E>
  Changes& emit(const E& event) {
    events_.push_back(NewEvent::of(event));
    return *this;
  }
  /// An event with its own id, headers or flow.
  Changes& emit(NewEvent event) {
    events_.push_back(std::move(event));
    return *this;
  }
  const std::vector<NewEvent>& events() const noexcept { return events_; }
  bool empty() const noexcept { return events_.empty(); }

 private:
  std::vector<NewEvent> events_;
};

template <typename State>
class Aggregate {
 public:
  static_assert(std::is_default_constructible_v<State> && std::is_copy_constructible_v<State>,
                "meshbus::Aggregate<State>: State must be default- and copy-constructible");

  /// An aggregate's state as loaded.
  struct Loaded {
    std::string stream;
    State state{};
    std::uint64_t version = 0;           ///< 0: no events yet
    std::uint64_t snapshot_version = 0;  ///< the snapshot it started from (0: none)
    std::uint64_t events_applied = 0;    ///< events applied after it
  };
  /// What execute() did.
  struct Result {
    State state{};              ///< after the command's events
    std::uint64_t version = 0;  ///< the stream's version after them
    std::size_t appended = 0;   ///< events appended (0: the decision emitted none)
  };

  /// Streams "<category>-<id>". Throws error(invalid_argument) for a category that is
  /// not one, and for snapshots asked of a State MessagePack cannot pack.
  Aggregate(EventStore& store, std::string category, AggregateOptions options = {})
      : store_(store), category_(std::move(category)), options_(options) {
    (void)EventStore::category_of(category_ + "-x");  // validates the category
    if constexpr (!packable) {
      if (options_.snapshot_every > 0) {
        throw error(errc::invalid_argument,
                    "Aggregate '" + category_ +
                        "': snapshots need a State MessagePack can pack (give it MSGPACK_DEFINE_MAP)");
      }
    }
  }

  /// Stops serving the commands handle() registered (requests arriving after that
  /// are rejected; destroy an Aggregate after its traffic stopped).
  ~Aggregate() {
    for (const auto& name : commands_) store_.on_request(name, nullptr);
  }
  Aggregate(const Aggregate&) = delete;
  Aggregate& operator=(const Aggregate&) = delete;

  /// How an event of type E changes the state. Declares E as a type of the category in
  /// the store (appends of undeclared types to its streams are refused).
  template <TypedEvent E, typename F>
  Aggregate& apply(F&& fn) {
    static_assert(std::is_invocable_v<F&, State&, const E&>, "apply<E>(fn): fn(State&, const E&)");
    appliers_[std::string(E::event_name)] = [fn = std::forward<F>(fn)](State& s, const RecordedEvent& e) mutable {
      fn(s, e.as<E>());
    };
    store_.declare_category(category_, {std::string(E::event_name)});
    return *this;
  }

  /// How a snapshot of State layout `from_state_version` (packed from Old) becomes a
  /// State. Without one, such snapshots are ignored and the state rebuilt from events.
  template <typename Old, typename F>
  Aggregate& upcast_snapshot(std::uint32_t from_state_version, F&& fn) {
    static_assert(std::is_invocable_r_v<State, F&, const Old&>, "upcast_snapshot<Old>(v, fn): State fn(const Old&)");
    snapshot_upcasters_[from_state_version] = [fn = std::forward<F>(fn)](const msgpack::object& o) mutable {
      Old old{};
      o.convert(old);
      return fn(old);
    };
    return *this;
  }

  std::string stream_of(std::string_view id) const { return category_ + "-" + std::string(id); }

  /// The aggregate's current state: the latest usable snapshot and the events after it.
  Loaded load(std::string_view id) const {
    Loaded l;
    l.stream = stream_of(id);
    stats_.loads.fetch_add(1, std::memory_order_relaxed);
    const auto head = store_.version(l.stream);
    if (auto snap = store_.snapshot(l.stream); snap && snap->version > 0) {
      if (auto state = from_snapshot(*snap, head)) {
        l.state = std::move(*state);
        l.version = l.snapshot_version = snap->version;
        stats_.snapshots_used.fetch_add(1, std::memory_order_relaxed);
      } else {
        stats_.snapshots_ignored.fetch_add(1, std::memory_order_relaxed);
      }
    }
    for (;;) {
      const auto page = store_.read(l.stream, l.version + 1, 1024);
      for (const auto& e : page) apply_recorded(l.state, e);
      l.events_applied += page.size();
      if (!page.empty()) l.version = page.back().version;
      if (page.size() < 1024) break;
    }
    stats_.events_applied.fetch_add(l.events_applied, std::memory_order_relaxed);
    return l;
  }

  /// Loads the aggregate, decides, appends what was decided after the version loaded;
  /// decides again on a concurrent append (max_retries). `decide(const State&, Changes&)`.
  template <typename Decide>
  Result execute(std::string_view id, Decide&& decide) {
    static_assert(std::is_invocable_v<Decide&, const State&, Changes&>,
                  "execute(id, decide): decide(const State&, meshbus::Changes&)");
    for (unsigned attempt = 0;; ++attempt) {
      auto l = load(id);
      Changes changes;
      decide(std::as_const(l.state), changes);
      stats_.commands.fetch_add(1, std::memory_order_relaxed);
      if (changes.empty()) return Result{std::move(l.state), l.version, 0};
      std::uint64_t version = 0;
      try {
        version = store_.append(l.stream, std::span<const NewEvent>(changes.events()),
                                ExpectedVersion::exactly(l.version));
      } catch (const wrong_expected_version&) {
        stats_.conflicts.fetch_add(1, std::memory_order_relaxed);
        if (attempt >= options_.max_retries) throw;
        continue;
      }
      // The state after the events just appended (decoded as a load would).
      std::uint64_t v = l.version;
      for (const auto& ne : changes.events()) {
        RecordedEvent e;
        e.stream = l.stream;
        e.version = ++v;
        e.type_name = ne.type_name;
        e.type_version = ne.type_version;
        e.payload = ne.payload;
        apply_recorded(l.state, e);
      }
      if constexpr (packable) {
        const auto every = options_.snapshot_every;
        if (every > 0 && version / every > l.version / every) save_snapshot(l.stream, l.state, version);
      }
      return Result{std::move(l.state), version, changes.events().size()};
    }
  }

  // --- commands, routed to the aggregate's owner (EventStoreOptions::service) ---

  /// Serves command Cmd: `id_of(cmd)` names the aggregate, and on its owner
  /// `decide(cmd, state, changes)` returns the reply Rep (execute() semantics:
  /// decided on the version loaded, retried on a concurrent append). A Cmd sent to the
  /// store's command_service() reaches any instance, which forwards it to the owner
  /// (EventStore::owner_of) at the owner's own address; there it is executed even if
  /// the owner's view differs (terms keep that safe). What decide throws, and append
  /// failures (not_enough_replicas, not_owner), reach a remote sender as
  /// remote_failure with the message.
  template <TypedEvent Cmd, TypedEvent Rep, typename IdOf, typename Decide>
  Aggregate& handle(IdOf id_of, Decide decide) {
    static_assert(std::is_invocable_r_v<Rep, Decide&, const Cmd&, const State&, Changes&>,
                  "handle<Cmd, Rep>(id_of, decide): Rep decide(const Cmd&, const State&, meshbus::Changes&)");
    auto run = [this, id_of, decide](const Cmd& c) mutable {
      Rep rep{};
      execute(std::string(id_of(c)), [&](const State& s, Changes& out) { rep = decide(c, s, out); });
      return rep;
    };
    commands_.emplace_back(Cmd::event_name);
    store_.on_request(std::string(Cmd::event_name), [this, run, id_of](const Event& e) mutable -> Reply {
      const Cmd c = decode_event<Cmd>(e.payload(), e.type_name(), e.type_version());
      if (e.topic() == store_.command_service()) {
        const auto owner = store_.owner_of(stream_of(std::string(id_of(c))));
        if (owner != store_.node().id()) {  // forward, once, to the owner's own address
          RequestOptions o;
          o.timeout = std::chrono::milliseconds(10000);
          o.type_name = Cmd::event_name;
          o.type_version = Cmd::event_version;
          const auto bytes = encode_event(c);
          return store_.request_to(owner, std::as_bytes(std::span(bytes.data(), bytes.size())), o);
        }
      }
      const Rep rep = run(c);
      return Reply(encode_event(rep), std::string(Rep::event_name), Rep::event_version);
    });
    return *this;
  }

  const std::string& category() const noexcept { return category_; }
  EventStore& store() const noexcept { return store_; }
  AggregateStats stats() const {
    AggregateStats s;
    s.loads = stats_.loads.load();
    s.events_applied = stats_.events_applied.load();
    s.snapshots_used = stats_.snapshots_used.load();
    s.snapshots_ignored = stats_.snapshots_ignored.load();
    s.snapshots_saved = stats_.snapshots_saved.load();
    s.snapshot_failures = stats_.snapshot_failures.load();
    s.commands = stats_.commands.load();
    s.conflicts = stats_.conflicts.load();
    return s;
  }

 private:
  // msgpack's pack() is declared for every type (a missing adaptor fails only when
  // instantiated), so ask for what MSGPACK_DEFINE* gives a struct.
  static constexpr bool packable =
      std::is_arithmetic_v<State> || std::is_same_v<State, std::string> ||
      requires(const State& s, State& out, msgpack::packer<msgpack::sbuffer>& pk, const msgpack::object& o) {
        s.msgpack_pack(pk);
        out.msgpack_unpack(o);
      };

  void apply_recorded(State& state, const RecordedEvent& e) const {
    const auto fn = appliers_.find(e.type_name);
    if (fn == appliers_.end()) {
      throw poison_event("event " + std::to_string(e.version) + " of stream '" + e.stream + "' is of type '" +
                         e.type_name + "', which Aggregate '" + category_ + "' has no apply function for");
    }
    try {
      fn->second(state, e);
    } catch (const poison_event& p) {
      throw poison_event("event " + std::to_string(e.version) + " of stream '" + e.stream +
                         "' does not decode: " + p.what());
    }
  }

  /// The snapshot's state if it is usable at a stream whose version is `head`.
  std::optional<State> from_snapshot(const Snapshot& snap, std::uint64_t head) const {
    if constexpr (!packable) {
      return std::nullopt;
    } else {
      if (snap.version > head) return std::nullopt;  // ahead of the events: not this stream's
      try {
        msgpack::object_handle h = msgpack::unpack(snap.state.data(), snap.state.size(), nullptr, nullptr,
                                                   msgpack::unpack_limit(1u << 20, 1u << 20, 64u << 20, 64u << 20,
                                                                         1u << 20, 64));
        if (snap.state_version == options_.state_version) {
          State s{};
          h.get().convert(s);
          return s;
        }
        if (const auto up = snapshot_upcasters_.find(snap.state_version); up != snapshot_upcasters_.end()) {
          return up->second(h.get());
        }
      } catch (const std::exception&) {
        // does not decode: ignored, rebuilt from the events
      }
      return std::nullopt;
    }
  }

  void save_snapshot(const std::string& stream, const State& state, std::uint64_t version) {
    msgpack::sbuffer b;
    msgpack::pack(b, state);
    Snapshot s;
    s.version = version;
    s.state_version = options_.state_version;
    s.state.assign(b.data(), b.size());
    try {
      store_.save_snapshot(stream, s);
      stats_.snapshots_saved.fetch_add(1, std::memory_order_relaxed);
    } catch (const error&) {
      // The command's events are committed; a snapshot is only a cache. Counted, and
      // the next command past a multiple of N tries again.
      stats_.snapshot_failures.fetch_add(1, std::memory_order_relaxed);
    }
  }

  struct counters {
    std::atomic<std::uint64_t> loads{0}, events_applied{0}, snapshots_used{0}, snapshots_ignored{0},
        snapshots_saved{0}, snapshot_failures{0}, commands{0}, conflicts{0};
  };

  EventStore& store_;
  std::string category_;
  AggregateOptions options_;
  std::map<std::string, std::function<void(State&, const RecordedEvent&)>, std::less<>> appliers_;
  std::map<std::uint32_t, std::function<State(const msgpack::object&)>> snapshot_upcasters_;
  mutable counters stats_;
  std::vector<std::string> commands_;  // registered by handle()
};

}  // namespace meshbus
