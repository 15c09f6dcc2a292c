// Test doubles for the stream state machines: subscriptions and their source,
// sinks that record what the machines hand out, and counters to map them onto.
#pragma once

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "lib/reliability/publisher_streams.hpp"
#include "lib/reliability/subscriber_streams.hpp"

namespace meshbus::test {

/// Counters the state machines' tallies point at.
struct counter_set {
  reliability::counter duplicates_dropped{0}, gaps{0}, reorder_overflow{0}, rejected_sequences{0},
      unknown_starts{0}, events_lost{0}, loss_notices{0}, nacks_sent{0}, acks_sent{0}, repairs_received{0},
      events_unmatched{0};
  reliability::counter nacks_received{0}, bad_nacks{0}, repairs_sent{0}, losses_sent{0}, redeliveries{0},
      acks_received{0}, bad_acks{0}, history_evicted{0}, group_reassignments{0}, group_backlog_dropped{0},
      group_out_of_scope{0};

  reliability::subscriber_counters subscriber() {
    return {duplicates_dropped, gaps,         reorder_overflow, rejected_sequences, unknown_starts,
            events_lost,        loss_notices, nacks_sent,       acks_sent,          repairs_received,
            events_unmatched};
  }
  reliability::publisher_counters publisher() {
    return {nacks_received,  bad_nacks,           repairs_sent,          losses_sent,
            redeliveries,    acks_received,       bad_acks,              history_evicted,
            group_reassignments, group_backlog_dropped, group_out_of_scope};
  }
};

inline std::uint64_t value(const reliability::counter& c) {
  return c.load();
}

class test_subscription final : public reliability::subscription {
 public:
  test_subscription(std::string_view pattern, reliability::delivery_mode mode,
                    reliability::start_position start, std::string group = {})
      : mode_(mode), start_(start), group_(std::move(group)) {
    std::string error;
    wire::pattern::compile(pattern, pattern_, error);
  }
  reliability::delivery_mode mode() const noexcept override { return mode_; }
  reliability::start_position start() const noexcept override { return start_; }
  const wire::pattern& pattern() const noexcept override { return pattern_; }
  bool active() const noexcept override { return active_.load(); }
  std::uint64_t generation() const noexcept override { return generation_; }
  const std::string& group() const noexcept { return group_; }

  std::atomic<bool> active_{true};
  std::uint64_t generation_ = 1;

 private:
  reliability::delivery_mode mode_;
  reliability::start_position start_;
  wire::pattern pattern_;
  std::string group_;
};

/// A node's subscriptions, added and removed by hand.
class test_source final : public reliability::subscription_source {
 public:
  std::shared_ptr<test_subscription> add(
      std::string_view pattern, reliability::delivery_mode mode = reliability::delivery_mode::reliable,
      reliability::start_position start = {reliability::start_position::kind::earliest, 1},
      std::string group = {}) {
    auto s = std::make_shared<test_subscription>(pattern, mode, start, std::move(group));
    subs_.push_back(s);
    ++generation_;
    return s;
  }
  void remove(const std::shared_ptr<test_subscription>& s) {
    s->active_ = false;
    subs_.erase(std::remove(subs_.begin(), subs_.end(), s), subs_.end());
    ++generation_;
  }

  std::uint64_t generation() const noexcept override { return generation_; }
  bool any_match(std::string_view topic) override { return !match(topic).empty(); }
  std::vector<reliability::subscription_ptr> match(std::string_view topic) override {
    std::vector<reliability::subscription_ptr> out;
    for (const auto& s : subs_) {
      if (s->group().empty() && s->pattern().matches(topic)) out.push_back(s);
    }
    return out;
  }
  std::vector<reliability::subscription_ptr> in_group(std::string_view group) override {
    std::vector<reliability::subscription_ptr> out;
    for (const auto& s : subs_) {
      if (s->group() == group) out.push_back(s);
    }
    return out;
  }

 private:
  std::vector<std::shared_ptr<test_subscription>> subs_;
  std::uint64_t generation_ = 1;
};

/// Records everything the subscriber side hands out, in order.
struct recording_subscriber_sink final : reliability::subscriber_sink {
  struct delivered {
    std::size_t key = 0;
    reliability::lane lane;
    reliability::lane_delivery d;
  };
  struct loss {
    std::size_t key = 0;
    reliability::loss_report report;
  };
  std::vector<delivered> deliveries;
  std::vector<wire::nack_msg> nacks;
  std::vector<wire::ack_msg> acks;
  std::vector<loss> losses;
  /// "d<first>-<last>" and "l<from>-<to>" in the order they came.
  std::vector<std::string> order;

  void deliver(std::size_t key, const reliability::lane& l, reliability::lane_delivery&& d) override {
    order.push_back("d" + std::to_string(d.first_seq + d.skip) + "-" +
                    std::to_string(d.first_seq + d.count - 1));
    deliveries.push_back({key, l, std::move(d)});
  }
  void send_nack(const wire::node_id_bytes&, const wire::nack_msg& m) override { nacks.push_back(m); }
  void send_ack(const wire::node_id_bytes&, const wire::ack_msg& m) override { acks.push_back(m); }
  void lost(std::size_t key, const reliability::loss_report& r) override {
    order.push_back("l" + std::to_string(r.range.from) + "-" + std::to_string(r.range.to));
    losses.push_back({key, r});
  }
  void clear() {
    deliveries.clear();
    nacks.clear();
    acks.clear();
    losses.clear();
    order.clear();
  }
};

/// Records everything the publisher side sends.
struct recording_publisher_sink final : reliability::publisher_sink {
  struct sent_frame {
    wire::node_id_bytes to{};
    std::string group;  ///< empty for a repair
    std::uint64_t seq = 0;
    transport::frame frame;
  };
  std::vector<sent_frame> repairs, assignments;
  std::vector<std::pair<wire::node_id_bytes, wire::loss_msg>> losses;
  std::vector<std::string> conflicts, changes;

  void send_repair(const wire::node_id_bytes& to, transport::frame&& f) override {
    repairs.push_back({to, {}, 0, std::move(f)});
  }
  void send_loss(const wire::node_id_bytes& to, const wire::loss_msg& m) override {
    losses.emplace_back(to, m);
  }
  void send_assignment(const wire::node_id_bytes& to, const std::string& group, std::uint64_t seq,
                       transport::frame&& f) override {
    assignments.push_back({to, group, seq, std::move(f)});
  }
  void group_conflict(const wire::node_id_bytes&, const std::string& group, const std::string& patterns,
                      const std::string& group_patterns) override {
    conflicts.push_back(group + " " + patterns + " vs " + group_patterns);
  }
  void group_changed(const std::string& group, const std::string& before, const std::string& now) override {
    changes.push_back(group + " " + before + " -> " + now);
  }
};

inline wire::node_id_bytes node(std::uint8_t n) {
  wire::node_id_bytes id{};
  id[0] = n;
  return id;
}

/// A data frame as the state machines see it: the topic first, then anything.
inline transport::frame batch_frame(std::string_view topic, std::size_t payload = 8) {
  std::string bytes(topic);
  bytes.append(payload, 'x');
  return transport::frame(bytes);
}

inline wire::batch_header batch(const wire::node_id_bytes& publisher, std::uint64_t epoch,
                                std::uint64_t first, std::uint32_t count, std::string_view topic) {
  wire::batch_header h;
  h.publisher = publisher;
  h.epoch = epoch;
  h.first_seq = first;
  h.count = count;
  h.events_offset = topic.size();
  return h;
}

}  // namespace meshbus::test
