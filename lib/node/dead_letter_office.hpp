// dead_letter_office: what a node does with dead letters (docs/protocol.md §9). An
// acknowledged subscription that gives up on an event (handler threads) leaves it
// here: stored (dead_letter_store, bounded, oldest dropped and counted; in the durable
// log too when the node has one, so they outlive the process), reported,
// and announced on "$dlq.<topic>" so tools and other nodes see it. A dead letter is
// replayed to the subscription that failed it, on this node's request or on a replay
// request from anywhere ("$meshbus.dlq.replay", answered on "$meshbus.dlq.replayed").
// Any thread.
#pragma once

#include <functional>

#include "lib/node/dead_letters.hpp"
#include "lib/node/dispatcher.hpp"
#include "lib/node/node_context.hpp"
#include "lib/node/subscriptions.hpp"

namespace meshbus::detail {

class dead_letter_office {
 public:
  /// How the office publishes on meshbus's own '$' topics (publisher_side::publish).
  using publish_reserved = std::function<PublishResult(std::string_view topic, wire::byte_view payload,
                                                       const PublishOptions& po)>;
  dead_letter_office(node_context& ctx, dispatcher& handlers, subscription_registry& subs,
                     publish_reserved publish);

  /// An acknowledged subscription gave up on `event` (handler thread).
  void dead_letter(const Event& event, const subscription_entry& sub, std::string_view reason, unsigned attempts);
  std::vector<DeadLetter> list() const { return store_.list(); }
  std::size_t held() const { return store_.size(); }
  /// Delivers dead letter `id` again to the subscription that failed it (for a letter
  /// of an earlier run of the process, loaded from the durable log: the subscription
  /// with the same pattern, durable name and group); false if there is no such letter
  /// or no such subscription (the letter stays).
  bool replay(std::uint64_t id);
  /// Asks `node` to replay its dead letter `id`.
  PublishResult request_replay(const NodeId& node, std::uint64_t id);
  /// A replay request (handler thread): acted on if it is for this node.
  void answer_replay_request(const Event& request);

 private:
  void announce(const DeadLetter& d, std::uint64_t id, const Event& e);
  std::shared_ptr<subscription_entry> subscription_like(const DeadLetter& letter,
                                                        const dead_letter_store::origin& from) const;

  node_context& ctx_;
  dispatcher& handlers_;
  subscription_registry& subs_;
  publish_reserved publish_;
  dead_letter_store store_;
};

}  // namespace meshbus::detail
