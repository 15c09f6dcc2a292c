// Publisher side of reliability; see publisher_streams.hpp. Frames in history and in
// group work are sent again as shares of the same buffer, never copied.
#include "lib/reliability/publisher_streams.hpp"

#include <algorithm>

#include "lib/wire/envelope.hpp"

namespace meshbus::reliability {
namespace {
// Batches resent for one NACK or one redelivery at most; the rest is asked for again.
constexpr std::size_t repair_budget = 1024;

std::string describe(const std::vector<std::string>& texts) {
  std::string out = "[";
  for (const auto& t : texts) {
    if (out.size() > 1) out += ", ";
    out += t;
  }
  return out + "]";
}
}  // namespace

bool publisher_streams::group_info::matches(std::string_view topic) const {
  return std::any_of(patterns.begin(), patterns.end(),
                     [&](const wire::pattern& p) { return p.matches(topic); });
}

void publisher_streams::track_topic(const wire::node_id_bytes& id, const subscriber& s,
                                    std::string_view topic, clock::time_point now) {
  if (!s.ready) return;
  auto mode = delivery_mode::best_effort;
  for (const auto& [p, m] : s.patterns) {
    if (m > mode && p.matches(topic)) mode = m;
  }
  if (mode == delivery_mode::best_effort || tracker_.tracks(id, topic)) return;
  tracker_.track(id, topic, mode, history_.last_sent(topic), now);
}

void publisher_streams::resume(std::string_view topic, std::uint64_t last_sent) {
  history_.resume(topic, last_sent);
  topics_.emplace(std::string(topic), 0);
}

void publisher_streams::sent(std::string_view topic, std::uint64_t first_seq, std::uint32_t count,
                             transport::frame&& frame, clock::time_point now) {
  auto it = topics_.find(topic);
  if (it == topics_.end()) it = topics_.emplace(std::string(topic), 0).first;
  if (it->second != generation_) {
    // New topic, or subscribers changed since: track whoever should be tracked on it,
    // from before this batch.
    it->second = generation_;
    for (const auto& [id, s] : subscribers_) track_topic(id, s, topic, now);
  }
  // Every group one of whose patterns matches gets the batch, for one of its members.
  group_sends_.clear();
  for (const auto& [name, g] : group_info_) {
    if ((g.members.empty() && g.absent.empty()) || !g.matches(topic)) continue;
    groups_.assign(name, topic, count, frame.share(), now, group_sends_);
  }
  send_all(group_sends_);
  const auto bytes = frame.size();
  history_.append(topic, first_seq, count, bytes, std::move(frame));
  tracker_.sent(topic, first_seq + count - 1, now);
  count_tallies();
}

void publisher_streams::send_all(std::vector<group_assigner<transport::frame>::send>& sends) {
  for (const auto& s : sends) {
    sink_.send_assignment(s.member, s.group, s.seq, s.payload->share());
  }
  sends.clear();
  count_tallies();
}

void publisher_streams::count_tallies() {
  auto add = [](counter& c, std::uint64_t now, std::uint64_t& counted) {
    if (now == counted) return;
    bump(c, now - counted);
    counted = now;
  };
  add(counters_.history_evicted, history_.evicted_events(), counted_.evicted);
  add(counters_.group_reassignments, groups_.reassigned(), counted_.reassigned);
  add(counters_.group_backlog_dropped, groups_.backlog_dropped(), counted_.backlog_dropped);
  add(counters_.group_out_of_scope, groups_.out_of_scope(), counted_.out_of_scope);
}

void publisher_streams::set_subscriber(const wire::node_id_bytes& id,
                                       const std::vector<wire::pattern_spec>& patterns, bool ready,
                                       clock::time_point now) {
  auto& s = subscribers_[id];
  s.patterns.clear();
  for (const auto& spec : patterns) {
    if (!spec.group.empty()) continue;  // group work is tracked by the assigner
    wire::pattern p;
    std::string err;
    if (wire::pattern::compile(spec.pattern, p, err)) {
      s.patterns.emplace_back(std::move(p), static_cast<delivery_mode>(std::min<std::uint8_t>(spec.mode, 2)));
    }
  }
  s.ready = ready;
  if (ready) {
    tracker_.set_absent(id, false);  // back: its window counts again
    for (auto& [name, g] : group_info_) g.absent.erase(id);
  }
  ++generation_;
  for (auto& [topic, generation] : topics_) {
    track_topic(id, s, topic, now);
    generation = generation_;
  }
  // Service groups: the set of patterns it subscribes in each group.
  std::map<std::string, std::vector<std::string>> wants;
  for (const auto& spec : patterns) {
    if (spec.group.empty()) continue;
    wire::pattern p;
    std::string err;
    if (wire::pattern::compile(spec.pattern, p, err)) wants[spec.group].push_back(spec.pattern);
  }
  std::set<std::string> groups;
  for (auto& [name, texts] : wants) {
    std::sort(texts.begin(), texts.end());
    texts.erase(std::unique(texts.begin(), texts.end()), texts.end());
    groups.insert(name);
  }
  for (const auto& name : s.groups) groups.insert(name);
  for (const auto& name : groups) {
    auto& g = group_info_[name];
    if (auto w = wants.find(name); w != wants.end()) {
      g.wanted[id] = std::move(w->second);
    } else {
      g.wanted.erase(id);
    }
    reconcile(name, g, now);
  }
  s.groups.clear();
  for (const auto& [name, texts] : wants) s.groups.insert(name);
}

// Chooses the group's set and its members again after a node's set changed.
void publisher_streams::reconcile(const std::string& name, group_info& g, clock::time_point now) {
  // The set most of the group's nodes subscribe; a tie keeps the current set, or else
  // goes to the set of the lowest node id (the map's order), so publishers agree.
  bool changed = false;
  if (!g.wanted.empty()) {
    std::map<std::vector<std::string>, std::size_t> votes;
    for (const auto& [id, texts] : g.wanted) ++votes[texts];
    const std::vector<std::string>* best = nullptr;
    std::size_t best_votes = 0;
    if (auto current = votes.find(g.texts); current != votes.end()) {
      best = &current->first;
      best_votes = current->second;
    }
    for (const auto& [id, texts] : g.wanted) {
      if (votes[texts] > best_votes) {
        best = &votes.find(texts)->first;
        best_votes = votes[texts];
      }
    }
    if (best != nullptr && *best != g.texts) {
      sink_.group_changed(name, describe(g.texts), describe(*best));
      changed = true;
      g.texts = *best;
      g.patterns.clear();
      for (const auto& text : g.texts) {
        wire::pattern p;
        std::string err;
        if (wire::pattern::compile(text, p, err)) g.patterns.push_back(std::move(p));
      }
    }
  }
  // Members: exactly the nodes that subscribe the group's set. One that no longer
  // does keeps what it holds until it acknowledges it or asks for it again.
  for (auto it = g.members.begin(); it != g.members.end();) {
    auto w = g.wanted.find(*it);
    if (w != g.wanted.end() && w->second == g.texts) {
      ++it;
      continue;
    }
    groups_.retire(name, *it);
    it = g.members.erase(it);
  }
  if (changed) {
    // Work outside the new set is no longer the group's: no member could handle it.
    groups_.set_scope(name, [patterns = g.patterns](std::string_view topic) {
      return std::any_of(patterns.begin(), patterns.end(),
                         [&](const wire::pattern& p) { return p.matches(topic); });
    });
    count_tallies();
  }
  for (const auto& [id, texts] : g.wanted) {
    if (texts != g.texts) {
      auto [r, added] = g.refused.try_emplace(id);
      if (added || r->second != texts) {
        r->second = texts;
        sink_.group_conflict(id, name, describe(texts), describe(g.texts));
      }
      continue;
    }
    g.refused.erase(id);
    if (g.members.insert(id).second) {
      group_sends_.clear();
      groups_.join(name, id, now, group_sends_);
      send_all(group_sends_);
    }
  }
  for (auto it = g.refused.begin(); it != g.refused.end();) {
    it = g.wanted.count(it->first) != 0 ? std::next(it) : g.refused.erase(it);
  }
}

std::uint64_t publisher_streams::forget_subscriber(const wire::node_id_bytes& id, clock::time_point now,
                                                   bool keep_group_work) {
  const auto unacked = tracker_.forget(id);
  leave(id, now, keep_group_work);
  return unacked;
}

void publisher_streams::subscriber_absent(const wire::node_id_bytes& id, clock::time_point now) {
  tracker_.set_absent(id, true);
  // Its group work waits for it: handed to another member now, it would be handled
  // twice if it comes back (it may be partitioned or paused, not dead). New work goes
  // to the others. Forgotten, it hands what it held on (forget_subscriber).
  std::vector<group_info*> of;
  for (auto& [name, g] : group_info_) {
    if (g.members.count(id) != 0) of.push_back(&g);
  }
  leave(id, now, true);
  groups_.suspend(id);
  for (auto* g : of) g->absent.insert(id);
}

void publisher_streams::leave(const wire::node_id_bytes& id, clock::time_point now, bool keep_group_work) {
  subscribers_.erase(id);
  ++generation_;
  // Its groups choose their set without it; it takes no new work.
  for (auto& [name, g] : group_info_) {
    g.absent.erase(id);
    if (g.wanted.erase(id) == 0 && g.members.count(id) == 0) continue;
    if (g.members.erase(id) != 0) groups_.retire(name, id);
    g.refused.erase(id);
    reconcile(name, g, now);
  }
  if (!keep_group_work) release_group_work(id, now);
}

std::vector<publisher_streams::lagging_subscriber> publisher_streams::lagging() const {
  // Subscriptions and group work: a node may lack both.
  auto group = groups_.holding();
  std::vector<lagging_subscriber> out;
  for (const auto& [id, events] : tracker_.lagging()) {
    lagging_subscriber l{id, events, tracker_.absent(id)};
    if (auto g = group.find(id); g != group.end()) {
      l.events += g->second.first;
      l.absent = l.absent || g->second.second;
      group.erase(g);
    }
    out.push_back(l);
  }
  for (const auto& [id, work] : group) out.push_back({id, work.first, work.second});
  return out;
}

std::map<wire::node_id_bytes, std::uint64_t> publisher_streams::oldest_unacknowledged(std::size_t max_topics) const {
  std::map<wire::node_id_bytes, std::uint64_t> out;
  std::size_t looked = 0;
  auto published_at = [](const transport::frame& f) -> std::uint64_t {
    std::string_view topic;
    wire::data_kind kind{};
    std::size_t body = 0;
    wire::batch_header h;
    if (wire::decode_data_prefix(f.bytes_view(), topic, kind, body) != wire::decode_status::ok ||
        wire::decode_batch_head(f.bytes_view(), body, h) != wire::decode_status::ok) {
      return 0;
    }
    return h.timestamp_ns;
  };
  tracker_.for_each_behind([&](const wire::node_id_bytes& id, std::string_view topic, std::uint64_t acked) {
    if (looked++ >= max_topics) return;
    auto found = history_.find(topic, acked + 1, acked + 1);
    if (found.batches.empty() && found.evicted_from != 0) {
      const auto oldest = history_.oldest(topic);
      found = history_.find(topic, oldest, oldest);
    }
    if (found.batches.empty()) return;
    const auto at = published_at(found.batches.front()->payload);
    if (at == 0) return;
    auto [it, added] = out.emplace(id, at);
    if (!added) it->second = std::min(it->second, at);
  });
  return out;
}

void publisher_streams::release_group_work(const wire::node_id_bytes& id, clock::time_point now) {
  if (subscribers_.count(id) != 0) return;  // known again (a new session): nothing of the old to hand on
  group_sends_.clear();
  groups_.leave("", id, now, group_sends_);
  send_all(group_sends_);
}

void publisher_streams::resend(const wire::node_id_bytes& to, std::string_view topic, std::uint64_t from,
                               std::uint64_t to_seq, std::size_t& budget) {
  const auto found = history_.find(topic, from, to_seq);
  if (found.beyond_sent) bump(counters_.bad_nacks);
  if (found.evicted_from != 0 && backing_ != nullptr) {
    // Older than memory holds: from the durable log first, so the subscriber gets
    // the range in order; what it lacks too is lost.
    const auto lost = backing_->fetch(topic, found.evicted_from, found.evicted_to, budget,
                                      [&](transport::frame&& f) {
                                        bump(counters_.repairs_sent);
                                        sink_.send_repair(to, std::move(f));
                                      });
    for (const auto& r : lost) {
      bump(counters_.losses_sent);
      sink_.send_loss(to, wire::loss_msg{epoch_, std::string(topic), r.from, r.to});
    }
  }
  for (const auto* b : found.batches) {
    if (budget == 0) break;
    --budget;
    bump(counters_.repairs_sent);
    sink_.send_repair(to, b->payload.share());
  }
  if (found.evicted_from != 0 && backing_ == nullptr) {
    bump(counters_.losses_sent);
    sink_.send_loss(to, wire::loss_msg{epoch_, std::string(topic), found.evicted_from, found.evicted_to});
  }
}

void publisher_streams::on_nack(const wire::node_id_bytes& from, const wire::nack_msg& m,
                                clock::time_point now) {
  bump(counters_.nacks_received);
  if (m.epoch != epoch_) {
    bump(counters_.bad_nacks);  // meant for an earlier life of this node
    return;
  }
  if (wire::is_group_stream(m.topic)) {
    // Group work: a member's own assignments again, or, for a member that no longer
    // serves the group as it did, to the others; LOSS for the numbers it does not hold.
    const auto group = std::string(wire::group_of_stream(m.topic));
    std::vector<seq_range> gone;
    bool ok = true;
    group_sends_.clear();
    for (const auto& [first, last] : m.ranges)
      ok = groups_.nack(from, group, first, last, now, group_sends_, gone) && ok;
    if (!ok) bump(counters_.bad_nacks);
    send_all(group_sends_);
    for (const auto& r : gone) {
      bump(counters_.losses_sent);
      sink_.send_loss(from, wire::loss_msg{epoch_, m.topic, r.from, r.to});
    }
    return;
  }
  std::size_t budget = repair_budget;
  for (const auto& [first, last] : m.ranges) resend(from, m.topic, first, last, budget);
}

void publisher_streams::on_ack(const wire::node_id_bytes& from, const wire::ack_msg& m,
                               clock::time_point now) {
  bump(counters_.acks_received);
  if (m.epoch != epoch_) {
    bump(counters_.bad_acks);
    return;
  }
  for (const auto& [topic, seq] : m.acks) {
    const bool ok = wire::is_group_stream(topic)
                        ? groups_.ack(from, std::string(wire::group_of_stream(topic)), seq, now)
                        : tracker_.ack(from, topic, seq, now) == ack_result::ok;
    if (!ok) bump(counters_.bad_acks);
  }
}

void publisher_streams::tick(clock::time_point now) {
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

std::vector<std::pair<std::string, std::uint64_t>> publisher_streams::positions(std::size_t max) const {
  std::vector<std::pair<std::string, std::uint64_t>> out;
  for (const auto& [topic, generation] : topics_) {
    if (out.size() >= max) break;
    out.emplace_back(topic, history_.last_sent(topic));
  }
  return out;
}

}  // namespace meshbus::reliability
