// Service groups (competing consumers) between real nodes: each event handled by one
// member, work spread by load, a member leaving or joining mid-stream without loss
// or double handling, and the publisher being a member itself.
#include <catch2/catch.hpp>

#include <map>
#include <mutex>

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
    for (const auto& [k, v] : times_) n += v > 1 ? 1 : 0;
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

TEST_CASE("group work published before any member exists waits for one", "[integration][groups]") {
  const auto cluster = unique_cluster("group-wait");
  Node pub(fast_options(cluster, "pub"));
  Node early(fast_options(cluster, "early"));  // an ordinary subscriber, so the topic is live
  early.subscribe("late.*", [](const Event&) {});
  REQUIRE(pub.wait_for_subscribers("late.x", 1, 10s));
  tally t;
  auto member = std::make_unique<Node>(fast_options(cluster, "m"));
  member->subscribe("late.*", t.member("m"), in_group("g"));
  REQUIRE(eventually([&] { return !pub.peers().empty() && pub.peers().size() == 2; }, 10s));
  for (int i = 0; i < 100; ++i) REQUIRE(pub.publish("late.x", "e") == PublishResult::ok);
  REQUIRE(pub.flush(10s));
  REQUIRE(eventually([&] { return t.distinct() == 100; }, 10s));
}

TEST_CASE("one subscription per group per node", "[integration][groups]") {
  Node n(fast_options(unique_cluster("group-one"), "n"));
  n.subscribe("a.*", [](const Event&) {}, in_group("g"));
  CHECK_THROWS_WITH(n.subscribe("b.*", [](const Event&) {}, in_group("g")), Catch::Contains("one per group"));
  CHECK_THROWS_AS(n.subscribe("b.*", [](const Event&) {}, in_group("bad group")), error);
}
