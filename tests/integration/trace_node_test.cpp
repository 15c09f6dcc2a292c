// Trace requests between real nodes (docs/protocol.md §10): a node answers with what it
// holds of a flow — every epoch of its durable log and its history in memory, each event
// once — in chunks and a final "done"; it states a truncation and a refusal instead of
// going silent, and counts them.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <condition_variable>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>

#include "lib/wire/trace.hpp"
#include "tests/support/node_helpers.hpp"

using namespace meshbus;
using namespace meshbus::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

/// One node's answer to one request.
struct answer {
  std::vector<wire::trace_record> records;
  std::size_t chunks = 0;
  std::optional<wire::trace_reply> done;
};

/// Asks through `node` and collects the answers on its reply topic. What the handler
/// fills is shared with it, so the client may go before the node (whose handler
/// threads may still be delivering answers).
class trace_client {
 public:
  explicit trace_client(Node& node) : node_(node), topic_(wire::trace_reply_topic(node.id().bytes)) {
    SubscribeOptions o;
    o.start = StartFrom::earliest();
    node_.subscribe(
        topic_, [state = state_](const Event& e) { state->add(e); }, o);
  }

  std::uint64_t ask(const std::string& correlation_id) {
    const auto id = next_id_++;
    REQUIRE(node_.request_trace(correlation_id, topic_, id) == PublishResult::ok);
    return id;
  }

  /// `from`'s answer to request `id`, once its "done" came (nullopt after 20 s).
  std::optional<answer> answer_of(std::uint64_t id, const NodeId& from) {
    auto& s = *state_;
    std::unique_lock lock(s.mu);
    const auto key = std::make_pair(id, from.to_string());
    if (!s.cv.wait_for(lock, 20s,
                       [&] { return s.answers.count(key) != 0 && s.answers[key].done.has_value(); })) {
      return std::nullopt;
    }
    return s.answers[key];
  }

  std::size_t malformed() {
    std::lock_guard lock(state_->mu);
    return state_->malformed;
  }

 private:
  struct state {
    std::mutex mu;
    std::condition_variable cv;
    std::map<std::pair<std::uint64_t, std::string>, answer> answers;
    std::size_t malformed = 0;

    void add(const Event& e) {
      const auto p = e.payload();
      wire::trace_reply r;
      std::lock_guard lock(mu);
      if (wire::decode_trace_reply({reinterpret_cast<const std::uint8_t*>(p.data()), p.size()}, r) !=
          wire::decode_status::ok) {
        ++malformed;
        return;
      }
      NodeId from;
      from.bytes = r.node;
      auto& a = answers[{r.request_id, from.to_string()}];
      if (r.what == wire::trace_reply::kind::done) {
        a.done = std::move(r);
      } else {
        ++a.chunks;
        for (auto& rec : r.records) a.records.push_back(std::move(rec));
      }
      cv.notify_all();
    }
  };

  Node& node_;
  std::string topic_;
  std::shared_ptr<state> state_ = std::make_shared<state>();
  std::uint64_t next_id_ = 1;
};

std::string default_id(const Node& n, std::uint64_t seq) {
  return n.id().to_string() + "-" + std::to_string(n.epoch()) + "-" + std::to_string(seq);
}

std::set<std::string> ids_of(const answer& a) {
  std::set<std::string> out;
  for (const auto& r : a.records) out.insert(r.event_id);
  return out;
}

}  // namespace

TEST_CASE(
    "a node answers a trace with the flow's events from every epoch of its log and from memory, each once",
    "[integration][trace]") {
  const auto cluster = unique_cluster("tracelog");
  temp_dir dir;
  auto logged = fast_options(cluster, "orders");
  logged.data_dir = dir.path.string();
  std::string root;
  std::string paid;
  {
    Node first(logged);
    REQUIRE(first.publish("orders.placed", "order 1") == PublishResult::ok);
    root = default_id(first, 1);
    paid = "pay-1";
    REQUIRE(first.publish("orders.paid", "paid 1",
                          {.event_id = paid, .correlation_id = root, .causation_id = root}) ==
            PublishResult::ok);
    REQUIRE(first.publish("orders.placed", "order 2") == PublishResult::ok);  // another flow
    REQUIRE(first.flush(10s));
  }
  Node orders(logged);  // the same log: the first run's events are in it, this run's too
  REQUIRE(orders.publish("orders.shipped", "shipped 1",
                         {.event_id = "ship-1",
                          .type_name = "Shipped",
                          .type_version = 3,
                          .correlation_id = root,
                          .causation_id = paid}) == PublishResult::ok);
  REQUIRE(orders.flush(10s));
  Node asker(fast_options(cluster, "asker"));
  REQUIRE(asker.wait_for_subscribers(wire::trace_request_topic, 1, 20s));
  trace_client client(asker);

  const auto id = client.ask(root);
  const auto got = client.answer_of(id, orders.id());
  REQUIRE(got);
  CHECK(got->done->status == wire::trace_status::complete);
  CHECK(got->done->note.empty());
  CHECK(got->done->node_name == "orders");
  CHECK(got->done->count == 3);
  CHECK(got->records.size() == 3);
  CHECK(ids_of(*got) == std::set<std::string>{root, paid, "ship-1"});
  for (const auto& r : got->records) {
    CHECK(r.publisher == orders.id().bytes);
    if (r.event_id != "ship-1") continue;
    CHECK(r.topic == "orders.shipped");
    CHECK(r.type_name == "Shipped");
    CHECK(r.type_version == 3);
    CHECK(r.causation_id == paid);
    CHECK(r.correlation_id == root);
    CHECK(r.sequence == 1);
    CHECK(r.timestamp_ns > 0);
  }
  // The asker answers too, holding nothing of the flow.
  const auto own = client.answer_of(id, asker.id());
  REQUIRE(own);
  CHECK(own->records.empty());
  CHECK(own->done->count == 0);
  CHECK(orders.stats().trace_requests_answered == 1);

  // The answers themselves never become part of the flow: asked again, the same three.
  const auto again = client.answer_of(client.ask(root), orders.id());
  REQUIRE(again);
  CHECK(ids_of(*again) == std::set<std::string>{root, paid, "ship-1"});
  CHECK(client.malformed() == 0);
}

