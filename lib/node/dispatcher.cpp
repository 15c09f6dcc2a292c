// Handler workers; see dispatcher.hpp for ordering and overflow policy.
#include "lib/node/dispatcher.hpp"

#include <cstring>

#include "lib/wire/envelope.hpp"

namespace meshbus::detail {
namespace {
constexpr std::size_t item_overhead = 128;
}  // namespace

dispatcher::dispatcher(unsigned threads, std::size_t max_bytes, node_counters& counters,
                       error_sink on_error, std::function<void()> on_space)
    : counters_(counters),
      on_error_(std::move(on_error)),
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
  const auto bytes = d.frame.size() + item_overhead;
  enqueue(stream_hash, item(std::move(d)), bytes);
}

void dispatcher::post(std::function<void()> task) { enqueue(0, item(std::move(task)), item_overhead); }

void dispatcher::account_done(std::size_t bytes) {
  const auto before = bytes_.fetch_sub(bytes, std::memory_order_relaxed);
  // Crossing back under the limit: the I/O thread may be waiting to read again.
  if (before >= max_bytes_ && before - bytes < max_bytes_ && on_space_) on_space_();
}

void dispatcher::execute(item& it) {
  if (auto* d = std::get_if<delivery>(&it)) {
    const auto bytes = d->frame.size() + item_overhead;
    deliver(*d);
    account_done(bytes);
  } else {
    auto& task = std::get<std::function<void()>>(it);
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
}

void dispatcher::deliver(delivery& d) {
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
  for (std::uint32_t i = 0; i < d.count; ++i) {
    if (!wire::read_event(r, payload, ef)) break;  // validated on receipt; cannot happen
    if (i < d.skip) continue;
    f.payload = std::as_bytes(std::span(payload.data(), payload.size()));
    f.sequence = d.first_seq + i;
    f.timestamp_ns = (ef.flags & wire::event_flag::timestamp) != 0
                         ? ef.timestamp_ns
                         : static_cast<std::int64_t>(d.timestamp_ns);
    f.explicit_id = ef.event_id;
    f.type_name = ef.type_name;
    f.type_version = ef.type_version;
    f.correlation_id = ef.correlation_id;
    f.causation_id = ef.causation_id;
    f.content_type = ef.content_type;
    f.headers_raw = std::as_bytes(std::span(ef.headers_raw.data(), ef.headers_raw.size()));
    f.header_count = ef.header_count;
    for (const auto& sub : *d.subscriptions) {
      if (!sub->active.load(std::memory_order_acquire)) continue;
      try {
        sub->handler(ev);
        bump(counters_.events_delivered);
      } catch (const std::exception& e) {
        bump(counters_.handler_errors);
        if (on_error_) on_error_(topic, e.what());
      } catch (...) {
        bump(counters_.handler_errors);
        if (on_error_) on_error_(topic, "unknown exception");
      }
    }
  }
}

void dispatcher::run_worker(worker& w) {
  std::deque<item> local;
  for (;;) {
    {
      std::unique_lock lock(w.mu);
      w.cv.wait(lock, [&] { return !w.queue.empty() || w.stopping; });
      if (w.queue.empty() && w.stopping) break;
      local.swap(w.queue);
    }
    for (auto& it : local) execute(it);
    local.clear();
  }
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
    execute(it);
    ++n;
  }
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
  if (inline_) run_inline();
}

}  // namespace meshbus::detail
