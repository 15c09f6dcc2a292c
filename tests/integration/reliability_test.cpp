// Reliability between real nodes over real sockets: injected faults in both
// directions, flush by acks, late joiners, losses the publisher cannot repair, flow
// control, and acknowledged delivery with retries, dead letters and dedupe.
#include <catch2/catch.hpp>

#include <atomic>
#include <cstdlib>
#include <map>
#include <mutex>
#include <thread>

#include "tests/support/node_helpers.hpp"

using namespace meshbus;
using namespace meshbus::test;
using namespace std::chrono_literals;

namespace {

// Sets MESHBUS_FAULTS for the nodes constructed while it lives (read at construction).
struct faults_for_next_nodes {
  explicit faults_for_next_nodes(const char* plan) { setenv("MESHBUS_FAULTS", plan, 1); }
  ~faults_for_next_nodes() { unsetenv("MESHBUS_FAULTS"); }
};

// Checks each stream arrives complete, in order, without duplicates.
class order_check {
 public:
  Handler handler() {
    return [this](const Event& e) {
      std::lock_guard lock(mu_);
      auto& last = last_[std::string(e.topic())];
      if (e.sequence() != last + 1 || std::to_string(e.sequence()) != e.text()) ++bad_;
      last = e.sequence();
      ++total_;
    };
  }
  std::uint64_t total() const {
    std::lock_guard lock(mu_);
    return total_;
  }
  std::uint64_t bad() const {
    std::lock_guard lock(mu_);
    return bad_;
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::uint64_t> last_;
  std::uint64_t total_ = 0;
  std::uint64_t bad_ = 0;
};

void publish_numbered(Node& node, const std::string& topic, std::uint64_t from, std::uint64_t to) {
  for (auto i = from; i <= to; ++i) REQUIRE(node.publish(topic, std::to_string(i)) == PublishResult::ok);
}

}  // namespace

TEST_CASE("reliable delivery survives drops, reordering and duplicates in both directions", "[integration][reliability]") {
  const auto cluster = unique_cluster("faults");
  std::unique_ptr<Node> pub;
  std::unique_ptr<Node> sub;
  {
    faults_for_next_nodes f("drop=0.05,dup=0.01,reorder=0.1,delay=0.02,max_delay_ms=5,seed=11");
    pub = std::make_unique<Node>(fast_options(cluster, "pub"));
  }
  {
    faults_for_next_nodes f("drop=0.05,dup=0.01,reorder=0.1,delay=0.02,max_delay_ms=5,seed=12");
    sub = std::make_unique<Node>(fast_options(cluster, "sub"));
  }
  order_check check;
  sub->subscribe("f.*", check.handler());
  REQUIRE(pub->wait_for_subscribers("f.a", 1, 20s));
  const std::uint64_t n = 100000;
  for (std::uint64_t i = 1; i <= n; ++i) {
    // Small, spread-out batches: more messages for the faults to hit.
    REQUIRE(pub->publish(i % 3 ? "f.a" : "f.b", "") == PublishResult::ok);
  }
  REQUIRE(pub->flush(60s));
  REQUIRE(eventually([&] { return check.total() == n; }, 30s));
  const auto s = sub->stats();
  CHECK(s.events_lost == 0);
  CHECK(s.nacks_sent > 0);
  CHECK(s.repairs_received > 0);
  CHECK(pub->stats().repairs_sent > 0);
}

TEST_CASE("reliable delivery of numbered events through faults keeps every stream in order", "[integration][reliability]") {
  const auto cluster = unique_cluster("faults2");
  std::unique_ptr<Node> sub;
  Node pub(fast_options(cluster, "pub"));
  {
    faults_for_next_nodes f("drop=0.1,dup=0.02,reorder=0.2,seed=5");
    sub = std::make_unique<Node>(fast_options(cluster, "sub"));
  }
  order_check check;
  sub->subscribe("n.*", check.handler());
  REQUIRE(pub.wait_for_subscribers("n.x", 1, 20s));
  std::uint64_t next[3] = {1, 1, 1};
  for (int i = 0; i < 30000; ++i) {
    const int t = i % 3;
    REQUIRE(pub.publish("n." + std::to_string(t), std::to_string(next[t]++)) == PublishResult::ok);
  }
  REQUIRE(pub.flush(60s));
  REQUIRE(eventually([&] { return check.total() == 30000; }, 30s));
  CHECK(check.bad() == 0);
  CHECK(sub->stats().events_lost == 0);
}

TEST_CASE("flush waits until every reliable subscriber holds everything", "[integration][reliability]") {
  const auto cluster = unique_cluster("flush");
  Node pub(fast_options(cluster, "pub"));
  auto so = fast_options(cluster, "sub");
  so.background_thread = false;  // holds nothing until it is polled
  Node sub(so);
  std::uint64_t got = 0;
  sub.subscribe("fl.x", [&](const Event&) { ++got; });
  bool ready = false;
  std::thread waiter([&] { ready = pub.wait_for_subscribers("fl.x", 1, 10s); });
  while (!ready) {
    sub.poll_once(5ms);
    if (!waiter.joinable()) break;
    if (ready) break;
  }
  waiter.join();
  REQUIRE(ready);
  publish_numbered(pub, "fl.x", 1, 1000);
  CHECK_FALSE(pub.flush(300ms));  // the subscriber has not taken anything
  std::atomic<bool> flushed{false};
  std::thread flusher([&] { flushed = pub.flush(20s).flushed; });
  while (!flushed) sub.poll_once(5ms);
  flusher.join();
  CHECK(flushed);
  CHECK(got == 1000);
  CHECK(pub.stats().unacknowledged_events == 0);
}

TEST_CASE("late joiners start where they asked", "[integration][reliability]") {
  const auto cluster = unique_cluster("late");
  Node pub(fast_options(cluster, "pub"));
  publish_numbered(pub, "late.x", 1, 1000);
  REQUIRE(pub.flush(5s));

  SECTION("earliest: the whole history, then live, in order") {
    Node sub(fast_options(cluster, "sub"));
    order_check check;
    SubscribeOptions o;
    o.start = StartFrom::earliest();
    sub.subscribe("late.*", check.handler(), o);
    REQUIRE(pub.wait_for_subscribers("late.x", 1, 10s));
    REQUIRE(eventually([&] { return check.total() == 1000; }, 10s));
    publish_numbered(pub, "late.x", 1001, 1500);
    REQUIRE(eventually([&] { return check.total() == 1500; }, 10s));
    CHECK(check.bad() == 0);
  }
  SECTION("a sequence: from there on") {
    Node sub(fast_options(cluster, "sub"));
    std::mutex mu;
    std::vector<std::uint64_t> seqs;
    SubscribeOptions o;
    o.start = StartFrom::at(900);
    sub.subscribe("late.*", [&](const Event& e) {
      std::lock_guard lock(mu);
      seqs.push_back(e.sequence());
    }, o);
    REQUIRE(eventually([&] { std::lock_guard lock(mu); return seqs.size() == 101; }, 10s));
    CHECK(seqs.front() == 900);
    CHECK(seqs.back() == 1000);
  }
  SECTION("now: only what comes after the subscription took effect") {
    Node sub(fast_options(cluster, "sub"));
    std::mutex mu;
    std::vector<std::uint64_t> seqs;
    sub.subscribe("late.*", [&](const Event& e) {
      std::lock_guard lock(mu);
      seqs.push_back(e.sequence());
    });
    REQUIRE(pub.wait_for_subscribers("late.x", 1, 10s));
    publish_numbered(pub, "late.x", 1001, 1010);
    REQUIRE(pub.flush(5s));
    REQUIRE(eventually([&] { std::lock_guard lock(mu); return seqs.size() == 10; }, 10s));
    CHECK(seqs.front() == 1001);
    CHECK(sub.stats().events_lost == 0);
  }
}

TEST_CASE("what history no longer holds is reported as a loss, and the stream moves on", "[integration][reliability]") {
  const auto cluster = unique_cluster("evicted");
  auto po = fast_options(cluster, "pub");
  po.history_events = 100;
  po.window_events = 100;
  Node pub(po);
  for (std::uint64_t from = 1; from <= 1000; from += 50) {  // many batches, so history can drop old ones
    publish_numbered(pub, "ev.x", from, from + 49);
    REQUIRE(pub.flush(5s));
  }
  Node sub(fast_options(cluster, "sub"));
  std::mutex mu;
  std::vector<LossNotice> losses;
  std::vector<std::uint64_t> seqs;
  sub.on_loss([&](const LossNotice& n) {
    std::lock_guard lock(mu);
    losses.push_back(n);
  });
  SubscribeOptions o;
  o.start = StartFrom::at(1);
  sub.subscribe("ev.x", [&](const Event& e) {
    std::lock_guard lock(mu);
    seqs.push_back(e.sequence());
  }, o);
  REQUIRE(eventually([&] { std::lock_guard lock(mu); return !seqs.empty() && seqs.back() == 1000; }, 10s));
  std::lock_guard lock(mu);
  REQUIRE(losses.size() == 1);  // the notice came before the events after the lost range
  CHECK(losses[0].from == 1);
  CHECK(losses[0].to == seqs.front() - 1);
  CHECK(losses[0].reason == LossNotice::Reason::not_in_history);
  CHECK(losses[0].topic == "ev.x");
  CHECK(losses[0].publisher == pub.id());
  CHECK(seqs.size() <= 100 + 50);  // what history held, at most a batch more
  CHECK(sub.stats().events_lost == losses[0].to);
}

TEST_CASE("a full window makes publish wait or refuse, never drop", "[integration][reliability]") {
  const auto cluster = unique_cluster("window");
  auto po = fast_options(cluster, "pub");
  po.window_events = 1000;
  po.send_policy = SendPolicy::fail;
  po.send_queue_bytes = 64 << 10;
  Node pub(po);
  auto so = fast_options(cluster, "sub");
  so.background_thread = false;
  Node sub(so);
  std::uint64_t got = 0;
  sub.subscribe("w.x", [&](const Event&) { ++got; });
  std::atomic<bool> ready{false};
  std::thread waiter([&] { ready = pub.wait_for_subscribers("w.x", 1, 10s); });
  while (!ready) sub.poll_once(5ms);
  waiter.join();
  std::uint64_t accepted = 0;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pub.publish("w.x", "e") != PublishResult::ok) break;
    ++accepted;
  }
  CHECK(accepted >= 1000);
  // Bounded by the window plus what fits in the send queue (each event takes >= 5 bytes).
  CHECK(accepted < 1000 + (64 << 10) / 5);
  CHECK(pub.stats().unacknowledged_events <= 1000 + 4096);  // the window, give or take a batch
  CHECK(pub.stats().publish_would_block >= 1);
  // Once the subscriber takes and acknowledges, publishing goes on; nothing was lost.
  std::atomic<bool> flushed{false};
  std::thread flusher([&] { flushed = pub.flush(20s).flushed; });
  while (!flushed) sub.poll_once(5ms);
  flusher.join();
  CHECK(got == accepted);
  CHECK(pub.publish("w.x", "more") == PublishResult::ok);
}

