// Publisher side of reliability; see outbound.hpp.
#include "lib/node/outbound.hpp"

namespace meshbus::detail {
namespace {
// Batches resent for one NACK or one redelivery at most; the rest is asked for again.
constexpr std::size_t repair_budget = 1024;
}  // namespace

void outbound_streams::track_topic(const wire::node_id_bytes& id, const subscriber& s, std::string_view topic,
                                   clock::time_point now) {
  if (!s.ready) return;
  auto mode = reliability::delivery_mode::best_effort;
  for (const auto& [p, m] : s.patterns) {
    if (m > mode && p.matches(topic)) mode = m;
  }
  if (mode == reliability::delivery_mode::best_effort || tracker_.tracks(id, topic)) return;
  tracker_.track(id, topic, mode, history_.last_sent(topic), now);
}

void outbound_streams::sent(std::string_view topic, std::uint64_t first_seq, std::uint32_t count,
                            zmq::message_t&& frame, clock::time_point now) {
  auto it = topics_.find(topic);
  if (it == topics_.end()) it = topics_.emplace(std::string(topic), 0).first;
  if (it->second != generation_) {
    // New topic, or subscribers changed since: track whoever should be tracked on it,
    // from before this batch.
    it->second = generation_;
    for (const auto& [id, s] : subscribers_) track_topic(id, s, topic, now);
  }
  const auto bytes = frame.size();
  history_.append(topic, first_seq, count, bytes, std::move(frame));
  tracker_.sent(topic, first_seq + count - 1, now);
}

void outbound_streams::set_subscriber(const wire::node_id_bytes& id, const std::vector<wire::pattern_spec>& patterns,
                                      bool ready, clock::time_point now) {
  auto& s = subscribers_[id];
  s.patterns.clear();
  for (const auto& spec : patterns) {
    wire::pattern p;
    std::string err;
    if (wire::pattern::compile(spec.pattern, p, err)) {
      s.patterns.emplace_back(std::move(p), static_cast<reliability::delivery_mode>(std::min<std::uint8_t>(spec.mode, 2)));
    }
  }
  s.ready = ready;
  ++generation_;
  for (auto& [topic, generation] : topics_) {
    track_topic(id, s, topic, now);
    generation = generation_;
  }
}

void outbound_streams::forget_subscriber(const wire::node_id_bytes& id) {
  subscribers_.erase(id);
  tracker_.forget(id);
  ++generation_;
}

void outbound_streams::resend(const wire::node_id_bytes& to, std::string_view topic, std::uint64_t from,
                              std::uint64_t to_seq, std::size_t& budget) {
  const auto found = history_.find(topic, from, to_seq);
  if (found.beyond_sent) bump(counters_.bad_nacks);
  for (const auto* b : found.batches) {
    if (budget == 0) break;
    --budget;
    zmq::message_t copy;
    copy.copy(const_cast<zmq::message_t&>(b->payload));  // shares the buffer
    bump(counters_.repairs_sent);
    sink_.send_repair(to, std::move(copy));
  }
  if (found.evicted_from != 0) {
    bump(counters_.losses_sent);
    sink_.send_loss(to, wire::loss_msg{epoch_, std::string(topic), found.evicted_from, found.evicted_to});
  }
}

void outbound_streams::on_nack(const wire::node_id_bytes& from, const wire::nack_msg& m) {
  bump(counters_.nacks_received);
  if (m.epoch != epoch_) {
    bump(counters_.bad_nacks);  // meant for an earlier life of this node
    return;
  }
  std::size_t budget = repair_budget;
  for (const auto& [first, last] : m.ranges) resend(from, m.topic, first, last, budget);
}

void outbound_streams::on_ack(const wire::node_id_bytes& from, const wire::ack_msg& m, clock::time_point now) {
  bump(counters_.acks_received);
  if (m.epoch != epoch_) {
    bump(counters_.bad_acks);
    return;
  }
  for (const auto& [topic, seq] : m.acks) {
    if (tracker_.ack(from, topic, seq, now) != reliability::ack_result::ok) bump(counters_.bad_acks);
  }
}

void outbound_streams::tick(clock::time_point now) {
  due_.clear();
  tracker_.due_redeliveries(now, due_);
  for (const auto& r : due_) {
    std::size_t budget = repair_budget;
    bump(counters_.redeliveries);
    resend(r.subscriber, r.topic, r.range.from, r.range.to, budget);
  }
}

std::vector<std::pair<std::string, std::uint64_t>> outbound_streams::positions(std::size_t max) const {
  std::vector<std::pair<std::string, std::uint64_t>> out;
  for (const auto& [topic, generation] : topics_) {
    if (out.size() >= max) break;
    out.emplace_back(topic, history_.last_sent(topic));
  }
  return out;
}

}  // namespace meshbus::detail
