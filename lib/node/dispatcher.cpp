// Handler workers; see dispatcher.hpp for ordering, failure and overflow policy.
#include "lib/node/dispatcher.hpp"

#include <algorithm>
#include <cstring>

#include "lib/node/durable_positions.hpp"
#include "lib/node/node_context.hpp"
#include "lib/wire/envelope.hpp"

namespace meshbus::detail {

thread_local const Event* current_event = nullptr;

namespace {
constexpr std::size_t item_overhead = 128;

std::size_t delivery_bytes(const delivery& d) { return d.frame.size() + item_overhead; }
}  // namespace

dispatcher::dispatcher(unsigned threads, std::size_t max_bytes, node_counters& counters, error_sink on_error,
                       dead_letter_sink on_dead_letter, std::function<void()> on_space)
    : counters_(counters),
      on_error_(std::move(on_error)),
      on_dead_letter_(std::move(on_dead_letter)),
      on_space_(std::move(on_space)),
      max_bytes_(max_bytes),
      inline_(threads == 0) {
  const unsigned n = inline_ ? 1 : threads;
  for (unsigned i = 0; i < n; ++i) workers_.push_back(std::make_unique<worker>());
  if (!inline_) {
    for (auto& w : workers_) w->thread = std::thread([this, raw = w.get()] { run_worker(*raw); });
  }
}

dispatcher::~dispatcher() {
  stop();
  // stop() called from a handler could not join that handler's own worker.
  for (auto& w : workers_) {
    if (!w->thread.joinable()) continue;
    if (w->thread.get_id() == std::this_thread::get_id()) {
      w->thread.detach();
    } else {
      w->thread.join();
    }
  }
}

bool dispatcher::full() const noexcept { return bytes_.load(std::memory_order_relaxed) >= max_bytes_; }

void dispatcher::enqueue(std::size_t index, item&& it, std::size_t bytes) {
  bytes_.fetch_add(bytes, std::memory_order_relaxed);
  auto& w = *workers_[index % workers_.size()];
  bool was_empty = false;
  {
    std::lock_guard lock(w.mu);
    was_empty = w.queue.empty();
    w.queue.push_back(std::move(it));
  }
  if (was_empty && !inline_) w.cv.notify_one();
}

void dispatcher::post(std::size_t stream_hash, delivery&& d) {
  const auto bytes = delivery_bytes(d);
  enqueue(stream_hash, item(std::move(d)), bytes);
}

void dispatcher::post(std::function<void()> task) { enqueue(0, item(std::move(task)), item_overhead); }

void dispatcher::post(std::size_t stream_hash, std::function<void()> task) {
  enqueue(stream_hash, item(std::move(task)), item_overhead);
}

void dispatcher::account_done(std::size_t bytes) {
  // Release: whoever sees the bytes gone also sees the progress made (processed
  // positions), so the I/O thread's "nothing in flight" never misses an ack.
  const auto before = bytes_.fetch_sub(bytes, std::memory_order_release);
  // Crossing back under the limit: the I/O thread may be waiting to read again.
  if (before >= max_bytes_ && before - bytes < max_bytes_ && on_space_) on_space_();
}

void dispatcher::run_task(std::function<void()>& task) {
  try {
    task();
  } catch (const std::exception& e) {
    bump(counters_.handler_errors);
    if (on_error_) on_error_("", e.what());
  } catch (...) {
    bump(counters_.handler_errors);
    if (on_error_) on_error_("", "unknown exception");
  }
  account_done(item_overhead);
}

// Runs the handlers of events [from, count) of `d`. For an acknowledged subscription
// whose handler throws before its last attempt, the rest of the batch is parked (with
// `backlog`, what queued behind it) and true is returned.
bool dispatcher::deliver(worker& w, delivery& d, std::uint32_t from, unsigned attempts,
                         std::deque<item>* backlog) {
  const auto* base = static_cast<const std::uint8_t*>(d.frame.data());
  const std::string_view topic(reinterpret_cast<const char*>(base), d.topic_size);
  wire::mp_reader r(base + d.events_offset, d.frame.size() - d.events_offset);
  Event::fields f;
  f.topic = topic;
  f.publisher = &d.publisher;
  f.epoch = d.epoch;
  wire::event_fields ef;
  wire::byte_view payload;
  const Event ev(f);  // a view of f, refilled for each event
  bool all_handled = true;
  // Timed per batch (three clock reads), weighted by its events.
  const auto started = clock::now();
  const std::uint64_t handed = d.count > std::max(d.skip, from) ? d.count - std::max(d.skip, from) : 0;
  if (from == 0 && attempts == 0) {
    const auto now_ns = unix_ns();
    delivery_latency_.record(now_ns > d.timestamp_ns ? now_ns - d.timestamp_ns : 0, handed);
  }
  // Durable subscriptions: the batch, with what queued right behind it on its stream,
  // is marked handed before its handlers run (one commit per run, not per batch).
  const auto first = d.first_seq + std::max(d.skip, from);
  const auto last = d.first_seq + d.count - 1;
  bool durable_marks = false;  // acks then follow the committed position, not each handler
  if (first <= last) {
    std::uint64_t run_end = 0;
    for (const auto& sub : *d.subscriptions) {
      if (sub->durable != nullptr && !sub->transactional) {
        durable_marks = true;
        if (run_end == 0) run_end = queued_run_end(w, d);
        sub->durable->handing(sub->options.durable_name, d.publisher, d.epoch, topic, first, run_end);
      }
    }
  }
  for (std::uint32_t i = 0; i < d.count; ++i) {
    if (!wire::read_event(r, payload, ef)) {
      // Validated on receipt, so this cannot happen; if it does, it must not be silent.
      bump(counters_.handler_errors);
      if (on_error_) on_error_(topic, "internal error: a validated batch did not parse at event " + std::to_string(i));
      break;
    }
    if (i < std::max(d.skip, from)) continue;
    f.payload = std::as_bytes(std::span(payload.data(), payload.size()));
    f.sequence = d.first_seq + i;
    f.timestamp_ns = (ef.flags & wire::event_flag::timestamp) != 0 ? ef.timestamp_ns
                                                                     : static_cast<std::int64_t>(d.timestamp_ns);
    f.explicit_id = ef.event_id;
    f.type_name = ef.type_name;
    f.type_version = ef.type_version;
    f.correlation_id = ef.correlation_id;
    f.causation_id = ef.causation_id;
    f.content_type = ef.content_type;
    f.headers_raw = std::as_bytes(std::span(ef.headers_raw.data(), ef.headers_raw.size()));
    f.header_count = ef.header_count;
    f.forget_id();
    for (const auto& sub : *d.subscriptions) {
      if (!sub->active.load(std::memory_order_acquire)) {
        if (!d.abandon_if_inactive) continue;
        bump(counters_.events_abandoned, d.count - i);
        if (d.on_done) d.on_done(delivery_outcome::abandoned);
        return false;
      }
      if (sub->options.start.kind == StartFrom::Kind::time &&
          static_cast<std::uint64_t>(f.timestamp_ns) < sub->options.start.time_ns) {
        bump(counters_.events_before_start);  // StartFrom::time: older than asked for
        continue;
      }
      const bool acknowledged = sub->options.delivery == Delivery::acknowledged;
      if (acknowledged && !f.explicit_id.empty()) {
        std::lock_guard lock(sub->dedupe_mu);
        if (sub->dedupe.contains(f.explicit_id)) {
          bump(counters_.duplicates_dropped);
          continue;
        }
      }
      std::string failure;
      bool poisoned = false;
      try {
        const handling marker(ev);
        sub->handler(ev);
        bump(counters_.events_delivered);
      } catch (const poison_event& e) {
        failure = e.what();
        poisoned = true;
      } catch (const std::exception& e) {
        failure = e.what();
        if (failure.empty()) failure = "exception without a message";
      } catch (...) {
        failure = "unknown exception";
      }
      if (failure.empty()) {
        if (acknowledged && !f.explicit_id.empty()) {
          std::lock_guard lock(sub->dedupe_mu);
          sub->dedupe.seen(f.explicit_id);
        }
        continue;
      }
      bump(counters_.handler_errors);
      if (on_error_) on_error_(topic, failure);
      const unsigned tried = (i == from ? attempts : 0) + 1;
      if (poisoned) {  // never handleable: dead-lettered at once, in every mode
        all_handled = false;
        bump(counters_.dead_letters);
        if (on_dead_letter_) on_dead_letter_(ev, *sub, failure, tried);
        continue;
      }
      if (!acknowledged) continue;
      if (tried < std::max(1u, sub->options.max_deliver)) {
        bump(counters_.handler_retries);
        auto delay = sub->options.retry_backoff;
        for (unsigned k = 1; k < tried && delay < std::chrono::seconds(30); ++k) delay *= 2;
        parked p;
        p.resume = i;
        p.attempts = tried;
        p.due = clock::now() + delay;
        if (backlog != nullptr) p.backlog = std::move(*backlog);
        const auto id = d.stream_id;
        p.d = std::move(d);
        w.parked_streams.insert_or_assign(id, std::move(p));
        return true;
      }
      all_handled = false;
      bump(counters_.dead_letters);
      if (on_dead_letter_) on_dead_letter_(ev, *sub, failure, tried);
    }
    if (d.processed && !durable_marks) d.processed->store(f.sequence, std::memory_order_release);
  }
  if (first <= last) {
    for (const auto& sub : *d.subscriptions) {
      if (sub->durable != nullptr && !sub->transactional && sub->active.load(std::memory_order_acquire)) {
        sub->durable->handled(sub->options.durable_name, d.publisher, d.epoch, topic, last);
      }
    }
    // Committed (or at least handled, if the commit failed: it is retried with the
    // next run, and a restart delivers again from the stored position).
    if (d.processed && durable_marks) d.processed->store(last, std::memory_order_release);
  }
  if (handed != 0) {
    const auto took = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(clock::now() - started).count());
    handler_time_.record(took / handed, handed);
  }
  if (d.on_done) d.on_done(all_handled ? delivery_outcome::handled : delivery_outcome::dead_lettered);
  return false;
}

