// Shared vocabulary of the wire layer: protocol version, decode results, ids.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "lib/wire/msgpack_codec.hpp"

namespace meshbus::wire {

/// The protocol version this build speaks (docs/protocol.md).
inline constexpr std::uint8_t protocol_version = 1;

/// Result of every decode of network bytes. Anything but `ok` is dropped and counted.
enum class decode_status : std::uint8_t { ok, malformed, unsupported_version };

const char* to_string(decode_status s) noexcept;

using node_id_bytes = std::array<std::uint8_t, 16>;

/// 64-bit FNV-1a (offset basis 0xcbf29ce484222325, prime 0x100000001b3, one byte
/// at a time), used for the cluster name in beacons: "meshbus" -> 0x8efd40df9109498a.
std::uint64_t fnv1a64(std::string_view s) noexcept;

}  // namespace meshbus::wire
