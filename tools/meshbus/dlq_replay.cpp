// `meshbus dlq replay NODE ID`: finds the node, waits until it is ready for requests, asks it
// to deliver dead letter ID again and waits for its answer on the answer topic.
#include <algorithm>
#include <array>
#include <cctype>
#include <iostream>
#include <iterator>
#include <mutex>
#include <optional>

#include "commands.hpp"
#include "dlq.hpp"
#include "output.hpp"

namespace meshbus_tool {
namespace {

struct dlq_replay_flags {
  std::string node;  ///< 32 hex digits, or a prefix of a known peer's id
  std::uint64_t id = 0;
  std::int64_t wait_ms = -1;  ///< -1: discovery_wait's default
  std::int64_t timeout_ms = 10'000;
};

/// Hex digits only, at most 32: a node id or a prefix of one.
CLI::Validator node_id_check() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        const bool hex = std::all_of(text.begin(), text.end(),
                                     [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; });
        if (text.empty() || text.size() > 32 || !hex) {
          return "must be a node id (32 hex digits) or a prefix of one, not '" + text + "'";
        }
        std::transform(text.begin(), text.end(), text.begin(),
                       [](char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); });
        return {};
      },
      "", "");
}

std::vector<meshbus::PeerInfo> peers_matching(const std::vector<meshbus::PeerInfo>& peers, std::string_view prefix) {
  std::vector<meshbus::PeerInfo> out;
  std::copy_if(peers.begin(), peers.end(), std::back_inserter(out),
               [&](const meshbus::PeerInfo& p) { return p.id.to_string().starts_with(prefix); });
  return out;
}

/// The one known peer whose id starts with `prefix`; a usage_error naming the candidates otherwise.
meshbus::PeerInfo resolve_node(const std::vector<meshbus::PeerInfo>& peers, const std::string& prefix,
                               const std::string& cluster) {
  const auto matches = peers_matching(peers, prefix);
  if (matches.size() == 1) return matches.front();
  const auto& candidates = matches.empty() ? peers : matches;
  std::string listed;
  for (const auto& p : candidates) listed += "\n  " + p.id.to_string() + "  " + display_text(p.name);
  if (!matches.empty()) throw usage_error("node '" + prefix + "' is ambiguous; it matches:" + listed);
  if (peers.empty()) throw usage_error("no node '" + prefix + "': no peers in cluster '" + cluster + "'");
  throw usage_error("no known node matches '" + prefix + "'; the nodes of cluster '" + cluster + "' are:" + listed);
}

/// The answer to this run's request, from a handler thread.
class replay_answer {
 public:
  struct fields {
    std::string node;    ///< dlq-node
    std::string id;      ///< dlq-id
    std::string result;  ///< dlq-result
  };
  void set(fields answer) {
    std::lock_guard lock(mu_);
    if (!answer_) answer_ = std::move(answer);
  }
  std::optional<fields> get() const {
    std::lock_guard lock(mu_);
    return answer_;
  }

 private:
  mutable std::mutex mu_;
  std::optional<fields> answer_;
};

/// Subscribes the answer topic; the answer to this node's request finishes the latch.
void subscribe_answers(meshbus::Node& node, replay_answer& answer, exit_latch& latch) {
  // Answers name the request as their cause, and a request's event id starts with its
  // publisher's id: this node is new and sends one request, so the prefix singles out its answer.
  const auto cause_prefix = node.id().to_string() + "-";
  // "earliest": if the answer overtakes our subscription at the target's PUB, the target's READY
  // still shows it to us and it is repaired from the target's history; with "now" it would be
  // taken as sent before we subscribed.
  meshbus::SubscribeOptions subscribe_options;
  subscribe_options.start = meshbus::StartFrom::earliest();
  node.subscribe(
      wire::dead_letter_replayed_topic,
      [&answer, &latch, cause_prefix](const meshbus::Event& event) {
        if (!event.causation_id().starts_with(cause_prefix)) return;  // another request's answer
        answer.set({std::string(event.header(dlq_header::node).value_or("")),
                    std::string(event.header(dlq_header::id).value_or("")),
                    std::string(event.header(dlq_header::result).value_or(""))});
        latch.finish(exit_code::ok);
      },
      subscribe_options);
}

