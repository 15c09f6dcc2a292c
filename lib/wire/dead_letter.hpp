// The names of meshbus's dead-letter events (docs/protocol.md §6): the topic a dead
// letter is announced on, the replay request and answer topics, and their headers.
// They are ordinary events on reserved ('$') topics; nodes and tools must agree on
// these names exactly, so they live here with the rest of the wire format.
#pragma once

#include <string>
#include <string_view>

namespace meshbus::wire {

/// A dead letter of `topic` is announced on "$dlq.<topic>", or on "$dlq" when that
/// would be longer than a topic may be.
inline constexpr std::string_view dead_letter_topic_root = "$dlq";
/// The pattern every announcement matches ("**" also matches "$dlq" itself).
inline constexpr std::string_view dead_letter_pattern = "$dlq.**";
std::string dead_letter_topic(std::string_view original_topic);

/// Replay requests (every node subscribes) and their answers.
inline constexpr std::string_view dead_letter_replay_topic = "$meshbus.dlq.replay";
inline constexpr std::string_view dead_letter_replayed_topic = "$meshbus.dlq.replayed";

/// Header names of announcements, replay requests and answers.
namespace dead_letter_header {
inline constexpr std::string_view id = "dlq-id";        ///< decimal, per holding node
inline constexpr std::string_view node = "dlq-node";    ///< 32 hex digits: the holding node
inline constexpr std::string_view reason = "dlq-reason";
inline constexpr std::string_view attempts = "dlq-attempts";  ///< decimal
inline constexpr std::string_view pattern = "dlq-pattern";    ///< of the subscription that failed it
inline constexpr std::string_view result = "dlq-result";      ///< answers only
inline constexpr std::string_view original_topic = "original-topic";
inline constexpr std::string_view original_publisher = "original-publisher";  ///< 32 hex digits
inline constexpr std::string_view original_sequence = "original-sequence";    ///< decimal
}  // namespace dead_letter_header

/// Values of the dlq-result header.
inline constexpr std::string_view dead_letter_replayed = "replayed";
inline constexpr std::string_view dead_letter_unknown = "unknown";

}  // namespace meshbus::wire