TEST_CASE("acknowledged: a poison event is retried, dead-lettered, and can be replayed", "[integration][reliability]") {
  const auto cluster = unique_cluster("poison");
  Node pub(fast_options(cluster, "pub"));
  Node sub(fast_options(cluster, "sub"));
  std::mutex mu;
  std::map<std::string, int> calls;
  std::vector<std::string> handled;
  std::atomic<bool> heal{false};
  SubscribeOptions o;
  o.delivery = Delivery::acknowledged;
  o.max_deliver = 3;
  o.retry_backoff = 10ms;
  sub.subscribe("p.*", [&](const Event& e) {
    std::lock_guard lock(mu);
    const std::string text(e.text());
    ++calls[text];
    if (text == "poison" && !heal) throw std::runtime_error("cannot digest " + text);
    handled.push_back(std::string(e.topic()) + "/" + text);
  }, o);
  std::vector<std::string> announced;
  sub.subscribe("$dlq.**", [&](const Event& e) {
    std::lock_guard lock(mu);
    announced.push_back(std::string(e.topic()) + " " + std::string(e.header("dlq-reason").value_or("?")));
  });
  REQUIRE(pub.wait_for_subscribers("p.a", 1, 10s));
  REQUIRE(pub.publish("p.a", "one") == PublishResult::ok);
  REQUIRE(pub.publish("p.a", "poison") == PublishResult::ok);
  REQUIRE(pub.publish("p.a", "three") == PublishResult::ok);
  for (int i = 0; i < 100; ++i) REQUIRE(pub.publish("p.b", "other") == PublishResult::ok);
  REQUIRE(pub.flush(10s));  // acknowledged: only once handled or dead-lettered
  {
    std::lock_guard lock(mu);
    CHECK(calls["poison"] == 3);
    CHECK(std::count(handled.begin(), handled.end(), "p.b/other") == 100);
    // Order kept on the poisoned stream: "three" after the poison was given up.
    REQUIRE(handled.size() >= 2);
    CHECK(std::find(handled.begin(), handled.end(), "p.a/one") < std::find(handled.begin(), handled.end(), "p.a/three"));
  }
  const auto letters = sub.dead_letters();
  REQUIRE(letters.size() == 1);
  CHECK(letters[0].topic == "p.a");
  CHECK(letters[0].payload == "poison");
  CHECK(letters[0].attempts == 3);
  CHECK(letters[0].sequence == 2);
  CHECK(letters[0].pattern == "p.*");
  CHECK_THAT(letters[0].reason, Catch::Contains("cannot digest poison"));
  CHECK(sub.stats().dead_letters == 1);
  CHECK(sub.stats().handler_retries == 2);
  REQUIRE(eventually([&] { std::lock_guard lock(mu); return !announced.empty(); }, 5s));
  {
    std::lock_guard lock(mu);
    CHECK_THAT(announced[0], Catch::Contains("$dlq.p.a") && Catch::Contains("cannot digest"));
  }
  // Replayed while the handler still fails: dead-lettered again, replacing the old entry.
  REQUIRE(sub.replay_dead_letter(letters[0].id));
  REQUIRE(eventually([&] {
    const auto now = sub.dead_letters();
    return now.size() == 1 && now[0].id != letters[0].id;
  }, 5s));
  const auto again = sub.dead_letters()[0];
  CHECK(again.payload == "poison");
  // Replay once the handler can take it: delivered again, and it leaves the store.
  heal = true;
  REQUIRE(sub.replay_dead_letter(again.id));
  REQUIRE(eventually([&] { return sub.dead_letters().empty(); }, 5s));
  std::lock_guard lock(mu);
  CHECK(std::count(handled.begin(), handled.end(), "p.a/poison") == 1);
  CHECK_FALSE(sub.replay_dead_letter(again.id));
}

