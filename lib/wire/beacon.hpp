// The discovery beacon: one small UDP datagram announcing a node's ports.
// Layout (docs/protocol.md §2): "MSHB", version byte, then a MessagePack array.
#pragma once

#include "lib/wire/common.hpp"

namespace meshbus::wire {

inline constexpr std::size_t max_beacon_size = 512;
/// Elements of the beacon's array; more than known are skipped.
inline constexpr std::uint32_t max_beacon_fields = 64;

struct beacon {
  static constexpr std::uint8_t flag_goodbye = 0x01;

  std::uint8_t flags = 0;
  node_id_bytes node_id{};
  std::uint64_t epoch = 0;
  std::uint64_t cluster_hash = 0;
  std::uint16_t router_port = 0;
  std::uint16_t pub_port = 0;

  bool goodbye() const noexcept { return (flags & flag_goodbye) != 0; }
};

bytes encode_beacon(const beacon& b);
decode_status decode_beacon(byte_view datagram, beacon& out);

}  // namespace meshbus::wire
