// 1,000,000 events through the fault injector, by the reliability state machines
// alone and a hand-driven clock: 5 % of data (first sends and repairs) dropped,
// 5 % of acks and NACKs dropped, 10 % reordered, 1 % duplicated, some delayed.
// Every event must reach the handler exactly once and in order, per stream.
#include <catch2/catch.hpp>

#include <variant>

#include "lib/reliability/delivery_tracker.hpp"
#include "lib/reliability/receive_window.hpp"
#include "lib/reliability/send_history.hpp"
#include "lib/transport/fault_injector.hpp"

using namespace meshbus;
using namespace meshbus::reliability;
using namespace std::chrono_literals;

namespace {

struct span_payload {
  std::uint64_t first = 0;
  std::uint32_t count = 0;
};
struct data_msg {
  int topic;
  span_payload span;
};
struct heartbeat_msg {
  int topic;
  std::uint64_t last;
};
struct loss_msg {
  int topic;
  seq_range range;
};
struct nack_msg {
  int topic;
  std::vector<seq_range> ranges;
};
struct ack_msg {
  int topic;
  std::uint64_t seq;
};
using to_subscriber = std::variant<data_msg, heartbeat_msg, loss_msg>;
using to_publisher = std::variant<nack_msg, ack_msg>;

constexpr int topics = 2;
const char* const topic_names[topics] = {"orders", "payments"};

struct result {
  std::uint64_t delivered = 0;
  std::uint64_t out_of_order = 0;
  std::uint64_t lost = 0;
  std::uint64_t repairs = 0;
  std::uint64_t nacks = 0;
  transport::fault_counters data_faults, control_faults;
};

result simulate(std::uint64_t events_per_topic, transport::fault_plan data_plan, transport::fault_plan control_plan,
                delivery_mode mode) {
  const wire::node_id_bytes subscriber{};
  auto now = clock::time_point{} + 1s;
  send_history<span_payload> history({1u << 22, std::size_t{1} << 40});
  tracker_config tcfg;
  tcfg.window = 20000;
  tcfg.redelivery_timeout = 200ms;
  delivery_tracker tracker(tcfg);
  transport::fault_injector<to_subscriber> down(data_plan, [](const to_subscriber& m) { return m; });
  transport::fault_injector<to_publisher> up(control_plan, [](const to_publisher& m) { return m; });

  std::vector<receive_window<span_payload>> windows;
  std::uint64_t published[topics] = {};
  std::uint64_t expected[topics] = {};
  std::uint64_t last_acked_sent[topics] = {};
  for (int t = 0; t < topics; ++t) {
    windows.emplace_back(mode, receive_config{}, 1);
    tracker.track(subscriber, topic_names[t], mode, 0, now);
    expected[t] = 1;
  }
  result r;
  std::uint64_t rng = 12345;
  auto next_rand = [&] {
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return rng >> 33;
  };
  receive_window<span_payload>::actions actions;
  auto last_heartbeat = now;
  std::vector<redelivery> due;

  auto send_repairs = [&](int t, seq_range range) {
    const auto found = history.find(topic_names[t], range.from, range.to);
    for (const auto* b : found.batches) {
      down.push(data_msg{t, b->payload}, now);
      ++r.repairs;
    }
    if (found.evicted_from != 0) down.push(loss_msg{t, {found.evicted_from, found.evicted_to}}, now);
  };

  const std::uint64_t total = events_per_topic * topics;
  // Run until everything is delivered and the publisher has heard every ack.
  for (int step = 0; (r.delivered + r.lost < total || !tracker.all_acknowledged()) && step < 50'000'000; ++step) {
    now += 50us;
    // Publisher: one batch per step while the window allows.
    const int t = static_cast<int>(next_rand() % topics);
    if (!tracker.window_full() && published[t] < events_per_topic) {
      const auto count = static_cast<std::uint32_t>(
          std::min<std::uint64_t>(1 + next_rand() % 8, events_per_topic - published[t]));
      const span_payload p{published[t] + 1, count};  // small batches: many messages, many faults
      published[t] += count;
      history.append(topic_names[t], p.first, count, count * 64u, p);
      tracker.sent(topic_names[t], published[t], now);
      down.push(data_msg{t, p}, now);
    }
    if (now - last_heartbeat >= 10ms) {
      for (int k = 0; k < topics; ++k) {
        if (published[k] != 0) down.push(heartbeat_msg{k, published[k]}, now);
      }
      last_heartbeat = now;
    }
    due.clear();
    tracker.due_redeliveries(now, due);
    for (const auto& d : due) {
      for (int k = 0; k < topics; ++k) {
        if (d.topic == topic_names[k]) send_repairs(k, d.range);
      }
    }
    // Subscriber.
    to_subscriber in;
    while (down.pop(in, now)) {
      actions.clear();
      int k = 0;
      if (const auto* d = std::get_if<data_msg>(&in)) {
        k = d->topic;
        windows[static_cast<std::size_t>(k)].on_batch(d->span.first, d->span.count, d->span.count * 64u,
                                                      span_payload(d->span), now, actions);
      } else if (const auto* h = std::get_if<heartbeat_msg>(&in)) {
        k = h->topic;
        windows[static_cast<std::size_t>(k)].on_last_sequence(h->last, now, actions);
      } else {
        const auto& l = std::get<loss_msg>(in);
        k = l.topic;
        windows[static_cast<std::size_t>(k)].on_loss(l.range, now, actions);
      }
      for (const auto& d : actions.deliver) {
        for (std::uint32_t i = d.skip; i < d.count; ++i) {
          const auto seq = d.first_seq + i;
          if (seq != expected[k]) ++r.out_of_order;
          expected[k] = seq + 1;
          ++r.delivered;
        }
      }
      for (const auto& l : actions.lost) r.lost += l.to - l.from + 1;
      if (!actions.nack.empty()) up.push(nack_msg{k, actions.nack}, now);
    }
    for (int k = 0; k < topics; ++k) {
      auto& w = windows[static_cast<std::size_t>(k)];
      actions.clear();
      w.tick(now, actions);
      if (!actions.nack.empty()) up.push(nack_msg{k, actions.nack}, now);
      // Cumulative acks, every 1 ms at most (as the node batches them).
      if (w.delivered_through() > last_acked_sent[k] && step % 20 == 0) {
        up.push(ack_msg{k, w.delivered_through()}, now);
        last_acked_sent[k] = w.delivered_through();
      }
      // Acks can be lost: send the current value again now and then.
      if (step % 4000 == 0 && w.delivered_through() != 0) up.push(ack_msg{k, w.delivered_through()}, now);
    }
    // Publisher: control messages.
    to_publisher ctl;
    while (up.pop(ctl, now)) {
      if (const auto* n = std::get_if<nack_msg>(&ctl)) {
        ++r.nacks;
        for (const auto& range : n->ranges) send_repairs(n->topic, range);
      } else {
        const auto& a = std::get<ack_msg>(ctl);
        tracker.ack(subscriber, topic_names[a.topic], a.seq, now);
      }
    }
  }
  CHECK(tracker.all_acknowledged());
  r.data_faults = down.counters();
  r.control_faults = up.counters();
  return r;
}

}  // namespace