TEST_CASE("a dead letter can be replayed from another node", "[integration][reliability]") {
  const auto cluster = unique_cluster("remote-dlq");
  Node pub(fast_options(cluster, "pub"));
  Node sub(fast_options(cluster, "sub"));
  std::atomic<bool> heal{false};
  std::atomic<int> handled{0};
  SubscribeOptions o;
  o.delivery = Delivery::acknowledged;
  o.max_deliver = 1;
  sub.subscribe("r.x", [&](const Event&) {
    if (!heal) throw std::runtime_error("not yet");
    ++handled;
  }, o);
  REQUIRE(pub.wait_for_subscribers("r.x", 1, 10s));
  REQUIRE(pub.publish("r.x", "payload") == PublishResult::ok);
  REQUIRE(pub.flush(10s));
  REQUIRE(sub.dead_letters().size() == 1);
  std::mutex mu;
  std::string result;
  pub.subscribe("$meshbus.dlq.replayed", [&](const Event& e) {
    std::lock_guard lock(mu);
    result = std::string(e.header("dlq-result").value_or("?")) + " " + std::string(e.header("dlq-id").value_or("?"));
  });
  REQUIRE(sub.wait_for_subscribers("$meshbus.dlq.replayed", 1, 10s));
  REQUIRE(pub.wait_for_subscribers("$meshbus.dlq.replay", 1, 10s));
  heal = true;
  REQUIRE(pub.request_dead_letter_replay(sub.id(), sub.dead_letters()[0].id) == PublishResult::ok);
  REQUIRE(eventually([&] { std::lock_guard lock(mu); return !result.empty(); }, 10s));
  CHECK(result == "replayed 1");
  REQUIRE(eventually([&] { return handled == 1; }, 5s));
  CHECK(sub.dead_letters().empty());
  CHECK(pub.peers().at(0).subscriptions == std::vector<std::string>{"r.x"});  // its own are not shown
}

