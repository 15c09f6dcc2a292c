// What `meshbus dlq list` and `meshbus dlq replay` share: the topics of the dead-letter
// protocol (docs/protocol.md §6) and how a node is named on the command line.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "meshbus/meshbus.hpp"

namespace meshbus_tool {

/// Every dead letter is announced on "$dlq.<topic>" (or "$dlq" for very long topics).
constexpr std::string_view dlq_pattern = "$dlq.**";
/// Every node subscribes the requests and answers those addressed to it on the answer topic.
constexpr std::string_view replay_request_topic = "$meshbus.dlq.replay";
constexpr std::string_view replay_answer_topic = "$meshbus.dlq.replayed";

/// "<short id> (<name>)" of a peer, for messages.
std::string node_label(const meshbus::PeerInfo& peer);

}  // namespace meshbus_tool
