// `meshbus trace ID`: the audit trail of one flow across the nodes of a cluster. Joins the
// mesh, waits for the peers to be ready for requests, asks them all (one request on
// "$meshbus.trace.request", docs/protocol.md §10) for the events they hold whose
// correlation id is ID (and the event whose id is ID), and collects their answers on a
// reply topic of its own until every peer asked has said "done" or --timeout passes. Then
// trace_print.cpp prints the causation tree and who answered.
#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>
#include <random>

#include "commands.hpp"
#include "lib/wire/envelope.hpp"
#include "output.hpp"
#include "trace.hpp"

namespace meshbus_tool {
namespace {

namespace wire = meshbus::wire;

struct trace_flags {
  std::string id;
  bool json = false;
  std::int64_t wait_ms = -1;  ///< -1: discovery_wait's default
  std::int64_t timeout_ms = 5000;
};

/// The answers to this run's request, from a handler thread for the main thread.
class answer_collector {
 public:
  answer_collector(std::uint64_t request_id, exit_latch& latch) : request_id_(request_id), latch_(latch) {}

  /// The nodes asked: once each has said "done", the run is over.
  void expect(const std::vector<meshbus::PeerInfo>& peers) {
    std::lock_guard lock(mu_);
    for (const auto& p : peers) {
      auto& a = answers_[p.id.to_string()];
      a.node = p.id;
      if (a.name.empty()) a.name = p.name;
    }
    expecting_ = true;
    finish_if_done();
  }

  void add(const meshbus::Event& event, const meshbus::NodeId& self) {
    wire::trace_reply reply;
    const auto payload = event.payload();
    if (wire::decode_trace_reply({reinterpret_cast<const std::uint8_t*>(payload.data()), payload.size()},
                                 reply) != wire::decode_status::ok) {
      std::lock_guard lock(mu_);
      ++malformed_;
      return;
    }
    if (reply.request_id != request_id_) return;  // an earlier run's answer
    meshbus::NodeId node;
    node.bytes = reply.node;
    if (node == self) return;  // this tool's own node holds nothing of the flow
    std::lock_guard lock(mu_);
    auto& a = answers_[node.to_string()];
    a.node = node;
    if (!reply.node_name.empty()) a.name = reply.node_name;
    if (reply.what == wire::trace_reply::kind::records) {
      for (auto& r : reply.records) a.records.push_back(std::move(r));
      return;
    }
    a.done = true;
    a.count = reply.count;
    a.status = reply.status;
    a.note = reply.note;
    if (a.records.size() != a.count && a.status != wire::trace_status::refused) {
      a.status = wire::trace_status::incomplete;
      a.note += (a.note.empty() ? "" : "; ") + std::string("received ") + std::to_string(a.records.size()) +
                " of the " + std::to_string(a.count) + " records it sent";
    }
    finish_if_done();
  }

  std::vector<trace_answer> answers() const {
    std::lock_guard lock(mu_);
    std::vector<trace_answer> out;
    for (const auto& [id, a] : answers_) out.push_back(a);
    return out;
  }
  bool all_done() const {
    std::lock_guard lock(mu_);
    return expecting_ && every_done();
  }
  std::uint64_t malformed() const {
    std::lock_guard lock(mu_);
    return malformed_;
  }

 private:
  bool every_done() const {
    return std::all_of(answers_.begin(), answers_.end(), [](const auto& a) { return a.second.done; });
  }
  void finish_if_done() {
    if (expecting_ && every_done()) latch_.finish(exit_code::ok);
  }