TEST_CASE("acknowledged: an event id already handled is not handled again", "[integration][reliability]") {
  const auto cluster = unique_cluster("dedupe");
  Node pub(fast_options(cluster, "pub"));
  Node sub(fast_options(cluster, "sub"));
  std::atomic<int> calls{0};
  SubscribeOptions o;
  o.delivery = Delivery::acknowledged;
  sub.subscribe("d.x", [&](const Event&) { ++calls; }, o);
  REQUIRE(pub.wait_for_subscribers("d.x", 1, 10s));
  PublishOptions same;
  same.event_id = "order-42-paid";
  PublishOptions other;
  other.event_id = "order-43-paid";
  REQUIRE(pub.publish("d.x", "x", same) == PublishResult::ok);
  REQUIRE(pub.publish("d.x", "x", same) == PublishResult::ok);
  REQUIRE(pub.publish("d.x", "y", other) == PublishResult::ok);
  REQUIRE(pub.flush(10s));
  REQUIRE(eventually([&] { return calls == 2; }, 5s));
  CHECK(sub.stats().duplicates_dropped >= 1);
}

TEST_CASE("acknowledged: the publisher's flush waits for the handlers", "[integration][reliability]") {
  const auto cluster = unique_cluster("ackflush");
  Node pub(fast_options(cluster, "pub"));
  Node sub(fast_options(cluster, "sub"));
  std::atomic<int> handled{0};
  SubscribeOptions o;
  o.delivery = Delivery::acknowledged;
  sub.subscribe("slow.x", [&](const Event&) {
    std::this_thread::sleep_for(2ms);
    ++handled;
  }, o);
  REQUIRE(pub.wait_for_subscribers("slow.x", 1, 10s));
  publish_numbered(pub, "slow.x", 1, 200);
  REQUIRE(pub.flush(20s));
  CHECK(handled == 200);  // acked only after each handler returned
}

