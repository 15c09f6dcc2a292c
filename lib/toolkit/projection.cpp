// The Doc-independent part of meshbus::Projection: generations of a read model in the
// node's log, each followed by one thread from its checkpoint through the store's
// positions; retries of a failing event, the stop at it, and rebuilds that swap a new
// generation in once it caught up. Built on the public Node and EventStore API only.
//
// Keys (table kv, docs/event_sourcing.md):
//   $proj/<name>/gen               the serving generation (u64 BE; absent: 1)
//   $proj/<name>/g<gen>/cp         a generation's checkpoint (u64 BE)
//   $proj/<name>/g<gen>/d/<key>    its documents
//   $proj/<name>/failed            why it stopped (text), until it gets past that event
//   $proj/<name>/dropping          a generation whose documents are being deleted
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>

#include <fmt/format.h>

#include "meshbus/projection.hpp"
#include "meshbus/topic.hpp"

#include "lib/toolkit/big_endian.hpp"

namespace meshbus::detail {
namespace {

std::string be(std::uint64_t v) { return be64(v); }
std::uint64_t get_be(const std::optional<std::string>& s, std::uint64_t absent) {
  return s && s->size() == 8 ? get_be64(*s) : absent;
}

}  // namespace

class projection_core::impl {
 public:
  impl(EventStore& store, std::string name, ProjectionOptions options, apply_fn apply)
      : store_(store), node_(store.node()), name_(std::move(name)), opts_(std::move(options)), apply_(std::move(apply)) {
    if (name_.empty() || name_.size() > 200 || !topic_error(name_).empty() ||
        name_.find_first_of("*/$") != std::string::npos) {
      throw error(errc::invalid_argument,
                  fmt::format("'{}' cannot name a projection: use letters, digits, '.', '-' and '_'", name_));
    }
    for (const auto& c : opts_.categories) {
      if (c.find('-') != std::string::npos) {
        throw error(errc::invalid_argument,
                    fmt::format("'{}' cannot be a category of projection '{}': categories hold no '-'", c, name_));
      }
      (void)EventStore::category_of(c + "-x");
    }
    categories_.insert(opts_.categories.begin(), opts_.categories.end());
    if (opts_.batch == 0) opts_.batch = 1;
    if (opts_.max_attempts == 0) opts_.max_attempts = 1;
    base_ = "$proj/" + name_ + "/";
    failure_stored_ = node_.stored(base_ + "failed").has_value();
    live_.generation = get_be(node_.stored(base_ + "gen"), 1);
    live_.checkpoint = get_be(node_.stored(prefix(live_.generation) + "cp"), 0);
    // A failure kept from an earlier run is tried again: a restart is how a fix arrives.
  }

  ~impl() { stop(); }

  void start() {
    std::lock_guard lock(mu_);
    if (live_.thread.joinable()) return;
    live_.stop = false;
    live_.thread = std::thread([this] { follow(live_); });
    if (const auto dropping = node_.stored(base_ + "dropping")) {
      const auto gen = get_be(dropping, 0);
      if (gen != 0 && gen != live_.generation) drop_later(gen);
    }
  }