// The last sequence of the contiguous run of batches queued behind `d` on its stream
// (at most durable_run_events events from d's first), for a durable subscription's mark.
std::uint64_t dispatcher::queued_run_end(worker& w, const delivery& d) {
  constexpr std::uint64_t durable_run_events = 4096;
  auto end = d.first_seq + d.count - 1;
  if (d.stream_id == 0) return end;
  std::lock_guard lock(w.mu);
  for (const auto& it : w.queue) {
    const auto* next = std::get_if<delivery>(&it);
    if (next == nullptr || next->stream_id != d.stream_id) continue;
    if (next->first_seq + next->skip != end + 1 || next->first_seq + next->count - 1 - d.first_seq >= durable_run_events) {
      break;
    }
    end = next->first_seq + next->count - 1;
  }
  return end;
}

void dispatcher::process(worker& w, item&& it) {
  if (auto* d = std::get_if<delivery>(&it)) {
    if (d->stream_id != 0) {
      if (auto p = w.parked_streams.find(d->stream_id); p != w.parked_streams.end()) {
        p->second.backlog.push_back(std::move(it));  // keeps the stream's order behind the retry
        return;
      }
    }
    const auto bytes = delivery_bytes(*d);
    if (!deliver(w, *d, 0, 0, nullptr)) account_done(bytes);
    return;
  }
  run_task(std::get<std::function<void()>>(it));
}