TEST_CASE("a subscriber that missed the publisher's READY holds what arrives and asks again: nothing skipped",
          "[integration][reliability]") {
  // The READY says where "now" was when the subscription reached the publisher. Here
  // it is lost (everything the subscriber receives is dropped for its first 1.5 s),
  // and so are the first events. The subscriber must not start at whatever arrives
  // first after that: it holds it, asks for its READY again, and starts at 1.
  const auto cluster = unique_cluster("lostready");
  Node pub(fast_options(cluster, "pub"));
  std::unique_ptr<Node> sub;
  {
    faults_for_next_nodes f("cut_at_ms=0,cut_for_ms=1500");
    sub = std::make_unique<Node>(fast_options(cluster, "sub"));
  }
  order_check check;
  std::atomic<int> losses{0};
  sub->on_loss([&](const LossNotice&) { ++losses; });
  sub->subscribe("ready.data", check.handler());
  REQUIRE(pub.wait_for_subscribers("ready.data", 1, 10s));
  publish_numbered(pub, "ready.data", 1, 100);  // into the cut
  for (std::uint64_t i = 101; i <= 200; ++i) {  // across its end, at a steady pace
    REQUIRE(pub.publish("ready.data", std::to_string(i)) == PublishResult::ok);
    std::this_thread::sleep_for(20ms);
  }
  const bool flushed = pub.flush(20s).flushed;
  INFO("received " << check.total() << ", out of order " << check.bad() << ", losses " << losses);
  REQUIRE(flushed);
  CHECK(eventually([&] { return check.total() == 200; }, 10s));
  CHECK(check.bad() == 0);
  CHECK(losses == 0);
}
