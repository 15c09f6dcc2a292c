// Outbox: encode-on-publish batching with byte-bounded back-pressure.
#include "lib/node/outbox.hpp"

#include <algorithm>

namespace meshbus::detail {

wire::bytes frame_pool::take() {
  {
    std::lock_guard lock(mu_);
    if (!spare_.empty()) {
      auto b = std::move(spare_.back());
      spare_.pop_back();
      return b;
    }
  }
  wire::bytes b;
  b.reserve(initial_capacity_);
  return b;
}

void frame_pool::give_back(wire::bytes&& b) {
  if (b.capacity() > max_capacity_) return;
  b.clear();
  std::lock_guard lock(mu_);
  if (spare_.size() < max_kept_) spare_.push_back(std::move(b));
}

outbox::outbox(const wire::node_id_bytes& publisher, std::uint64_t epoch, limits lim,
               std::function<void()> wake, counter* accepted)
    : publisher_(publisher),
      epoch_(epoch),
      limits_(lim),
      wake_(std::move(wake)),
      accepted_(accepted != nullptr ? accepted : &own_accepted_),
      pool_(std::make_shared<frame_pool>(64, 2 * lim.max_batch_bytes, std::min<std::size_t>(lim.max_batch_bytes, 4096))) {}

void outbox::continue_stream(std::string_view topic, std::uint64_t next_seq) {
  std::lock_guard lock(mu_);
  next_seq_[std::string(topic)] = next_seq;
}

void outbox::close_open_batch_locked() {
  if (!has_open_) return;
  next_seq_[open_.topic] = open_.first_seq + open_.count;
  closed_.push_back(std::move(open_));
  open_ = outbox_batch{};
  has_open_ = false;
}

outbox::push_result outbox::push(std::string_view topic, wire::byte_view payload,
                                 const wire::event_fields* fields, std::chrono::milliseconds wait) {
  const auto size = wire::event_size_bound(payload.size(), fields);
  bool was_empty = false;
  {
    std::unique_lock lock(mu_);
    if (closed_for_good_) return push_result::closed;
    // An event larger than the whole bound is admitted alone into an empty queue.
    if (bytes_ + size > limits_.max_bytes && bytes_ != 0) {
      if (wait.count() <= 0) return push_result::full;
      const bool got = space_.wait_for(lock, wait, [&] {
        return closed_for_good_ || bytes_ + size <= limits_.max_bytes || bytes_ == 0;
      });
      if (closed_for_good_) return push_result::closed;
      if (!got) return push_result::full;
    }
    was_empty = !has_open_ && closed_.empty();
    const bool same_stream = has_open_ && open_.topic == topic;
    std::size_t before = open_.frame.size();
    if (!same_stream || open_.count >= limits_.max_batch_events ||
        open_.frame.size() + size > limits_.max_batch_bytes) {
      const std::uint64_t first = same_stream ? open_.first_seq + open_.count : 0;
      close_open_batch_locked();
      open_.topic.assign(topic);
      if (first != 0) {
        open_.first_seq = first;
      } else {
        auto it = next_seq_.find(topic);
        open_.first_seq = it == next_seq_.end() ? 1 : it->second;
      }
      open_.frame = pool_->take();
      wire::begin_batch(open_.frame, topic, publisher_, epoch_, open_.first_seq, open_.marks);
      has_open_ = true;
      before = 0;
    }
    wire::append_event(open_.frame, payload, fields);
    ++open_.count;
    bytes_ += open_.frame.size() - before;
    accepted_->store(read(*accepted_) + 1, std::memory_order_relaxed);  // under mu_: no read-modify-write needed
  }
  if (was_empty && wake_) wake_();
  return push_result::ok;
}

void outbox::drain(std::vector<outbox_batch>& out) {
  std::lock_guard lock(mu_);
  close_open_batch_locked();
  for (auto& b : closed_) out.push_back(std::move(b));
  closed_.clear();
}

void outbox::release(std::size_t n) {
  {
    std::lock_guard lock(mu_);
    bytes_ = n > bytes_ ? 0 : bytes_ - n;
  }
  space_.notify_all();
  released_.notify_all();
}

void outbox::close() {
  {
    std::lock_guard lock(mu_);
    closed_for_good_ = true;
  }
  space_.notify_all();
  released_.notify_all();
}

bool outbox::empty() const {
  std::lock_guard lock(mu_);
  return !has_open_ && closed_.empty();
}

std::size_t outbox::bytes() const {
  std::lock_guard lock(mu_);
  return bytes_;
}

std::uint64_t outbox::events_accepted() const { return read(*accepted_); }

bool outbox::wait_released(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return released_.wait_for(lock, timeout, [&] { return bytes_ == 0 || closed_for_good_; }) &&
         bytes_ == 0;
}

}  // namespace meshbus::detail