void dispatcher::resume_due(worker& w, clock::time_point now) {
  for (auto it = w.parked_streams.begin(); it != w.parked_streams.end();) {
    if (it->second.due > now) {
      ++it;
      continue;
    }
    parked p = std::move(it->second);
    it = w.parked_streams.erase(it);
    const auto bytes = delivery_bytes(p.d);
    const auto stream = p.d.stream_id;
    if (deliver(w, p.d, p.resume, p.attempts, &p.backlog)) continue;  // parked again, backlog moved along
    account_done(bytes);
    while (!p.backlog.empty()) {
      auto next = std::move(p.backlog.front());
      p.backlog.pop_front();
      if (auto again = w.parked_streams.find(stream); again != w.parked_streams.end()) {
        again->second.backlog.push_back(std::move(next));
        continue;
      }
      process(w, std::move(next));
    }
    it = w.parked_streams.begin();  // the map may have changed
  }
}

dispatcher::clock::time_point dispatcher::next_due(const worker& w) const {
  auto next = clock::time_point::max();
  for (const auto& [id, p] : w.parked_streams) next = std::min(next, p.due);
  return next;
}

void dispatcher::run_worker(worker& w) {
  std::deque<item> local;
  for (;;) {
    {
      std::unique_lock lock(w.mu);
      const auto due = next_due(w);
      auto ready = [&] { return !w.queue.empty() || w.stopping || clock::now() >= due; };
      if (due == clock::time_point::max()) {
        w.cv.wait(lock, ready);
      } else {
        w.cv.wait_until(lock, due, ready);
      }
      if (w.queue.empty() && w.stopping) break;
      local.swap(w.queue);
    }
    for (auto& it : local) process(w, std::move(it));
    local.clear();
    resume_due(w, clock::now());
  }
  for (auto& [id, p] : w.parked_streams) {
    account_done(delivery_bytes(p.d));
    for (auto& it : p.backlog) {
      if (auto* d = std::get_if<delivery>(&it)) account_done(delivery_bytes(*d));
    }
  }
  abandon_parked(w);
}

// Retries still waiting at stop are abandoned (counted): their events were not acknowledged.
void dispatcher::abandon_parked(worker& w) {
  for (auto& [id, p] : w.parked_streams) {
    bump(counters_.events_abandoned, p.d.count - std::min(p.resume, p.d.count));
    for (auto& it : p.backlog) {
      if (auto* d = std::get_if<delivery>(&it)) bump(counters_.events_abandoned, d->count - std::min(d->skip, d->count));
    }
  }
  w.parked_streams.clear();
}

std::size_t dispatcher::run_inline() {
  if (!inline_) return 0;
  std::size_t n = 0;
  auto& w = *workers_[0];
  std::deque<item> local;
  {
    std::lock_guard lock(w.mu);
    local.swap(w.queue);
  }
  for (auto& it : local) {
    process(w, std::move(it));
    ++n;
  }
  resume_due(w, clock::now());
  return n;
}

void dispatcher::stop() {
  if (stopped_) return;
  stopped_ = true;
  // Workers finish what is queued, then exit; a handler calling this cannot join its own worker.
  for (auto& w : workers_) {
    {
      std::lock_guard lock(w->mu);
      w->stopping = true;
    }
    w->cv.notify_all();
  }
  for (auto& w : workers_) {
    if (w->thread.joinable() && w->thread.get_id() != std::this_thread::get_id()) w->thread.join();
  }
  if (inline_) {
    run_inline();
    abandon_parked(*workers_[0]);
  }
}

}  // namespace meshbus::detail
