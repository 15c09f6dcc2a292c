// 1,000,000 events through the fault injector, between the real stream state
// machines of both sides (publisher_streams and subscriber_streams) on a
// hand-driven clock: 5 % of data (first sends and repairs) dropped, 5 % of acks and
// NACKs dropped, 10 % reordered, 1 % duplicated, some delayed. Every event must
// reach the handler exactly once and in order, per stream. This file stands in for
// the node only where the node does I/O: it encodes a stand-in data frame, sends
// heartbeats, and carries messages through the injectors.
#include <catch2/catch.hpp>

#include <cstring>
#include <variant>

#include "lib/transport/fault_injector.hpp"
#include "tests/unit/reliability_support.hpp"

using namespace meshbus;
using namespace meshbus::reliability;
using namespace meshbus::test;
using namespace std::chrono_literals;

namespace {

constexpr std::uint64_t epoch = 7;
const auto publisher_id = node(1);
const auto subscriber_id = node(2);
constexpr int topics = 2;
const char* const topic_names[topics] = {"orders", "payments"};

// A stand-in data frame: the topic, a NUL, the first sequence and the count. What
// the state machines read of a frame is only its size and its leading topic.
transport::frame data_frame(int topic, std::uint64_t first, std::uint32_t count) {
  const std::string_view name = topic_names[topic];
  char bytes[32] = {};
  std::memcpy(bytes, name.data(), name.size());
  std::memcpy(bytes + name.size() + 1, &first, sizeof first);
  std::memcpy(bytes + name.size() + 1 + sizeof first, &count, sizeof count);
  return transport::frame(bytes, name.size() + 1 + sizeof first + sizeof count);
}

struct data_msg {
  transport::frame frame;
  bool repair = false;
};
struct heartbeat_msg {
  int topic = 0;
  std::uint64_t last = 0;
};
using to_subscriber = std::variant<data_msg, heartbeat_msg, wire::loss_msg>;
using to_publisher = std::variant<wire::nack_msg, wire::ack_msg>;

to_subscriber copy_down(const to_subscriber& m) {
  if (const auto* d = std::get_if<data_msg>(&m)) return data_msg{d->frame.share(), d->repair};
  if (const auto* h = std::get_if<heartbeat_msg>(&m)) return *h;
  return std::get<wire::loss_msg>(m);
}

struct result {
  std::uint64_t delivered = 0;
  std::uint64_t out_of_order = 0;
  std::uint64_t lost = 0;
  std::uint64_t repairs = 0;
  std::uint64_t nacks = 0;
  transport::fault_counters data_faults, control_faults;
};

// The network between the two sides, and what the subscriber's handlers saw.
struct lossy_link final : publisher_sink, subscriber_sink {
  lossy_link(transport::fault_plan data_plan, transport::fault_plan control_plan, clock::time_point start)
      : down(data_plan, copy_down, start),
        up(
            control_plan, [](const to_publisher& m) { return m; }, start) {}

  clock::time_point now{};
  transport::fault_injector<to_subscriber> down;
  transport::fault_injector<to_publisher> up;
  std::uint64_t expected[topics] = {1, 1};
  result r;

  // publisher_sink
  void send_repair(const wire::node_id_bytes&, transport::frame&& f) override {
    down.push(data_msg{std::move(f), true}, now);
  }
  void send_loss(const wire::node_id_bytes&, const wire::loss_msg& m) override { down.push(m, now); }
  void send_assignment(const wire::node_id_bytes&, const std::string&, std::uint64_t,
                       transport::frame&&) override {}
  void group_conflict(const wire::node_id_bytes&, const std::string&, const std::string&,
                      const std::string&) override {}
  void group_changed(const std::string&, const std::string&, const std::string&) override {}

