// Big-endian u64 keys and values for the toolkit's records in the node's log: LMDB
// orders keys by bytes, so big-endian numbers sort in numeric order.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace meshbus::detail {

inline void put_be64(std::string& out, std::uint64_t v) {
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
inline std::string be64(std::uint64_t v) {
  std::string s;
  put_be64(s, v);
  return s;
}
/// The first 8 bytes of `in` (fewer: those there are) as a big-endian number.
inline std::uint64_t get_be64(std::string_view in) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < 8 && i < in.size(); ++i) v = (v << 8) | static_cast<unsigned char>(in[i]);
  return v;
}

}  // namespace meshbus::detail
