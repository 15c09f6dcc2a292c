// Subscriber side of service-group work; see group_work.hpp. Invariant: every
// assignment the window delivered stays open until each subscription it was handed
// to finished it, or the publisher withdrew it. A group_work lives as long as its
// publisher's epoch (the publisher numbers a member's assignments without gaps or
// reuse for that long), so if this node joins the group again, the numbers go on.
#include "lib/reliability/group_work.hpp"

#include <algorithm>
#include <map>
#include <mutex>
#include <set>

namespace meshbus::reliability {

// Group work in progress, shared by the I/O thread and the handler threads that
// finish deliveries.
struct group_progress {
  struct open_assignment {
    held_frame batch;  ///< kept to hand it to a subscription again
    std::string topic;
    std::vector<std::string> waiting;  ///< patterns still to handle it (set when claimed)
    unsigned in_flight = 0;            ///< deliveries posted and not done
    bool claimed = false;              ///< `waiting` was taken from the matching subscriptions
  };

  std::mutex mu;
  std::map<std::uint64_t, open_assignment> open;  ///< by assignment number (guarded by mu)
  std::set<std::uint64_t> unsettled;              ///< open, nothing in flight, not finished (guarded by mu)
  /// Every assignment before the first open one is finished (UINT64_MAX: none open).
  std::atomic<std::uint64_t> finished_below{UINT64_MAX};
  /// Set when an assignment became unsettled: the I/O thread looks at it.
  std::atomic<bool> attention{false};

  // Under mu.
  void update_finished() {
    finished_below.store(open.empty() ? UINT64_MAX : open.begin()->first, std::memory_order_release);
  }