TEST_CASE("a million events through drops, reordering and duplicates arrive once and in order",
          "[unit][reliability][fault]") {
  transport::fault_plan data;
  data.drop = 0.05;
  data.reorder = 0.10;
  data.duplicate = 0.01;
  data.delay = 0.01;
  data.max_delay = 5ms;
  data.seed = 1;
  transport::fault_plan control;
  control.drop = 0.05;
  control.reorder = 0.10;
  control.duplicate = 0.01;
  control.seed = 2;
  const auto r = simulate(500'000, data, control, delivery_mode::reliable);
  CHECK(r.delivered == 1'000'000);
  CHECK(r.lost == 0);
  CHECK(r.out_of_order == 0);
  // The faults really happened.
  CHECK(r.data_faults.dropped > 1000);
  CHECK(r.data_faults.reordered > 2000);
  CHECK(r.data_faults.duplicated > 200);
  CHECK(r.control_faults.dropped > 10);
  CHECK(r.repairs > 1000);
}

TEST_CASE("acknowledged mode also recovers through redelivery when NACKs are lost", "[unit][reliability][fault]") {
  transport::fault_plan data;
  data.drop = 0.05;
  data.reorder = 0.10;
  data.duplicate = 0.01;
  data.seed = 3;
  transport::fault_plan control;
  control.drop = 0.30;  // many NACKs and acks lost
  control.seed = 4;
  const auto r = simulate(50'000, data, control, delivery_mode::acknowledged);
  CHECK(r.delivered == 100'000);
  CHECK(r.lost == 0);
  CHECK(r.out_of_order == 0);
}

TEST_CASE("when history no longer holds a range the subscriber is told and moves on", "[unit][reliability][fault]") {
  // A subscriber that joins late asks for everything; the publisher kept only the tail.
  send_history<int> history({100, 1 << 20});
  for (std::uint64_t s = 1; s <= 1000; s += 10) history.append("t", s, 10, 10, static_cast<int>(s));
  receive_window<int> w(delivery_mode::reliable, receive_config{}, 1);
  receive_window<int>::actions out;
  const auto now = clock::time_point{};
  w.on_last_sequence(1000, now, out);
  REQUIRE(out.nack.size() == 1);
  const auto found = history.find("t", out.nack[0].from, out.nack[0].to);
  CHECK(found.evicted_from == 1);
  CHECK(found.evicted_to == 900);
  out.clear();
  w.on_loss({found.evicted_from, found.evicted_to}, now, out);
  CHECK(out.lost == std::vector<seq_range>{{1, 900}});
  std::uint64_t delivered = 0;
  for (const auto* b : found.batches) {
    out.clear();
    w.on_batch(static_cast<std::uint64_t>(b->payload), b->count, 10, int(b->payload), now, out);
    for (const auto& d : out.deliver) delivered += d.count - d.skip;
  }
  CHECK(delivered == 100);
  CHECK(w.delivered_through() == 1000);
  CHECK_FALSE(w.has_gap());
}
