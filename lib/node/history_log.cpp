// The publisher's history on disk; see history_log.hpp. Invariant: a batch is sent
// only after write() returned true for it.
#include "lib/node/history_log.hpp"

#include <fmt/format.h>

#include "lib/node/log.hpp"

namespace meshbus::detail {
namespace {

constexpr auto retention_period = std::chrono::seconds(1);

std::vector<store::retention_rule> rules_of(const Options& o) {
  std::vector<store::retention_rule> out;
  for (const auto& r : o.retention) out.push_back({r.pattern, r.max_age, r.max_bytes, r.max_events});
  if (out.empty()) out.push_back({"**", std::chrono::hours(24 * 7), std::uint64_t{1} << 30, 0});
  return out;
}

}  // namespace

history_log::history_log(node_context& ctx, store::log_store& store)
    : ctx_(ctx), store_(store), retention_(rules_of(ctx.opts)), writer_([this] { run(); }) {}

history_log::~history_log() { stop(); }

void history_log::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (writer_.joinable()) writer_.join();
}

void history_log::submit(std::vector<outbox_batch>&& batches, std::uint64_t timestamp_ns) {
  {
    std::lock_guard lock(mu_);
    job_ = std::move(batches);
    job_ts_ = timestamp_ns;
    has_job_ = true;
    written_ = false;
  }
  cv_.notify_all();
}

bool history_log::idle() const {
  std::lock_guard lock(mu_);
  return !has_job_;
}

bool history_log::take_written(std::vector<outbox_batch>& out, std::uint64_t& timestamp_ns) {
  std::lock_guard lock(mu_);
  if (!has_job_ || !written_) return false;
  out = std::move(job_);
  job_.clear();
  timestamp_ns = job_ts_;
  has_job_ = false;
  written_ = false;
  return true;
}

std::uint64_t history_log::events_in_flight() const {
  std::lock_guard lock(mu_);
  std::uint64_t n = 0;
  if (has_job_ && !written_) {
    for (const auto& b : job_) n += b.count;
  }
  return n;
}

// The writer thread: writes the job, retrying every 200 ms while the log refuses it.
void history_log::run() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stopping_ || (has_job_ && !written_); });
    if (stopping_) return;
    // The job is not touched by anyone else until written_ is set.
    lock.unlock();
    const bool ok = write(job_, job_ts_);
    lock.lock();
    if (ok) {
      written_ = true;
      if (failing_.exchange(false, std::memory_order_acq_rel)) {
        ctx_.log.info("node {}: the durable log takes writes again", ctx_.self.id.short_string());
      }
      lock.unlock();
      ctx_.loop.wake();
      lock.lock();
      continue;
    }
    failing_.store(true, std::memory_order_release);
    cv_.wait_for(lock, std::chrono::milliseconds(200), [&] { return stopping_; });
  }
}

bool history_log::write(const std::vector<outbox_batch>& batches, std::uint64_t timestamp_ns) {
  scratch_.clear();
  std::uint64_t events = 0, bytes = 0;
  for (const auto& b : batches) {
    scratch_.push_back({b.topic, b.first_seq, b.count, timestamp_ns, store::byte_span(b.frame.data(), b.frame.size())});
    events += b.count;
    bytes += b.frame.size();
  }
  const auto r = store_.append(scratch_);
  if (!r) {
    bump(ctx_.counters.store_failures);
    ctx_.faults.report(fault::store_failure,
                       fmt::format("{}; publish() returns store_failed meanwhile, and the {} events already accepted "
                                   "wait (nothing is lost)",
                                   r.message, events));
    return false;
  }
  bump(ctx_.counters.store_commits);
  bump(ctx_.counters.store_events_written, events);
  bump(ctx_.counters.store_bytes_written, bytes);
  return true;
}

void history_log::tick(clock::time_point now) {
  auto next = store_.tick(now);
  if (now >= next_retention_) {
    next_retention_ = now + retention_period;
    if (const auto deleted = store_.enforce_retention(retention_, unix_ns())) {
      bump(ctx_.counters.retention_deleted, deleted);
    }
  }
  next_due_ = std::min(next, next_retention_);
}

std::vector<reliability::seq_range> history_log::fetch(std::string_view topic, std::uint64_t from, std::uint64_t to,
                                                       std::size_t& budget,
                                                       const std::function<void(transport::frame&&)>& send) {
  std::vector<reliability::seq_range> lost;
  if (budget == 0) return lost;
  const auto r = store_.read(topic, from, to, static_cast<std::uint32_t>(std::min<std::size_t>(budget, 1u << 20)),
                             [&](const store::history_batch& b) {
                               bump(ctx_.counters.repairs_from_disk);
                               send(transport::frame(b.frame.data(), b.frame.size()));
                             });
  budget -= std::min<std::size_t>(budget, r.batches);
  // Before the oldest held: retention took it (or it never reached the log).
  const std::uint64_t oldest = r.oldest == 0 ? (r.last == 0 ? to + 1 : r.last + 1) : r.oldest;
  if (from < oldest) lost.push_back({from, std::min(to, oldest - 1)});
  for (const auto& [a, b] : r.damaged) {
    bump(ctx_.counters.store_damaged);
    ctx_.faults.report(fault::store_damage, fmt::format("{}: events {} to {} cannot be sent again", r.damage, a, b));
    lost.push_back({a, b});
  }
  return lost;
}

}  // namespace meshbus::detail