TEST_CASE("a node without a log answers from memory, and beyond the bound it says truncated, in chunks",
          "[integration][trace]") {
  const auto cluster = unique_cluster("tracebulk");
  Node busy(fast_options(cluster, "busy"));
  constexpr int events = 10005;
  for (int i = 1; i <= events; ++i) {
    REQUIRE(busy.publish("bulk.items", "item " + std::to_string(i), {.correlation_id = "bulk-flow"}) ==
            PublishResult::ok);
  }
  REQUIRE(busy.publish("bulk.items", "not of the flow") == PublishResult::ok);
  REQUIRE(busy.flush(20s));
  Node asker(fast_options(cluster, "asker"));
  REQUIRE(asker.wait_for_subscribers(wire::trace_request_topic, 1, 20s));
  trace_client client(asker);
  const auto got = client.answer_of(client.ask("bulk-flow"), busy.id());
  REQUIRE(got);
  CHECK(got->done->status == wire::trace_status::truncated);
  CHECK_THAT(got->done->note, Catch::Contains("more than 10000 events"));
  CHECK(got->done->count == 10000);
  CHECK(got->records.size() == 10000);
  CHECK(got->chunks >= 10000 / 256);
  std::set<std::uint64_t> sequences;
  for (const auto& r : got->records) sequences.insert(r.sequence);
  CHECK(sequences.size() == 10000);
  CHECK(*sequences.rbegin() <= static_cast<std::uint64_t>(events));
}

TEST_CASE("trace requests beyond the rate are answered refused and counted, never dropped silently",
          "[integration][trace]") {
  const auto cluster = unique_cluster("tracerate");
  Node holder(fast_options(cluster, "holder"));
  REQUIRE(holder.publish("a.b", "x", {.correlation_id = "flow"}) == PublishResult::ok);
  Node asker(fast_options(cluster, "asker"));
  REQUIRE(asker.wait_for_subscribers(wire::trace_request_topic, 1, 20s));
  trace_client client(asker);
  const auto began = std::chrono::steady_clock::now();
  std::vector<std::uint64_t> ids;
  for (int i = 0; i < 40; ++i) ids.push_back(client.ask("flow"));
  std::size_t complete = 0;
  std::size_t refused = 0;
  for (const auto id : ids) {
    const auto got = client.answer_of(id, holder.id());
    REQUIRE(got);
    if (got->done->status == wire::trace_status::refused) {
      ++refused;
      CHECK(got->records.empty());
      CHECK_THAT(got->done->note, Catch::Contains("try again later"));
    } else {
      ++complete;
      CHECK(got->done->status == wire::trace_status::complete);
      CHECK(got->records.size() == 1);
    }
  }
  const std::chrono::duration<double> took = std::chrono::steady_clock::now() - began;
  CHECK(complete + refused == 40);
  CHECK(complete >= 1);
  // A burst of 8, then 4 a second.
  CHECK(static_cast<double>(complete) <= 8 + 4 * took.count() + 1);
  CHECK(refused >= 1);
  const auto s = holder.stats();
  CHECK(s.trace_requests_refused == refused);
  CHECK(s.trace_requests_answered == complete);
}

TEST_CASE("request_trace refuses an empty or long correlation id and a reply topic of another kind",
          "[integration][trace]") {
  Node n(fast_options(unique_cluster("traceargs"), "n"));
  const auto reply = wire::trace_reply_topic(n.id().bytes);
  CHECK_THROWS_AS(n.request_trace("", reply, 1), error);
  CHECK_THROWS_AS(n.request_trace(std::string(256, 'x'), reply, 1), error);
  CHECK_THROWS_AS(n.request_trace("flow", "orders.placed", 1), error);
  CHECK_THROWS_AS(n.request_trace("flow", "$dlq.orders", 1), error);
  CHECK(n.request_trace("flow", reply, 1) == PublishResult::ok);
}
