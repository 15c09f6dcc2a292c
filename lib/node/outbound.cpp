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
  // Every group whose pattern matches gets the batch, for one of its members.
  group_sends_.clear();
  for (const auto& [name, g] : group_info_) {
    if (g.members.empty() || !g.pattern.matches(topic)) continue;
    zmq::message_t copy;
    copy.copy(frame);
    groups_.assign(name, count, std::move(copy), now, group_sends_);
  }
  send_all(group_sends_);
  const auto bytes = frame.size();
  history_.append(topic, first_seq, count, bytes, std::move(frame));
  tracker_.sent(topic, first_seq + count - 1, now);
}

void outbound_streams::send_all(std::vector<reliability::group_assigner<zmq::message_t>::send>& sends) {
  for (const auto& s : sends) {
    zmq::message_t copy;
    copy.copy(const_cast<zmq::message_t&>(*s.payload));  // shares the buffer
    sink_.send_assignment(s.member, s.group, s.seq, std::move(copy));
  }
  sends.clear();
}

void outbound_streams::set_subscriber(const wire::node_id_bytes& id, const std::vector<wire::pattern_spec>& patterns,
                                      bool ready, clock::time_point now) {
  auto& s = subscribers_[id];
  s.patterns.clear();
  for (const auto& spec : patterns) {
    if (!spec.group.empty()) continue;  // group work is tracked by the assigner
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
  // Service groups: join the ones it subscribes now, leave the others.
  std::set<std::string> now_in;
  for (const auto& spec : patterns) {
    if (spec.group.empty()) continue;
    wire::pattern p;
    std::string err;
    if (!wire::pattern::compile(spec.pattern, p, err)) continue;
    auto [g, created] = group_info_.try_emplace(spec.group, group_info{p, {}});
    if (!created && g->second.members.empty()) g->second.pattern = p;  // an empty group takes the newcomer's
    if (g->second.pattern.text() != spec.pattern) {
      sink_.group_conflict(id, spec.group, spec.pattern, g->second.pattern.text());
      continue;
    }
    now_in.insert(spec.group);
    if (g->second.members.insert(id).second) {
      group_sends_.clear();
      groups_.join(spec.group, id, now, group_sends_);
      send_all(group_sends_);
    }
  }
  for (const auto& name : s.groups) {
    if (now_in.count(name) != 0) continue;
    group_info_[name].members.erase(id);
    group_sends_.clear();
    groups_.leave(name, id, now, group_sends_);
    send_all(group_sends_);
  }
  s.groups = std::move(now_in);
}

void outbound_streams::forget_subscriber(const wire::node_id_bytes& id, clock::time_point now) {
  subscribers_.erase(id);
  tracker_.forget(id);
  ++generation_;
  // Its unfinished group work goes to the other members.
  for (auto& [name, g] : group_info_) g.members.erase(id);
  group_sends_.clear();
  groups_.leave("", id, now, group_sends_);
  send_all(group_sends_);
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
  if (m.topic.rfind(group_stream_prefix, 0) == 0) {  // group work: resend the member's own assignments
    const auto group = m.topic.substr(group_stream_prefix.size());
    for (const auto& [first, last] : m.ranges) groups_.resend(from, group, first, last, group_sends_);
    send_all(group_sends_);
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
    const bool ok = topic.rfind(group_stream_prefix, 0) == 0
                        ? groups_.ack(from, topic.substr(group_stream_prefix.size()), seq, now)
                        : tracker_.ack(from, topic, seq, now) == reliability::ack_result::ok;
    if (!ok) bump(counters_.bad_acks);
  }
}

void outbound_streams::tick(clock::time_point now) {
  group_sends_.clear();
  groups_.due(now, group_sends_);
  if (!group_sends_.empty()) bump(counters_.redeliveries);
  send_all(group_sends_);
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
