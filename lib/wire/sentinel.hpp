// The readiness sentinel (docs/protocol.md §5.3): a ZeroMQ subscription that no data
// frame ever matches, carrying the subscriber's node id and subscription generation.
// A publisher's XPUB reports it after the subscriber's real subscriptions of that
// generation, so seeing it proves those are in effect at the publisher.
#pragma once

#include <string>

#include "lib/wire/common.hpp"

namespace meshbus::wire {

/// 0xFF "mb" 0x01: 0xFF never starts a topic (nor any UTF-8 text), so the sentinel
/// sorts after every real prefix and matches no data frame.
inline constexpr char sentinel_magic[4] = {'\xFF', 'm', 'b', '\x01'};
/// Magic, node id, generation (uint64 big-endian).
inline constexpr std::size_t sentinel_size = sizeof sentinel_magic + 16 + 8;

/// The subscription prefix a subscriber keeps for its current generation.
std::string encode_sentinel(const node_id_bytes& subscriber, std::uint64_t generation);

/// Reads a subscription prefix; false when it is not a sentinel (an ordinary
/// subscription, which is not an error).
bool decode_sentinel(byte_view prefix, node_id_bytes& subscriber, std::uint64_t& generation) noexcept;

/// Reads a subscription message as an XPUB socket reports it (ZMTP: 0x01 subscribe
/// or 0x00 unsubscribe, then the prefix); true only when it subscribes a sentinel.
bool decode_sentinel_subscribe(byte_view message, node_id_bytes& subscriber, std::uint64_t& generation) noexcept;

}  // namespace meshbus::wire