/// Every node subscribes the request topic, so wait_for_subscribers() counts them all and
/// cannot single out the target: waits until every known peer, the target among them, is ready.
bool wait_until_ready(meshbus::Node& node, const meshbus::PeerInfo& target, exit_latch& latch,
                      steady::time_point deadline) {
  return wait_interruptibly(latch, deadline, [&](milliseconds step) {
    const auto peers = node.peers();
    if (std::none_of(peers.begin(), peers.end(), [&](const meshbus::PeerInfo& p) { return p.id == target.id; })) {
      latch.wait_until(steady::now() + step);  // it left: wait for it to come back
      return false;
    }
    return node.wait_for_subscribers(wire::dead_letter_replay_topic, peers.size(), step);
  });
}

/// The exit code for the target's answer, with what it means on stdout or stderr.
int report_answer(const replay_answer::fields& answer, const meshbus::PeerInfo& target, std::uint64_t id) {
  const auto label = node_label(target);
  if (answer.node != target.id.to_string() || answer.id != std::to_string(id)) {
    print_error("node " + label + " answered for dead letter " + display_text(answer.id) + " of node " +
                display_text(answer.node) + " instead");
    return exit_code::failure;
  }
  if (answer.result == wire::dead_letter_replayed) {
    std::cout << "replayed dead letter " << id << " on " << label << std::endl;
    return exit_code::ok;
  }
  if (answer.result == wire::dead_letter_unknown) {
    print_error("no dead letter " + std::to_string(id) + " on " + label);
    return exit_code::failure;
  }
  print_error("node " + label + " gave an unexpected answer: " + display_text(answer.result));
  return exit_code::failure;
}

int run_dlq_replay(const node_flags& node_opts, const dlq_replay_flags& flags, exit_latch& latch) {
  replay_answer answer;  // before the node, so the node goes first
  auto node = start_node(node_opts, {});
  subscribe_answers(*node, answer, latch);
  discover_peers(*node, discovery_wait(node_opts, flags.wait_ms), latch,
                 [&](const std::vector<meshbus::PeerInfo>& peers) {
                   return !peers_matching(peers, flags.node).empty();
                 });
  if (latch.finished()) return exit_code::ok;
  const auto target = resolve_node(node->peers(), flags.node, node->cluster());
  const milliseconds timeout(flags.timeout_ms);
  const auto deadline = steady::now() + timeout;
  const bool ready = wait_until_ready(*node, target, latch, deadline);
  if (latch.finished()) return exit_code::ok;
  if (!ready) {
    print_error("timed out after " + to_ms_text(timeout) + " waiting for node " + node_label(target) +
                " to be ready for requests");
    return exit_code::timeout;
  }
  const auto sent =
      publish_retrying([&] { return node->request_dead_letter_replay(target.id, flags.id); }, deadline, latch);
  if (sent == publish_outcome::published) latch.wait_until(deadline);
  const auto result = answer.get();
  node->stop();
  if (result) return report_answer(*result, target, flags.id);
  if (latch.finished()) return exit_code::ok;  // interrupted
  print_error("timed out after " + to_ms_text(timeout) + ": node " + node_label(target) +
              (sent == publish_outcome::published ? " did not answer the replay request"
                                                  : " could not be sent the replay request"));
  return exit_code::timeout;
}

}  // namespace

command add_dlq_replay_command(CLI::App& dlq, node_flags& node) {
  auto flags = std::make_shared<dlq_replay_flags>();
  auto* app = dlq.add_subcommand(
      "replay", "Ask node NODE to deliver its dead letter DLQ_ID again to the subscription that failed it");
  add_node_flags(*app, node);
  app->add_option("node", flags->node,
                  "The node holding it: its id (32 hex digits) or a prefix unique among the known peers "
                  "(the NODE column of 'dlq list')")
      ->type_name("NODE")
      ->required()
      ->check(node_id_check());
  app->add_option("id", flags->id, "The dead letter's id on that node (the ID column)")
      ->type_name("DLQ_ID")
      ->required();
  app->add_option("--wait", flags->wait_ms, "How long to look for the node, in ms (default: 1.5 x beacon interval)")
      ->type_name("MS")
      ->check(non_negative_number());
  app->add_option("--timeout", flags->timeout_ms,
                  "Bound in ms for the node to be ready and to answer (default 10000); exit 3 after it")
      ->type_name("MS")
      ->check(positive_number());
  app->footer(
      footer("  meshbus dlq replay 1a2b3c4d 7\n"
             "  meshbus dlq replay --cluster orders 1a2b3c4d5e6f708192a3b4c5d6e7f809 7\n"));
  return {app, [flags, &node](exit_latch& latch) { return run_dlq_replay(node, *flags, latch); }};
}

}  // namespace meshbus_tool
