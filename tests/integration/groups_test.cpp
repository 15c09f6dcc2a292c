// Service groups (competing consumers) between real nodes: each event handled by one
// member, work spread by load, a member leaving or joining mid-stream without loss
// or double handling, the publisher being a member itself, and groups whose members
// subscribe several patterns (the group is its name and that set): each event to the
// handler of its pattern, a member with another set getting no work, a member
// unsubscribing one of its patterns and subscribing it again.
#include <catch2/catch.hpp>

#include <condition_variable>
#include <map>
#include <mutex>
#include <set>

#include "tests/support/node_helpers.hpp"

using namespace meshbus;
using namespace meshbus::test;
using namespace std::chrono_literals;

namespace {

// Counts, across all members, how often each event (topic/sequence) was handled.
class tally {
 public:
  Handler member(const std::string& name, std::chrono::microseconds work = {}) {
    return [this, name, work](const Event& e) {
      if (work.count() > 0) std::this_thread::sleep_for(work);
      std::lock_guard lock(mu_);
      ++times_[std::string(e.topic()) + "/" + std::to_string(e.sequence())];
      ++by_member_[name];
    };
  }
  std::size_t distinct() const {
    std::lock_guard lock(mu_);
    return times_.size();
  }
  std::size_t handled_more_than_once() const {
    std::lock_guard lock(mu_);
    std::size_t n = 0;
    for (const auto& [k, v] : times_) n += v > 1 ? 1u : 0u;
    return n;
  }
  std::map<std::string, std::size_t> by_member() const {
    std::lock_guard lock(mu_);
    return by_member_;
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, int> times_;
  std::map<std::string, std::size_t> by_member_;
};

SubscribeOptions in_group(const char* group) {
  SubscribeOptions o;
  o.group = group;
  return o;
}

// Who handled what, by member and by handler: for groups with several patterns.
class ledger {
 public:
  struct entry {
    std::string member;
    std::string handler;  ///< the pattern the handler was subscribed with
  };
  Handler handler(const std::string& member, const std::string& pattern,
                  std::chrono::microseconds work = {}) {
    return [this, member, pattern, work](const Event& e) {
      if (work.count() > 0) std::this_thread::sleep_for(work);
      std::lock_guard lock(mu_);
      handled_[key(e.topic(), e.sequence())].push_back({member, pattern});
    };
  }
  static std::string key(std::string_view topic, std::uint64_t seq) {
    return std::string(topic) + "/" + std::to_string(seq);
  }
  std::size_t distinct() const {
    std::lock_guard lock(mu_);
    return handled_.size();
  }
  std::size_t distinct(std::string_view topic) const {
    std::lock_guard lock(mu_);
    std::size_t n = 0;
    for (const auto& [k, v] : handled_) n += k.rfind(std::string(topic) + "/", 0) == 0 ? 1u : 0u;
    return n;
  }
  /// Events of `topic` handled more than once (by any handlers).
  std::size_t twice(std::string_view topic) const {
    std::lock_guard lock(mu_);
    std::size_t n = 0;
    for (const auto& [k, v] : handled_)
      n += k.rfind(std::string(topic) + "/", 0) == 0 && v.size() > 1 ? 1u : 0u;
    return n;
  }
  /// Events handled by `member` (any handler), or by its handler of `pattern`.
  std::size_t by(const std::string& member, const std::string& pattern = "") const {
    std::lock_guard lock(mu_);
    std::size_t n = 0;
    for (const auto& [k, v] : handled_) {
      for (const auto& e : v) n += e.member == member && (pattern.empty() || e.handler == pattern) ? 1u : 0u;
    }
    return n;
  }
  std::map<std::string, std::vector<entry>> all() const {
    std::lock_guard lock(mu_);
    return handled_;
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::vector<entry>> handled_;
};

// The group's faults as the publisher reports them (Options::on_error).
struct error_log {
  std::mutex mu;
  std::vector<std::string> messages;
  std::vector<std::error_code> codes;
  void attach(Options& o) {
    o.on_error = [this](std::error_code code, const std::string& what) {
      std::lock_guard lock(mu);
      messages.push_back(what);
      codes.push_back(code);
    };
  }
  bool has(errc code) {
    std::lock_guard lock(mu);
    return std::find(codes.begin(), codes.end(), make_error_code(code)) != codes.end();
  }
  bool mentions(const std::string& text) {
    std::lock_guard lock(mu);
    return std::any_of(messages.begin(), messages.end(),
                       [&](const std::string& m) { return m.find(text) != std::string::npos; });
  }
};

// Holds handlers until opened (at most 20 s, so that a failing test cannot hang).
class gate {
 public:
  void pass() {
    std::unique_lock lock(mu_);
    ++waiting_;
    cv_.wait_for(lock, 20s, [&] { return open_; });
    --waiting_;
  }
  void open() {
    {
      std::lock_guard lock(mu_);
      open_ = true;
    }
    cv_.notify_all();
  }
  bool waiting() {
    std::lock_guard lock(mu_);
    return waiting_ > 0;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
  int waiting_ = 0;
};

constexpr const char* charge = "shop.payment.charge";
constexpr const char* refund = "shop.payment.refund";

// `n` events on each of charge and refund, in runs of 50 (so that batches alternate),
// flushing now and then so that the work spreads over many batches.
void publish_payments(Node& pub, int n, int first = 0) {
  for (int i = first; i < first + n; ++i) {
    const bool run_of_refunds = (i / 50) % 2 == 1;
    REQUIRE(pub.publish(run_of_refunds ? refund : charge, std::to_string(i)) == PublishResult::ok);
    REQUIRE(pub.publish(run_of_refunds ? charge : refund, std::to_string(i)) == PublishResult::ok);
    if (i % 250 == 249) REQUIRE(pub.flush(20s));
  }
  REQUIRE(pub.flush(30s));
}

// A member of the "payments" group: charges and refunds, each with its own handler
// (taking `work` per event). Returns the refund subscription.
Subscription serve_payments(Node& node, ledger& l, const std::string& name, std::chrono::microseconds work = {}) {
  node.subscribe(charge, l.handler(name, charge, work), in_group("payments"));
  return node.subscribe(refund, l.handler(name, refund, work), in_group("payments"));
}

}  // namespace

TEST_CASE("each event is handled by exactly one member of a group, and the work is shared", "[integration][groups]") {
  const auto cluster = unique_cluster("group");
  Node pub(fast_options(cluster, "pub"));
  std::vector<std::unique_ptr<Node>> members;
  tally t;
  for (const char* name : {"m1", "m2", "m3"}) {
    members.push_back(std::make_unique<Node>(fast_options(cluster, name)));
    members.back()->subscribe("jobs.*", t.member(name), in_group("workers"));
  }
  // Another, ordinary subscriber still sees everything.
  Node audit(fast_options(cluster, "audit"));
  std::atomic<int> audited{0};
  audit.subscribe("jobs.*", [&](const Event&) { ++audited; });
  REQUIRE(pub.wait_for_subscribers("jobs.a", 4, 10s));
  for (int i = 0; i < 30000; ++i) {
    REQUIRE(pub.publish(i % 2 ? "jobs.a" : "jobs.b", std::to_string(i)) == PublishResult::ok);
    if (i % 500 == 0) REQUIRE(pub.flush(10s));  // many batches, to spread
  }
  REQUIRE(pub.flush(20s));
  REQUIRE(eventually([&] { return t.distinct() == 30000 && audited == 30000; }, 20s));
  CHECK(t.handled_more_than_once() == 0);
  const auto shares = t.by_member();
  REQUIRE(shares.size() == 3);
  for (const auto& [name, n] : shares) CHECK(n > 1000);
}

TEST_CASE("a member that leaves mid-stream hands over its work: nothing lost, nothing twice", "[integration][groups]") {
  const auto cluster = unique_cluster("group-leave");
  Node pub(fast_options(cluster, "pub"));
  tally t;
  auto m1 = std::make_unique<Node>(fast_options(cluster, "m1"));
  auto m2 = std::make_unique<Node>(fast_options(cluster, "m2"));
  m1->subscribe("work.x", t.member("m1", 50us), in_group("crew"));
  m2->subscribe("work.x", t.member("m2", 50us), in_group("crew"));
  REQUIRE(pub.wait_for_subscribers("work.x", 2, 10s));
  std::unique_ptr<Node> m3;
  for (int i = 1; i <= 20000; ++i) {
    REQUIRE(pub.publish("work.x", std::to_string(i)) == PublishResult::ok);
    if (i % 200 == 0) REQUIRE(pub.flush(20s));
    if (i == 6000) m2->stop();  // leaves with work queued
    if (i == 12000) {           // and a newcomer joins
      m3 = std::make_unique<Node>(fast_options(cluster, "m3"));
      m3->subscribe("work.x", t.member("m3", 50us), in_group("crew"));
    }
  }
  REQUIRE(pub.flush(30s));
  REQUIRE(eventually([&] { return t.distinct() == 20000; }, 30s));
  CHECK(t.handled_more_than_once() == 0);
  const auto shares = t.by_member();
  CHECK(shares.count("m3") == 1);
}

TEST_CASE("the publisher can be a member of the group it publishes to", "[integration][groups]") {
  const auto cluster = unique_cluster("group-self");
  Node pub(fast_options(cluster, "pub"));
  Node other(fast_options(cluster, "other"));
  tally t;
  pub.subscribe("self.x", t.member("pub"), in_group("g"));
  other.subscribe("self.x", t.member("other"), in_group("g"));
  REQUIRE(pub.wait_for_subscribers("self.x", 1, 10s));
  for (int i = 0; i < 2000; ++i) {
    REQUIRE(pub.publish("self.x", "e") == PublishResult::ok);
    if (i % 100 == 0) REQUIRE(pub.flush(10s));
  }
  REQUIRE(pub.flush(10s));
  REQUIRE(eventually([&] { return t.distinct() == 2000; }, 10s));
  CHECK(t.handled_more_than_once() == 0);
  CHECK(t.by_member().size() == 2);
}

TEST_CASE("a group subscription made after the node joined is announced, then gets the work", "[integration][groups]") {
  const auto cluster = unique_cluster("group-wait");
  Node pub(fast_options(cluster, "pub"));
  Node early(fast_options(cluster, "early"));  // an ordinary subscriber, so the topic is live
  early.subscribe("late.*", [](const Event&) {});
  REQUIRE(pub.wait_for_subscribers("late.x", 1, 10s));
  tally t;
  auto member = std::make_unique<Node>(fast_options(cluster, "m"));
  member->subscribe("late.*", t.member("m"), in_group("g"));
  // Its group subscription, not only the member itself, has to be known to the
  // publisher: a HELLO sent before subscribe() had none.
  REQUIRE(pub.wait_for_subscribers("late.x", 2, 10s));
  for (int i = 0; i < 100; ++i) REQUIRE(pub.publish("late.x", "e") == PublishResult::ok);
  REQUIRE(pub.flush(10s));
  REQUIRE(eventually([&] { return t.distinct() == 100; }, 10s));
}

TEST_CASE("a group with several patterns: each event once, to the handler of its pattern, work shared",
          "[integration][groups]") {
  const auto cluster = unique_cluster("group-multi");
  Node pub(fast_options(cluster, "pub"));
  ledger l;
  std::vector<std::unique_ptr<Node>> members;
  for (const char* name : {"m1", "m2", "m3"}) {
    members.push_back(std::make_unique<Node>(fast_options(cluster, name)));
    serve_payments(*members.back(), l, name);
  }
  REQUIRE(pub.wait_for_subscribers(charge, 3, 10s));
  REQUIRE(pub.wait_for_subscribers(refund, 3, 10s));
  constexpr int n = 5000;
  publish_payments(pub, n);
  REQUIRE(eventually([&] { return l.distinct() == 2 * n; }, 30s));
  CHECK(l.twice(charge) == 0);
  CHECK(l.twice(refund) == 0);
  std::size_t wrong_handler = 0;
  for (const auto& [key, handlers] : l.all()) {
    const auto topic = key.substr(0, key.find('/'));
    for (const auto& h : handlers) wrong_handler += h.handler == topic ? 0u : 1u;
  }
  CHECK(wrong_handler == 0);
  for (const char* name : {"m1", "m2", "m3"}) {
    INFO(name);
    CHECK(l.by(name, charge) > n / 20);
    CHECK(l.by(name, refund) > n / 20);
  }
}

TEST_CASE("an event that two of a member's group patterns match goes to one member, and to both its handlers",
          "[integration][groups]") {
  const auto cluster = unique_cluster("group-overlap");
  Node pub(fast_options(cluster, "pub"));
  ledger l;
  std::vector<std::unique_ptr<Node>> members;
  for (const char* name : {"m1", "m2"}) {
    members.push_back(std::make_unique<Node>(fast_options(cluster, name)));
    members.back()->subscribe("orders.*", l.handler(name, "orders.*"), in_group("g"));
    members.back()->subscribe("orders.eu", l.handler(name, "orders.eu"), in_group("g"));
  }
  REQUIRE(pub.wait_for_subscribers("orders.us", 2, 10s));
  constexpr int n = 2000;
  for (int i = 0; i < n; ++i) {
    REQUIRE(pub.publish(i % 100 < 50 ? "orders.eu" : "orders.us", "o") == PublishResult::ok);
    if (i % 200 == 199) REQUIRE(pub.flush(20s));
  }
  REQUIRE(pub.flush(20s));
  REQUIRE(eventually([&] { return l.distinct() == n; }, 20s));
  // Wait for the second handler of the last eu events too.
  REQUIRE(eventually([&] { return l.by("m1") + l.by("m2") == n + n / 2; }, 20s));
  std::size_t bad = 0;
  for (const auto& [key, handlers] : l.all()) {
    const bool eu = key.rfind("orders.eu/", 0) == 0;
    std::set<std::string> patterns;
    for (const auto& h : handlers) patterns.insert(h.handler);
    const bool one_member = std::all_of(handlers.begin(), handlers.end(), [&](const ledger::entry& h) {
      return h.member == handlers.front().member;
    });
    const bool right = eu ? handlers.size() == 2 && patterns == std::set<std::string>{"orders.*", "orders.eu"}
                          : handlers.size() == 1 && patterns == std::set<std::string>{"orders.*"};
    bad += one_member && right ? 0u : 1u;
  }
  CHECK(bad == 0);
  CHECK(l.by("m1") > 0);
  CHECK(l.by("m2") > 0);
}

TEST_CASE(
    "a member with several patterns that stops mid-stream hands over its work: nothing lost, nothing twice",
    "[integration][groups]") {
  const auto cluster = unique_cluster("group-multi-stop");
  Node pub(fast_options(cluster, "pub"));
  ledger l;
  std::vector<std::unique_ptr<Node>> members;
  for (const char* name : {"m1", "m2"}) {
    members.push_back(std::make_unique<Node>(fast_options(cluster, name)));
    serve_payments(*members.back(), l, name, 50us);
  }
  REQUIRE(pub.wait_for_subscribers(refund, 2, 10s));
  constexpr int n = 12000;  // in runs of 20 of each kind
  for (int i = 0; i < n; ++i) {
    REQUIRE(pub.publish((i / 20) % 2 == 0 ? charge : refund, std::to_string(i)) == PublishResult::ok);
    if (i % 400 == 399) REQUIRE(pub.flush(20s));
    if (i == n / 3 + 300) members[1]->stop();  // with work of both kinds queued
    if (i == 2 * n / 3) {
      members.push_back(std::make_unique<Node>(fast_options(cluster, "m3")));
      serve_payments(*members.back(), l, "m3", 50us);
    }
  }
  REQUIRE(pub.flush(30s));
  REQUIRE(eventually([&] { return l.distinct() == n; }, 30s));
  CHECK(l.twice(charge) == 0);
  CHECK(l.twice(refund) == 0);
  CHECK(l.by("m2") > 0);
  CHECK(l.by("m3") > 0);
}

TEST_CASE("a node that subscribes another set of patterns in a group gets no work, and is reported",
          "[integration][groups]") {
  const auto cluster = unique_cluster("group-conflict");
  auto po = fast_options(cluster, "pub");
  error_log errors;
  errors.attach(po);
  Node pub(po);
  ledger l;
  std::vector<std::unique_ptr<Node>> members;
  for (const char* name : {"m1", "m2", "m3"}) {
    members.push_back(std::make_unique<Node>(fast_options(cluster, name)));
    serve_payments(*members.back(), l, name);
  }
  REQUIRE(pub.wait_for_subscribers(refund, 3, 10s));
  // Charges only: not the group's set.
  Node odd(fast_options(cluster, "odd"));
  odd.subscribe(charge, l.handler("odd", charge), in_group("payments"));
  REQUIRE(pub.wait_for_subscribers(charge, 4, 10s));
  REQUIRE(eventually([&] { return errors.mentions("group 'payments'"); }, 10s));
  CHECK(pub.stats().group_conflicts >= 1);
  CHECK(pub.stats().malformed_messages == 0);  // a conflict is not bad input
  CHECK(errors.has(errc::group_conflict));
  constexpr int n = 3000;
  publish_payments(pub, n);
  REQUIRE(eventually([&] { return l.distinct() == 2 * n; }, 30s));
  CHECK(l.twice(charge) == 0);
  CHECK(l.twice(refund) == 0);
  CHECK(l.by("odd") == 0);
  for (const char* name : {"m1", "m2", "m3"}) CHECK(l.by(name) > 0);
}

TEST_CASE("a member that unsubscribes one of its group's patterns stops taking work, and comes back with it",
          "[integration][groups]") {
  // The group's set stays that of the majority: a member with one pattern fewer gets no
  // new work (conflict, reported), finishes what it holds, and hands back what it can
  // no longer handle; subscribing the pattern again makes it a member again.
  const auto cluster = unique_cluster("group-unsub");
  auto po = fast_options(cluster, "pub");
  error_log errors;
  errors.attach(po);
  Node pub(po);
  ledger l;
  std::vector<std::unique_ptr<Node>> members;
  std::map<std::string, Subscription> refunds;
  for (const char* name : {"m1", "m2", "m3"}) {
    members.push_back(std::make_unique<Node>(fast_options(cluster, name)));
    refunds[name] = serve_payments(*members.back(), l, name);
  }
  REQUIRE(pub.wait_for_subscribers(refund, 3, 10s));
  constexpr int n = 2000;
  publish_payments(pub, n);
  REQUIRE(eventually([&] { return l.distinct() == 2 * n; }, 30s));
  const auto m1_before = l.by("m1");
  CHECK(m1_before > 0);

  members[0]->unsubscribe(refunds["m1"]);
  REQUIRE(eventually([&] { return errors.mentions("group 'payments'"); }, 10s));
  publish_payments(pub, n, n);
  REQUIRE(eventually([&] { return l.distinct() == 4 * n; }, 30s));
  CHECK(l.by("m1") == m1_before);  // no new work, not even charges
  CHECK(l.twice(charge) == 0);
  CHECK(l.twice(refund) == 0);

  // Back with the same set: a member again, with its assignment numbers going on.
  members[0]->subscribe(refund, l.handler("m1", refund), in_group("payments"));
  int first = 2 * n;
  REQUIRE(eventually(
      [&] {
        publish_payments(pub, 100, first);
        first += 100;
        return l.by("m1") > m1_before;
      },
      20s));
  REQUIRE(eventually([&] { return l.distinct() == 2 * static_cast<std::size_t>(first); }, 30s));
  CHECK(l.twice(charge) == 0);
  CHECK(l.twice(refund) == 0);
}

TEST_CASE(
    "a member that unsubscribes one of its group's patterns mid-stream hands back what it cannot handle",
    "[integration][groups]") {
  // m1 is the only member at first, and its refund handler is held at the first
  // refund, so m1 holds work of both kinds. Then m2 joins and m1 unsubscribes refunds:
  // m1 finishes its charges itself and hands its refunds back; nothing is lost.
  const auto cluster = unique_cluster("group-unsub-mid");
  Node pub(fast_options(cluster, "pub"));
  ledger l;
  gate held;
  auto m1 = std::make_unique<Node>(fast_options(cluster, "m1"));
  m1->subscribe(charge, l.handler("m1", charge), in_group("payments"));
  const auto m1_refund = m1->subscribe(
      refund,
      [&, h = l.handler("m1", refund)](const Event& e) {
        held.pass();
        h(e);
      },
      in_group("payments"));
  REQUIRE(pub.wait_for_subscribers(refund, 1, 10s));
  constexpr int n = 2000;  // in runs of 20 of each kind
  for (int i = 0; i < n; ++i)
    REQUIRE(pub.publish((i / 20) % 2 == 0 ? charge : refund, "p") == PublishResult::ok);
  REQUIRE(eventually([&] { return held.waiting() && pub.stats().send_queue_bytes == 0; }, 10s));

  auto m2 = std::make_unique<Node>(fast_options(cluster, "m2"));
  serve_payments(*m2, l, "m2");
  REQUIRE(pub.wait_for_subscribers(refund, 2, 10s));
  m1->unsubscribe(m1_refund);
  held.open();
  for (int i = n; i < 2 * n; ++i)
    REQUIRE(pub.publish((i / 20) % 2 == 0 ? charge : refund, "p") == PublishResult::ok);
  REQUIRE(pub.flush(30s));
  REQUIRE(eventually([&] { return l.distinct() == 2 * n; }, 30s));
  CHECK(l.twice(charge) == 0);
  CHECK(l.by("m1", charge) >= n / 2);  // every charge it held, none after
  CHECK(l.by("m1", refund) == 1);      // the one its handler was in
  CHECK(l.by("m2", refund) >= n - 1);
  CHECK(pub.stats().losses_sent > 0);  // what it handed back, confirmed to it
  // The batch m1's refund handler was in when it unsubscribed may be handled twice.
  CHECK(l.twice(refund) <= 20);
}

TEST_CASE("a member that unsubscribes all its group's patterns mid-stream hands over its work",
          "[integration][groups]") {
  const auto cluster = unique_cluster("group-unsub-all");
  Node pub(fast_options(cluster, "pub"));
  ledger l;
  gate held;
  auto m1 = std::make_unique<Node>(fast_options(cluster, "m1"));
  const auto a = m1->subscribe(
      "work.a",
      [&, h = l.handler("m1", "work.a")](const Event& e) {
        held.pass();
        h(e);
      },
      in_group("crew"));
  const auto b = m1->subscribe("work.b", l.handler("m1", "work.b"), in_group("crew"));
  REQUIRE(pub.wait_for_subscribers("work.b", 1, 10s));
  constexpr int n = 2000;
  for (int i = 0; i < n; ++i) {
    REQUIRE(pub.publish((i / 20) % 2 == 0 ? "work.a" : "work.b", std::to_string(i)) == PublishResult::ok);
  }
  REQUIRE(eventually([&] { return held.waiting() && pub.stats().send_queue_bytes == 0; }, 10s));
  auto m2 = std::make_unique<Node>(fast_options(cluster, "m2"));
  m2->subscribe("work.a", l.handler("m2", "work.a"), in_group("crew"));
  m2->subscribe("work.b", l.handler("m2", "work.b"), in_group("crew"));
  REQUIRE(pub.wait_for_subscribers("work.b", 2, 10s));
  m1->unsubscribe(a);
  m1->unsubscribe(b);
  held.open();
  REQUIRE(pub.flush(30s));
  REQUIRE(eventually([&] { return l.distinct() == n; }, 30s));
  CHECK(l.by("m1") <= 20);  // at most the rest of the batch its handler was in
  CHECK(l.by("m2") >= n - 20);
}

TEST_CASE("when most of a group's nodes subscribe a new set, the group takes it over",
          "[integration][groups]") {
  // A rollout that adds a pattern: the old member keeps the group until the new set
  // has more nodes, then gets no new work (conflict, reported); nothing is lost.
  const auto cluster = unique_cluster("group-rollout");
  auto po = fast_options(cluster, "pub");
  error_log errors;
  errors.attach(po);
  Node pub(po);
  ledger l;
  Node old_member(fast_options(cluster, "old"));
  old_member.subscribe(charge, l.handler("old", charge), in_group("payments"));
  REQUIRE(pub.wait_for_subscribers(charge, 1, 10s));
  constexpr int n = 1000;
  for (int i = 0; i < n; ++i) REQUIRE(pub.publish(charge, "c") == PublishResult::ok);
  REQUIRE(pub.flush(20s));
  REQUIRE(eventually([&] { return l.by("old") == n; }, 20s));

  std::vector<std::unique_ptr<Node>> upgraded;
  for (const char* name : {"new1", "new2"}) {
    upgraded.push_back(std::make_unique<Node>(fast_options(cluster, name)));
    serve_payments(*upgraded.back(), l, name);
  }
  REQUIRE(pub.wait_for_subscribers(refund, 2, 10s));
  REQUIRE(eventually([&] { return errors.mentions("group 'payments'"); }, 10s));
  publish_payments(pub, n);
  REQUIRE(eventually([&] { return l.distinct() == 3 * n; }, 30s));
  CHECK(l.by("old") == n);  // nothing new
  CHECK(l.twice(charge) == 0);
  CHECK(l.twice(refund) == 0);
  CHECK(l.by("new1", refund) > 0);
  CHECK(l.by("new2", refund) > 0);
}

TEST_CASE("the publisher can be a member of a group with several patterns", "[integration][groups]") {
  const auto cluster = unique_cluster("group-self-multi");
  Node pub(fast_options(cluster, "pub"));
  Node other(fast_options(cluster, "other"));
  ledger l;
  for (auto* node : {&pub, &other}) {
    const std::string name = node == &pub ? "pub" : "other";
    serve_payments(*node, l, name);
  }
  REQUIRE(pub.wait_for_subscribers(refund, 1, 10s));
  constexpr int n = 2000;
  publish_payments(pub, n);
  REQUIRE(eventually([&] { return l.distinct() == 2 * n; }, 20s));
  CHECK(l.twice(charge) == 0);
  CHECK(l.twice(refund) == 0);
  CHECK(l.by("pub") > 0);
  CHECK(l.by("other") > 0);
}

TEST_CASE("the publisher as a member hands its own work back when it unsubscribes a pattern",
          "[integration][groups]") {
  // As "mid-stream" above, with the work looping back inside the publisher.
  const auto cluster = unique_cluster("group-self-unsub");
  Node pub(fast_options(cluster, "pub"));
  ledger l;
  gate held;
  pub.subscribe(charge, l.handler("pub", charge), in_group("payments"));
  const auto own_refund = pub.subscribe(
      refund,
      [&, h = l.handler("pub", refund)](const Event& e) {
        held.pass();
        h(e);
      },
      in_group("payments"));
  constexpr int n = 1000;
  for (int i = 0; i < n; ++i)
    REQUIRE(pub.publish((i / 20) % 2 == 0 ? charge : refund, "p") == PublishResult::ok);
  REQUIRE(eventually([&] { return held.waiting() && pub.stats().send_queue_bytes == 0; }, 10s));
  Node other(fast_options(cluster, "other"));
  serve_payments(other, l, "other");
  REQUIRE(pub.wait_for_subscribers(refund, 1, 10s));
  pub.unsubscribe(own_refund);
  held.open();
  // Once, this flush timed out (not reproduced since, 25 runs plain and under ASan):
  // if it does again, say who still holds what.
  const auto flushed = pub.flush(30s);
  INFO(flushed.describe() << "; publisher: " << nonzero_stats(pub) << "; other: " << nonzero_stats(other));
  REQUIRE(flushed);
  REQUIRE(eventually([&] { return l.distinct() == n; }, 30s));
  CHECK(l.twice(charge) == 0);
  CHECK(l.by("pub", refund) == 1);
  CHECK(l.by("other", refund) >= n / 2 - 1);
}

TEST_CASE("a node's ordinary subscription and its group subscription of one pattern both work",
          "[integration][groups]") {
  const auto cluster = unique_cluster("group-and-plain");
  Node pub(fast_options(cluster, "pub"));
  ledger group_work;
  std::atomic<int> plain{0};
  Node x(fast_options(cluster, "x"));
  Node y(fast_options(cluster, "y"));
  x.subscribe("jobs.*", [&](const Event&) { ++plain; });
  x.subscribe("jobs.*", group_work.handler("x", "jobs.*"), in_group("g"));
  y.subscribe("jobs.*", group_work.handler("y", "jobs.*"), in_group("g"));
  REQUIRE(pub.wait_for_subscribers("jobs.a", 2, 10s));
  constexpr int n = 3000;
  for (int i = 0; i < n; ++i) {
    REQUIRE(pub.publish("jobs.a", "j") == PublishResult::ok);
    if (i % 200 == 199) REQUIRE(pub.flush(20s));
  }
  REQUIRE(pub.flush(20s));
  REQUIRE(eventually([&] { return group_work.distinct() == n && plain == n; }, 20s));
  CHECK(group_work.twice("jobs.a") == 0);
  CHECK(group_work.by("x") > 0);
  CHECK(group_work.by("y") > 0);
}

TEST_CASE("a group's subscriptions on one node differ by pattern", "[integration][groups]") {
  Node n(fast_options(unique_cluster("group-same"), "n"));
  const auto first = n.subscribe(
      "a.*", [](const Event&) {}, in_group("g"));
  n.subscribe(
      "b.*", [](const Event&) {}, in_group("g"));  // another pattern: fine
  try {
    n.subscribe(
        "a.*", [](const Event&) {}, in_group("g"));
    FAIL("the same pattern twice in one group was accepted");
  } catch (const error& e) {
    CHECK(e.code_value() == errc::invalid_argument);
    CHECK_THAT(e.what(), Catch::Contains("'a.*'") && Catch::Contains("group 'g'"));
  }
  n.subscribe(
      "a.*", [](const Event&) {}, in_group("h"));  // another group
  n.subscribe("a.*", [](const Event&) {});         // an ordinary subscription
  n.unsubscribe(first);
  n.subscribe(
      "a.*", [](const Event&) {}, in_group("g"));  // once the first is gone
  CHECK_THROWS_AS(n.subscribe("b.*", [](const Event&) {}, in_group("bad group")), error);
}