  void stop() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
      live_.stop = true;
      builder_.stop = true;
    }
    wake_.notify_all();
    join(builder_);
    join(live_);
    if (dropper_.joinable()) dropper_.join();
    std::lock_guard lock(mu_);
    stopping_ = false;
  }

  void resume() {
    {
      std::lock_guard lock(mu_);
      failure_.clear();
    }
    wake_.notify_all();
  }

  std::future<void> rebuild() {
    std::lock_guard lock(mu_);
    if (building_) {
      throw error(errc::invalid_argument, fmt::format("projection '{}' is already being rebuilt", name_));
    }
    if (builder_.thread.joinable()) builder_.thread.join();  // a rebuild that failed
    if (!live_.thread.joinable()) {
      throw error(errc::invalid_argument, fmt::format("projection '{}' is not started: start() it first", name_));
    }
    building_ = true;
    rebuilt_ = std::promise<void>();
    auto done = rebuilt_.get_future();
    builder_.generation = live_.generation + 1;
    builder_.checkpoint = 0;
    builder_.stop = false;
    builder_.thread = std::thread([this] {
      try {
        erase_prefix(prefix(builder_.generation));  // what a rebuild cut short left
        follow(builder_);
      } catch (...) {
        std::lock_guard failed_lock(mu_);
        building_ = false;
        rebuilt_.set_exception(std::current_exception());
        // The serving generation goes on (it may have been stopped for the swap).
        if (!stopping_ && !live_.thread.joinable()) {
          live_.stop = false;
          live_.thread = std::thread([this] { follow(live_); });
        }
      }
    });
    return done;
  }

  bool wait_caught_up(std::chrono::milliseconds timeout) const {
    std::unique_lock lock(mu_);
    return progress_.wait_for(lock, timeout, [&] {
      return failure_.empty() && !building_ && live_.checkpoint >= store_.last_position();
    });
  }

  std::string doc_prefix() const {
    std::lock_guard lock(mu_);
    return prefix(live_.generation) + "d/";
  }

  ProjectionStats stats() const {
    ProjectionStats s;
    {
      std::lock_guard lock(mu_);
      s.generation = live_.generation;
      s.checkpoint = live_.checkpoint;
      s.applied = applied_;
      s.retries = retries_;
      s.rebuilds = rebuilds_;
      s.rebuilding = building_;
      s.failure = failure_;
      s.stopped = !failure_.empty();
    }
    const auto last = store_.last_position();
    s.lag_events = last > s.checkpoint ? last - s.checkpoint : 0;
    if (s.lag_events > 0) {
      const auto next = store_.read_all(s.checkpoint + 1, 1);
      if (!next.empty()) {
        const auto age = std::chrono::system_clock::now() - next.front().recorded_at;
        s.lag_ms = static_cast<std::uint64_t>(
            std::max<std::int64_t>(0, std::chrono::duration_cast<std::chrono::milliseconds>(age).count()));
      }
    }
    return s;
  }

  EventStore& store() const noexcept { return store_; }
  const std::string& name() const noexcept { return name_; }

 private:
  struct follower {
    std::uint64_t generation = 1;
    std::uint64_t checkpoint = 0;  // guarded by mu_
    bool stop = false;             // guarded by mu_
    std::thread thread;
  };

  std::string prefix(std::uint64_t generation) const { return base_ + "g" + std::to_string(generation) + "/"; }

  /// Joins f's thread (taken under the lock: the builder may be moving threads about).
  void join(follower& f) {
    std::thread t;
    {
      std::lock_guard lock(mu_);
      if (f.thread.joinable() && f.thread.get_id() != std::this_thread::get_id()) t = std::move(f.thread);
    }
    if (t.joinable()) t.join();
  }

  void follow(follower& f) {
    const bool building = &f == &builder_;
    for (;;) {
      std::uint64_t from = 0;
      {
        std::unique_lock lock(mu_);
        // A failure stops the serving generation where it is (a builder's fails its rebuild).
        wake_.wait(lock, [&] { return f.stop || building || failure_.empty(); });
        if (f.stop) return;
        from = f.checkpoint;
      }
      std::vector<RecordedEvent> events;
      try {
        events = store_.read_all(from + 1, opts_.batch);
      } catch (const std::exception& ex) {
        if (building) throw;
        fail_reading(from + 1, ex.what());
        continue;
      }
      if (events.empty()) {
        if (building && caught_up_and_swapped(f)) return;
        store_.wait_past(from, std::chrono::milliseconds(100));
        continue;
      }
      if (!apply_run(f, events)) apply_one_by_one(f, events);
    }
  }

  bool wanted(const RecordedEvent& e) const {
    if (categories_.empty()) return true;
    const auto dash = e.stream.find('-');
    return categories_.contains(e.stream.substr(0, dash));
  }

  /// The run in one transaction with the checkpoint; false when something threw.
  bool apply_run(follower& f, const std::vector<RecordedEvent>& events) {
    std::uint64_t handled = 0;
    const auto docs = prefix(f.generation) + "d/";
    try {
      node_.transact([&](Transaction& tx) {
        handled = 0;
        for (const auto& e : events) {
          if (wanted(e) && apply_(e, tx, docs)) ++handled;
        }
        tx.put(prefix(f.generation) + "cp", be(events.back().position));
        if (failure_stored_ && &f == &live_) tx.erase(base_ + "failed");  // got past it
      });
    } catch (const std::exception&) {
      return false;
    }
    if (&f == &live_) failure_stored_ = false;
    advanced(f, events.back().position, handled);
    return true;
  }

  void apply_one_by_one(follower& f, const std::vector<RecordedEvent>& events) {
    const auto docs = prefix(f.generation) + "d/";
    for (const auto& e : events) {
      auto backoff = opts_.retry_backoff;
      for (unsigned attempt = 1;; ++attempt) {
        bool handled = false;
        std::string why;
        try {
          node_.transact([&](Transaction& tx) {
            handled = wanted(e) && apply_(e, tx, docs);
            tx.put(prefix(f.generation) + "cp", be(e.position));
            if (failure_stored_ && &f == &live_) tx.erase(base_ + "failed");
          });
          if (&f == &live_) failure_stored_ = false;
          advanced(f, e.position, handled ? 1 : 0);
          break;
        } catch (const std::exception& ex) {
          why = ex.what();
        }
        if (attempt >= opts_.max_attempts) {
          if (&f == &builder_) throw error(errc::handler_failed, describe(e, attempt, why));
          fail(e, attempt, why);
          return;
        }
        {
          std::unique_lock lock(mu_);
          ++retries_;
          if (wake_.wait_for(lock, backoff, [&] { return f.stop; })) return;
        }
        backoff *= 2;
      }
    }
  }

  void advanced(follower& f, std::uint64_t position, std::uint64_t handled) {
    {
      std::lock_guard lock(mu_);
      f.checkpoint = position;
      if (&f == &live_) applied_ += handled;
    }
    progress_.notify_all();
  }

  std::string describe(const RecordedEvent& e, unsigned attempts, const std::string& why) const {
    return fmt::format(
        "projection '{}' stopped at position {} (event {} of stream '{}', type {}): its handler failed {} times: {}",
        name_, e.position, e.version, e.stream, e.type_name, attempts, why);
  }

  void fail_reading(std::uint64_t position, const std::string& why) {
    stopped(fmt::format("projection '{}' stopped at position {}: the event store could not be read: {}", name_,
                        position, why));
  }

  void fail(const RecordedEvent& e, unsigned attempts, const std::string& why) {
    stopped(describe(e, attempts, why));
  }

  void stopped(const std::string& text) {
    try {
      node_.transact([&](Transaction& tx) { tx.put(base_ + "failed", text); });
      failure_stored_ = true;
    } catch (const std::exception&) {
      // kept in memory: stats() and on_error still say it
    }
    {
      std::lock_guard lock(mu_);
      failure_ = text;
    }
    progress_.notify_all();
    if (opts_.on_error) opts_.on_error(text);
  }

  /// The builder has applied everything the store holds: once the serving generation
  /// stopped and the builder is at least as far, the builder's generation serves.
  bool caught_up_and_swapped(follower& b) {
    {
      std::lock_guard lock(mu_);
      live_.stop = true;
    }
    wake_.notify_all();
    join(live_);
    std::uint64_t old_generation = 0;
    {
      std::lock_guard lock(mu_);
      if (stopping_) return true;
      if (b.checkpoint < live_.checkpoint) return false;  // not yet: go on applying
      old_generation = live_.generation;
    }
    node_.transact([&](Transaction& tx) {
      tx.put(base_ + "gen", be(b.generation));
      tx.put(base_ + "dropping", be(old_generation));
    });
    {
      std::lock_guard lock(mu_);
      // The builder's thread goes on as the serving one.
      live_.generation = b.generation;
      live_.checkpoint = b.checkpoint;
      live_.stop = stopping_;  // a stop() meanwhile stops it at once
      live_.thread = std::move(b.thread);
      building_ = false;
      ++rebuilds_;
      rebuilt_.set_value();
    }
    progress_.notify_all();
    drop_later(old_generation);
    // This thread is live_'s now: it follows as the serving generation.
    follow(live_);
    return true;
  }

  void drop_later(std::uint64_t generation) {
    if (dropper_.joinable()) dropper_.join();
    dropper_ = std::thread([this, generation] {
      try {
        erase_prefix(prefix(generation));
        node_.transact([&](Transaction& tx) { tx.erase(base_ + "dropping"); });
      } catch (const std::exception&) {
        // left for the next start ($proj/<name>/dropping stays)
      }
    });
  }

  void erase_prefix(const std::string& p) {
    for (;;) {
      const auto keys = node_.stored_range(p, {}, 1000);
      if (keys.empty()) return;
      node_.transact([&](Transaction& tx) {
        for (const auto& kv : keys) tx.erase(kv.first);
      });
    }
  }

  EventStore& store_;
  Node& node_;
  std::string name_;
  ProjectionOptions opts_;
  apply_fn apply_;
  std::set<std::string, std::less<>> categories_;
  std::string base_;

  mutable std::mutex mu_;
  mutable std::condition_variable wake_, progress_;
  follower live_, builder_;
  std::thread dropper_;
  bool building_ = false;
  bool stopping_ = false;
  std::atomic<bool> failure_stored_{false};  // $proj/<name>/failed is in the log
  std::promise<void> rebuilt_;
  std::string failure_;
  std::uint64_t applied_ = 0, retries_ = 0, rebuilds_ = 0;
};

projection_core::projection_core(EventStore& store, std::string name, ProjectionOptions options, apply_fn apply)
    : impl_(std::make_unique<impl>(store, std::move(name), std::move(options), std::move(apply))) {}
projection_core::~projection_core() = default;
void projection_core::start() { impl_->start(); }
void projection_core::stop() { impl_->stop(); }
void projection_core::resume() { impl_->resume(); }
std::future<void> projection_core::rebuild() { return impl_->rebuild(); }
bool projection_core::wait_caught_up(std::chrono::milliseconds timeout) const {
  return impl_->wait_caught_up(timeout);
}
std::string projection_core::doc_prefix() const { return impl_->doc_prefix(); }
ProjectionStats projection_core::stats() const { return impl_->stats(); }
EventStore& projection_core::store() const noexcept { return impl_->store(); }
const std::string& projection_core::name() const noexcept { return impl_->name(); }

}  // namespace meshbus::detail