  const std::uint64_t request_id_;
  exit_latch& latch_;
  mutable std::mutex mu_;
  std::map<std::string, trace_answer> answers_;  ///< by node id: one answer per node, in id order
  bool expecting_ = false;
  std::uint64_t malformed_ = 0;
};

std::uint64_t random_request_id() {
  std::random_device random;
  return (std::uint64_t{random()} << 32) ^ random();
}

int run_trace(const node_flags& node_opts, const trace_flags& flags, exit_latch& latch) {
  if (flags.id.empty() || flags.id.size() > wire::max_short_field) {
    throw usage_error("ID (a correlation id, or the id of a flow's first event) must be 1 to " +
                      std::to_string(wire::max_short_field) + " bytes long; this one has " +
                      std::to_string(flags.id.size()));
  }
  const auto request_id = random_request_id();
  answer_collector collector(request_id, latch);  // before the node, so the node goes first
  auto node = start_node(node_opts, {});
  const auto self = node->id();
  // "earliest": if an answer overtakes this subscription at the answering node's PUB, that
  // node's READY still shows it to us and it is repaired from its history.
  meshbus::SubscribeOptions subscribe_options;
  subscribe_options.start = meshbus::StartFrom::earliest();
  const auto reply_topic = wire::trace_reply_topic(self.bytes);
  node->subscribe(
      reply_topic, [&collector, self](const meshbus::Event& event) { collector.add(event, self); },
      subscribe_options);
  discover_peers(*node, discovery_wait(node_opts, flags.wait_ms), latch);
  if (latch.finished()) return exit_code::ok;  // interrupted
  const auto peers = node->peers();
  const auto deadline = steady::now() + milliseconds(flags.timeout_ms);
  // Every node subscribes the request topic: once every known peer is a ready subscriber,
  // none of them misses the request. One that is not ready by the deadline is asked anyway.
  wait_interruptibly(latch, deadline, [&](milliseconds step) {
    return node->wait_for_subscribers(wire::trace_request_topic, peers.size(), step);
  });
  if (latch.finished()) return exit_code::ok;
  collector.expect(peers);
  const auto sent = publish_retrying([&] { return node->request_trace(flags.id, reply_topic, request_id); },
                                     deadline, latch);
  if (sent == publish_outcome::published && !peers.empty()) latch.wait_until(deadline);
  const bool interrupted = latch.finished() && !collector.all_done();
  node->stop();
  if (peers.empty()) {
    print_error("no nodes found in cluster '" + node->cluster() + "': nobody to ask");
  } else if (sent != publish_outcome::published && !interrupted) {
    print_error("timed out after " + to_ms_text(milliseconds(flags.timeout_ms)) +
                ": the trace request could not be sent");
  }
  if (const auto bad = collector.malformed(); bad > 0) {
    print_error(std::to_string(bad) + " answer" + (bad == 1 ? "" : "s") +
                " that did not decode were ignored");
  }
  const auto found = print_trace(flags.id, collector.answers(), flags.json);
  if (found == 0) {
    print_error("no events of flow " + display_text(flags.id) + " on the nodes that answered");
    return exit_code::failure;
  }
  return exit_code::ok;
}

}  // namespace

command add_trace_command(CLI::App& parent, node_flags& node) {
  auto flags = std::make_shared<trace_flags>();
  auto* app = parent.add_subcommand(
      "trace",
      "The audit trail of one flow across the nodes: every event whose correlation id is ID (and the\n"
      "event whose id is ID), asked of every node, printed as a tree by causation");
  add_node_flags(*app, node);
  app->add_option("id", flags->id, "The flow's correlation id (or the id of its first event)")
      ->type_name("ID")
      ->required();
  app->add_flag("--json", flags->json,
                "One JSON document: the tree (each event with its children) and the nodes that "
                "answered and did not");
  app->add_option("--wait", flags->wait_ms,
                  "How long to look for nodes, in ms (default: 1.5 x beacon interval)")
      ->type_name("MS")
      ->check(non_negative_number());
  app->add_option("--timeout", flags->timeout_ms,
                  "Bound in ms for the nodes to be ready and to answer (default 5000); nodes that have not "
                  "answered by then are listed as silent")
      ->type_name("MS")
      ->check(positive_number());
  app->footer(
      "\nOne line per event, indented under the event that caused it (its causation id), in time order:\n"
      "  <time> <node> <topic> <type>/<version> id=<event id>\n"
      "A cause no node holds (gone with retention, or with a node that had no --data-dir) is shown as\n"
      "'(not held: <id>)' with the events it caused below it. Then the nodes that answered (with how\n"
      "many events each held) and those that did not. Exit 0 when events were found, 1 when none.\n" +
      footer(
          "  meshbus trace checkout-42\n"
          "  meshbus trace --cluster shop --timeout 10000 --json 1a2b3c4d5e6f708192a3b4c5d6e7f809-17-3\n"));
  return {app, [flags, &node](exit_latch& latch) { return run_trace(node, *flags, latch); }};
}

}  // namespace meshbus_tool
