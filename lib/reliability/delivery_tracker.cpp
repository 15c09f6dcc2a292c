// Publisher-side ack tracking; see delivery_tracker.hpp.
#include "lib/reliability/delivery_tracker.hpp"

#include <algorithm>

namespace meshbus::reliability {

// Whether `s` holds the window up: present, with `window` or more unacknowledged.
bool delivery_tracker::over(const subscriber_state& s) const noexcept {
  return !s.absent && s.unacked >= cfg_.window;
}

void delivery_tracker::count_over(bool was_over, bool is_over) noexcept {
  if (is_over && !was_over) ++over_window_;
  if (!is_over && was_over) --over_window_;
}

void delivery_tracker::adjust(subscriber_state& s, std::int64_t delta) {
  const bool was_over = over(s);
  if (delta >= 0) {
    s.unacked += static_cast<std::uint64_t>(delta);
    total_unacked_ += static_cast<std::uint64_t>(delta);
  } else {
    const auto d = static_cast<std::uint64_t>(-delta);
    s.unacked -= std::min(s.unacked, d);
    total_unacked_ -= std::min(total_unacked_, d);
  }
  count_over(was_over, over(s));
}

void delivery_tracker::set_absent(const wire::node_id_bytes& subscriber, bool absent) {
  auto it = subscribers_.find(subscriber);
  if (it == subscribers_.end() || it->second.absent == absent) return;
  auto& s = it->second;
  const bool was_over = over(s);
  s.absent = absent;
  count_over(was_over, over(s));
}

bool delivery_tracker::absent(const wire::node_id_bytes& subscriber) const {
  auto it = subscribers_.find(subscriber);
  return it != subscribers_.end() && it->second.absent;
}

std::vector<std::pair<wire::node_id_bytes, std::uint64_t>> delivery_tracker::lagging() const {
  std::vector<std::pair<wire::node_id_bytes, std::uint64_t>> out;
  for (const auto& [id, s] : subscribers_) {
    if (s.unacked != 0) out.emplace_back(id, s.unacked);
  }
  return out;
}

void delivery_tracker::track(const wire::node_id_bytes& subscriber, std::string_view topic_name,
                             delivery_mode mode, std::uint64_t start_after, clock::time_point now) {
  if (mode == delivery_mode::best_effort) return;
  const std::string topic(topic_name);
  auto& s = subscribers_[subscriber];
  auto& t = topics_[topic];
  auto [it, inserted] = s.topics.try_emplace(topic);
  auto& p = it->second;
  if (inserted) {
    p.mode = mode;
    p.acked = std::min(start_after, t.last_sent);
    p.last_progress = now;
    t.subscribers.push_back(subscriber);
    adjust(s, static_cast<std::int64_t>(t.last_sent - p.acked));
  } else if (mode > p.mode) {
    p.mode = mode;
  }
}

bool delivery_tracker::tracks(const wire::node_id_bytes& subscriber, std::string_view topic) const {
  auto it = subscribers_.find(subscriber);
  return it != subscribers_.end() && it->second.topics.count(std::string(topic)) != 0;
}

std::uint64_t delivery_tracker::forget(const wire::node_id_bytes& subscriber) {
  auto it = subscribers_.find(subscriber);
  if (it == subscribers_.end()) return 0;
  const auto unacked = it->second.unacked;
  adjust(it->second, -static_cast<std::int64_t>(unacked));
  for (const auto& [topic, p] : it->second.topics) {
    auto& subs = topics_[topic].subscribers;
    subs.erase(std::remove(subs.begin(), subs.end(), subscriber), subs.end());
  }
  subscribers_.erase(it);
  return unacked;
}

void delivery_tracker::sent(std::string_view topic_name, std::uint64_t last_seq, clock::time_point now) {
  auto& t = topics_[std::string(topic_name)];
  if (last_seq <= t.last_sent) return;
  const auto delta = last_seq - t.last_sent;
  t.last_sent = last_seq;
  for (const auto& id : t.subscribers) {
    auto& s = subscribers_[id];
    auto& p = s.topics[std::string(topic_name)];
    if (p.acked + delta == last_seq) p.last_progress = std::max(p.last_progress, now);  // was fully acked
    adjust(s, static_cast<std::int64_t>(delta));
  }
}

ack_result delivery_tracker::ack(const wire::node_id_bytes& subscriber, std::string_view topic_name,
                                 std::uint64_t seq, clock::time_point now) {
  auto sit = subscribers_.find(subscriber);
  if (sit == subscribers_.end()) return ack_result::unknown_subscriber;
  const std::string topic(topic_name);
  auto pit = sit->second.topics.find(topic);
  if (pit == sit->second.topics.end()) return ack_result::unknown_subscriber;
  const auto last = topics_[topic].last_sent;
  if (seq > last) return ack_result::beyond_sent;
  auto& p = pit->second;
  if (seq > p.acked) {
    adjust(sit->second, -static_cast<std::int64_t>(seq - p.acked));
    p.acked = seq;
    p.last_progress = now;
    p.attempts = 0;
  }
  return ack_result::ok;
}

std::uint64_t delivery_tracker::unacknowledged(const wire::node_id_bytes& subscriber) const {
  auto it = subscribers_.find(subscriber);
  return it == subscribers_.end() ? 0 : it->second.unacked;
}

clock::duration delivery_tracker::timeout_after(unsigned attempts) const {
  auto t = cfg_.redelivery_timeout;
  for (unsigned i = 0; i < attempts && t < cfg_.redelivery_max; ++i) t *= 2;
  return std::min(t, cfg_.redelivery_max);
}

void delivery_tracker::due_redeliveries(clock::time_point now, std::vector<redelivery>& out) {
  for (auto& [id, s] : subscribers_) {
    if (s.unacked == 0 || s.absent) continue;
    for (auto& [topic, p] : s.topics) {
      if (p.mode != delivery_mode::acknowledged) continue;
      const auto last = topics_[topic].last_sent;
      if (p.acked >= last || now - p.last_progress < timeout_after(p.attempts)) continue;
      out.push_back({id, topic, {p.acked + 1, last}});
      ++p.attempts;
      p.last_progress = now;
    }
  }
}

clock::time_point delivery_tracker::next_redelivery() const {
  auto next = clock::time_point::max();
  for (const auto& [id, s] : subscribers_) {
    if (s.unacked == 0 || s.absent) continue;
    for (const auto& [topic, p] : s.topics) {
      if (p.mode != delivery_mode::acknowledged) continue;
      const auto it = topics_.find(topic);
      if (it == topics_.end() || p.acked >= it->second.last_sent) continue;
      next = std::min(next, p.last_progress + timeout_after(p.attempts));
    }
  }
  return next;
}

}  // namespace meshbus::reliability
