// CRC32C (Castagnoli, reflected polynomial 0x82F63B78), as iSCSI, ext4 and LevelDB
// use it: "123456789" -> 0xE3069283. SSE4.2's crc32 instruction when the CPU has it,
// a table otherwise; both give the same value.
#pragma once

#include <cstddef>
#include <cstdint>

namespace meshbus::store {

/// Extends `crc` (0 to start) with `size` bytes at `data`.
std::uint32_t crc32c(std::uint32_t crc, const void* data, std::size_t size) noexcept;

}  // namespace meshbus::store
