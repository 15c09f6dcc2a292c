// What `meshbus dlq list` and `meshbus dlq replay` share: the names of the dead-letter
// protocol (docs/protocol.md §6, from lib/wire, where the nodes take them too) and how a
// node is named on the command line.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "lib/wire/dead_letter.hpp"
#include "meshbus/meshbus.hpp"

namespace meshbus_tool {

/// Every dead letter is announced on "$dlq.<topic>" (or "$dlq" for very long topics), which
/// wire::dead_letter_pattern matches. Every node subscribes wire::dead_letter_replay_topic and
/// answers the requests addressed to it on wire::dead_letter_replayed_topic.
namespace wire = meshbus::wire;
/// The header names of announcements and answers.
namespace dlq_header = meshbus::wire::dead_letter_header;

/// "<short id> (<name>)" of a peer, for messages.
std::string node_label(const meshbus::PeerInfo& peer);

}  // namespace meshbus_tool