  /// Handler thread: the delivery of assignment `seq` to the subscription of
  /// `pattern` ended.
  void done(std::uint64_t seq, const std::string& pattern, work_outcome outcome) {
    std::lock_guard lock(mu);
    auto it = open.find(seq);
    if (it == open.end()) return;  // withdrawn by the publisher meanwhile
    auto& a = it->second;
    if (a.in_flight > 0) --a.in_flight;
    if (outcome != work_outcome::abandoned) {
      a.waiting.erase(std::remove(a.waiting.begin(), a.waiting.end(), pattern), a.waiting.end());
    }
    if (a.in_flight != 0) return;
    if (a.waiting.empty()) {
      unsettled.erase(it->first);
      open.erase(it);
      update_finished();
    } else {
      unsettled.insert(seq);
      attention.store(true, std::memory_order_release);
    }
  }
};

namespace {

using deliveries = std::vector<std::pair<const lane*, lane_delivery>>;

// A delivery of assignment `seq` (its batch) to one subscription of the group.
lane_delivery make_delivery(const wire::node_id_bytes& publisher, std::uint64_t epoch,
                            const std::shared_ptr<group_progress>& progress, std::uint64_t seq,
                            const held_frame& batch, const std::string& pattern) {
  lane_delivery out;
  out.frame = batch.frame.share();
  out.publisher = publisher;
  out.epoch = epoch;
  out.timestamp_ns = batch.timestamp_ns;
  out.topic_size = batch.topic_size;
  out.events_offset = batch.events_offset;
  out.first_seq = batch.event_first_seq;
  out.count = batch.event_count;
  out.on_done = [progress, seq, pattern](work_outcome o) { progress->done(seq, pattern, o); };
  return out;
}

// Hands `a` (assignment `seq`) to the subscriptions it is waiting for that exist now
// (all matching ones, the first time). Under the progress mutex; the deliveries are
// posted by the caller, after it.
template <class Make>
void hand_out(std::uint64_t seq, group_progress::open_assignment& a, const std::vector<lane>& lanes,
              Make&& make) {
  if (!a.claimed) {
    for (const auto& l : lanes) {
      if (l.sub->active() && l.sub->pattern().matches(a.topic)) a.waiting.push_back(l.sub->pattern().text());
    }
    if (a.waiting.empty()) return;  // nothing here takes it (yet)
    a.claimed = true;
  }
  for (const auto& pattern : a.waiting) {
    auto l = std::find_if(lanes.begin(), lanes.end(), [&](const lane& x) {
      return x.sub->pattern().text() == pattern && x.sub->active();
    });
    if (l == lanes.end()) continue;
    ++a.in_flight;
    make(seq, a, *l, pattern);
  }
}

}  // namespace

group_work::group_work(subscriber_context& cx, const wire::node_id_bytes& publisher, std::uint64_t epoch,
                       const std::string& group)
    : cx_(&cx),
      publisher_(publisher),
      epoch_(epoch),
      name_(wire::group_stream_name(group)),
      group_(group),
      w_(delivery_mode::acknowledged, cx.window, 1),
      progress_(std::make_shared<group_progress>()),
      refusal_backoff_(cx.window.nack_retry) {}

group_work::~group_work() = default;
group_work::group_work(group_work&&) noexcept = default;

void group_work::sync_lanes() {
  const auto generation = cx_->subs.generation();
  if (lanes_generation_ == generation) return;
  lanes_generation_ = generation;
  std::vector<lane> next;
  for (auto& sub : cx_->subs.in_group(group_)) {
    auto old = std::find_if(lanes_.begin(), lanes_.end(), [&](const lane& l) { return l.sub == sub; });
    if (old != lanes_.end()) {
      next.push_back(std::move(*old));
      continue;
    }
    next.push_back(lane{std::move(sub), cx_->next_lane_id++, nullptr});
  }
  lanes_ = std::move(next);
}

void group_work::apply(loss_reason reason) {
  auto& actions = cx_->actions;
  // Loss reports only when the publisher is gone: a LOSS on a group stream means the
  // assignments went to another member, which is not a loss.
  if (reason == loss_reason::publisher_gone) {
    for (const auto& r : actions.lost) {
      cx_->out.lost(stream_key(publisher_, name_, 0), loss_report{publisher_, epoch_, name_, r, reason, {}});
    }
  }
  if (!actions.deliver.empty()) {
    sync_lanes();
    deliveries posts;
    auto make = [&](std::uint64_t seq, const group_progress::open_assignment& a, const lane& l,
                    const std::string& pattern) {
      posts.emplace_back(&l, make_delivery(publisher_, epoch_, progress_, seq, a.batch, pattern));
    };
    bool unsettled = false;
    {
      std::lock_guard lock(progress_->mu);
      for (auto& d : actions.deliver) {
        const auto seq = d.first_seq;
        auto& a = progress_->open[seq];
        a.batch = std::move(d.payload);
        a.topic.assign(static_cast<const char*>(a.batch.frame.data()), a.batch.topic_size);
        hand_out(seq, a, lanes_, make);
        if (a.in_flight == 0) {
          progress_->unsettled.insert(seq);
          unsettled = true;
        }
      }
      progress_->update_finished();
    }
    if (unsettled) progress_->attention.store(true, std::memory_order_release);
    for (auto& [l, d] : posts) cx_->out.deliver(stream_key(publisher_, name_, l->id), *l, std::move(d));
  }
  cx_->out.nack(publisher_, epoch_, name_, actions.nack);
  actions.clear();
}

void group_work::settle(clock::time_point now) {
  const bool look = progress_->attention.exchange(false, std::memory_order_acq_rel);
  if (!look && !(refusing_ && now >= refusal_due_)) return;
  sync_lanes();
  deliveries posts;
  std::vector<seq_range> refused;
  {
    std::lock_guard lock(progress_->mu);
    for (auto it = progress_->unsettled.begin(); it != progress_->unsettled.end();) {
      const auto seq = *it;
      auto a = progress_->open.find(seq);
      if (a == progress_->open.end() || a->second.in_flight != 0) {
        it = progress_->unsettled.erase(it);
        continue;
      }
      hand_out(seq, a->second, lanes_,
               [&](std::uint64_t s, const group_progress::open_assignment& oa, const lane& l,
                   const std::string& pattern) {
                 posts.emplace_back(&l, make_delivery(publisher_, epoch_, progress_, s, oa.batch, pattern));
               });
      if (a->second.in_flight != 0) {
        it = progress_->unsettled.erase(it);
        continue;
      }
      if (!refused.empty() && refused.back().to + 1 == seq) {
        refused.back().to = seq;
      } else if (refused.size() < cx_->window.max_nack_ranges) {
        refused.push_back({seq, seq});
      }
      ++it;
    }
  }
  for (auto& [l, d] : posts) cx_->out.deliver(stream_key(publisher_, name_, l->id), *l, std::move(d));
  if (refused.empty()) {
    refusing_ = false;
    refusal_backoff_ = cx_->window.nack_retry;
    return;
  }
  if (refusing_ && now < refusal_due_) return;
  // Nobody here takes these any more: the publisher hands them to another member
  // (and says so with LOSS), or sends them again while it still counts us in.
  refusing_ = true;
  refusal_due_ = now + refusal_backoff_;
  refusal_backoff_ = std::min(refusal_backoff_ * 2, cx_->window.nack_retry_max);
  cx_->out.nack(publisher_, epoch_, name_, refused);
}

void group_work::on_assignment(std::uint64_t seq, held_frame&& held, std::size_t bytes,
                               clock::time_point now) {
  const auto before = w_.counters();
  w_.on_batch(seq, 1, bytes, std::move(held), now, cx_->actions);
  cx_->out.count(before, w_.counters());
  apply(loss_reason::not_in_history);
  if (progress_->attention.load(std::memory_order_acquire)) settle(now);
}

void group_work::withdraw(seq_range r, clock::time_point now) {
  {
    std::lock_guard lock(progress_->mu);
    auto& open = progress_->open;
    for (auto a = open.lower_bound(r.from); a != open.end() && a->first <= r.to;) {
      progress_->unsettled.erase(a->first);
      a = open.erase(a);
    }
    progress_->update_finished();
  }
  w_.on_loss(r, now, cx_->actions);  // not counted: nothing was lost
  apply(loss_reason::not_in_history);
}

void group_work::abandon(clock::time_point now) {
  const auto before = w_.counters();
  w_.abandon(now, cx_->actions);
  cx_->out.count(before, w_.counters());
  apply(loss_reason::publisher_gone);
}

void group_work::tick(clock::time_point now) {
  if (w_.nack_due() <= now) {
    const auto before = w_.counters();
    w_.tick(now, cx_->actions);
    cx_->out.count(before, w_.counters());
    apply(loss_reason::not_in_history);
  }
  // A subscription came or went while assignments wait for one: look again now.
  if (refusing_ && lanes_generation_ != cx_->subs.generation()) {
    progress_->attention.store(true, std::memory_order_release);
  }
  settle(now);
}

std::uint64_t group_work::ack_value() const {
  const auto below = progress_->finished_below.load(std::memory_order_acquire);
  return std::min(below == UINT64_MAX ? UINT64_MAX : below - 1, w_.delivered_through());
}

bool group_work::busy() const {
  // Lanes follow subscription changes lazily (at the next delivery), but work that
  // waits for a subscription looks again as soon as one comes (tick()).
  if (refusing_ && lanes_generation_ != cx_->subs.generation()) return true;
  if (progress_->attention.load(std::memory_order_acquire)) return true;
  const auto value = ack_value();
  return value != 0 && value > ack_.acked;
}

clock::time_point group_work::next_due() const {
  auto next = w_.nack_due();
  if (refusing_) next = std::min(next, refusal_due_);
  return next;
}

}  // namespace meshbus::reliability