  // subscriber_sink: the handlers run at once, in the order delivered.
  void deliver(std::size_t, const lane& l, lane_delivery&& d) override {
    const auto k = d.frame.view().substr(0, d.topic_size) == topic_names[0] ? 0 : 1;
    for (std::uint32_t i = d.skip; i < d.count; ++i) {
      const auto seq = d.first_seq + i;
      if (seq != expected[k]) ++r.out_of_order;
      expected[k] = seq + 1;
      ++r.delivered;
    }
    if (l.processed) l.processed->store(d.first_seq + d.count - 1);
  }
  void send_nack(const wire::node_id_bytes&, const wire::nack_msg& m) override { up.push(m, now); }
  void send_ack(const wire::node_id_bytes&, const wire::ack_msg& m) override { up.push(m, now); }
  void lost(std::size_t, const loss_report& report) override {
    const auto k = report.topic == topic_names[0] ? 0 : 1;
    if (report.range.from == expected[k]) expected[k] = report.range.to + 1;  // reported in order
    r.lost += report.range.to - report.range.from + 1;
  }
};

// The subscriber node's receiving: the frame's header, as the node decodes it.
void receive(subscriber_streams& sub, to_subscriber&& in, clock::time_point now) {
  if (auto* d = std::get_if<data_msg>(&in)) {
    const auto bytes = d->frame.view();
    const auto topic = bytes.substr(0, bytes.find('\0'));
    wire::batch_header h;
    h.publisher = publisher_id;
    h.epoch = epoch;
    std::memcpy(&h.first_seq, bytes.data() + topic.size() + 1, sizeof h.first_seq);
    std::memcpy(&h.count, bytes.data() + topic.size() + 1 + sizeof h.first_seq, sizeof h.count);
    h.events_offset = bytes.size();
    const std::string name(topic);
    sub.on_batch(std::move(d->frame), h, name, d->repair, now);
  } else if (const auto* hb = std::get_if<heartbeat_msg>(&in)) {
    sub.on_heartbeat(wire::heartbeat{publisher_id, epoch, hb->last, 0}, topic_names[hb->topic], now);
  } else {
    sub.on_loss(publisher_id, std::get<wire::loss_msg>(in), now);
  }
}

result simulate(std::uint64_t events_per_topic, transport::fault_plan data_plan,
                transport::fault_plan control_plan, delivery_mode mode) {
  auto now = clock::time_point{} + 1s;
  lossy_link net(data_plan, control_plan, now);
  net.now = now;
  counter_set counters;

  tracker_config tcfg;
  tcfg.window = 20000;
  tcfg.redelivery_timeout = 200ms;
  publisher_streams pub({1u << 22, std::size_t{1} << 40}, tcfg, group_config{}, epoch, net,
                        counters.publisher());
  test_source subscriptions;
  for (const auto* t : topic_names)
    subscriptions.add(t, mode, start_position{start_position::kind::sequence, 1});
  subscriber_streams sub(subscriber_config{}, subscriptions, net, counters.subscriber());
  std::vector<wire::pattern_spec> specs;
  for (const auto* t : topic_names) specs.push_back({t, static_cast<std::uint8_t>(mode), {}});
  pub.set_subscriber(subscriber_id, specs, true, now);

  std::uint64_t published[topics] = {};
  std::uint64_t rng = 12345;
  auto next_rand = [&] {
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return rng >> 33;
  };
  auto last_heartbeat = now;
  const std::uint64_t total = events_per_topic * topics;
  auto& r = net.r;
  // Run until everything is delivered and the publisher has heard every ack.
  for (int step = 0; (r.delivered + r.lost < total || !pub.all_acknowledged()) && step < 50'000'000; ++step) {
    now += 50us;
    net.now = now;
    // Publisher: one batch per step while the window allows.
    const int t = static_cast<int>(next_rand() % topics);
    if (!pub.window_full() && published[t] < events_per_topic) {
      const auto count = static_cast<std::uint32_t>(
          std::min<std::uint64_t>(1 + next_rand() % 8, events_per_topic - published[t]));
      auto frame = data_frame(t, published[t] + 1, count);  // small batches: many messages, many faults
      net.down.push(data_msg{frame.share(), false}, now);
      pub.sent(topic_names[t], published[t] + 1, count, std::move(frame), now);
      published[t] += count;
    }
    if (now - last_heartbeat >= 10ms) {
      for (int k = 0; k < topics; ++k) {
        if (published[k] != 0) net.down.push(heartbeat_msg{k, published[k]}, now);
      }
      last_heartbeat = now;
    }
    pub.tick(now);  // redeliveries
    // Subscriber.
    to_subscriber in;
    while (net.down.pop(in, now)) receive(sub, std::move(in), now);
    sub.tick(now);  // NACK retries and acks
    // Publisher: control messages.
    to_publisher ctl;
    while (net.up.pop(ctl, now)) {
      if (const auto* n = std::get_if<wire::nack_msg>(&ctl)) {
        pub.on_nack(subscriber_id, *n, now);
      } else {
        pub.on_ack(subscriber_id, std::get<wire::ack_msg>(ctl), now);
      }
    }
  }
  CHECK(pub.all_acknowledged());
  CHECK(value(counters.bad_acks) == 0);
  r.repairs = value(counters.repairs_sent);
  r.nacks = value(counters.nacks_received);
  r.data_faults = net.down.counters();
  r.control_faults = net.up.counters();
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
  CHECK(r.nacks > 100);
}

TEST_CASE("acknowledged mode also recovers through redelivery when NACKs are lost",
          "[unit][reliability][fault]") {
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

TEST_CASE("when history no longer holds a range the subscriber is told and moves on",
          "[unit][reliability][fault]") {
  // A subscriber that joins late asks for everything; the publisher kept only the tail.
  auto now = clock::time_point{} + 1s;
  lossy_link net({}, {}, now);
  net.now = now;
  counter_set counters;
  publisher_streams pub({100, 1 << 20}, tracker_config{}, group_config{}, epoch, net, counters.publisher());
  for (std::uint64_t s = 1; s <= 1000; s += 10) pub.sent("orders", s, 10, data_frame(0, s, 10), now);
  test_source subscriptions;
  subscriptions.add("orders", delivery_mode::reliable, start_position{start_position::kind::sequence, 1});
  subscriber_streams sub(subscriber_config{}, subscriptions, net, counters.subscriber());
  receive(sub, heartbeat_msg{0, 1000}, now);
  to_publisher ctl;
  REQUIRE(net.up.pop(ctl, now));
  REQUIRE(std::get<wire::nack_msg>(ctl).ranges ==
          std::vector<std::pair<std::uint64_t, std::uint64_t>>{{1, 1000}});
  pub.on_nack(subscriber_id, std::get<wire::nack_msg>(ctl), now);
  to_subscriber in;
  while (net.down.pop(in, now)) receive(sub, std::move(in), now);
  CHECK(net.r.lost == 900);
  CHECK(net.r.delivered == 100);
  CHECK(net.r.out_of_order == 0);  // the loss report came before 901
  CHECK(value(counters.losses_sent) == 1);
  CHECK(value(counters.repairs_sent) == 10);
}
