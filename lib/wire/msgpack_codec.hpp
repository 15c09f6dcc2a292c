// Bounded MessagePack reader and writer for meshbus wire messages.
//
// The writer appends the MessagePack format to a byte vector; the reader is a
// cursor over untrusted bytes that never reads past its end, never allocates and
// rejects any length that the remaining input cannot hold. Both implement only the
// subset of MessagePack the protocol uses (nil, bool, ints, str, bin, array, map);
// tests check every encoding against msgpack-c. A generic msgpack-c parse builds
// an object tree in a zone per message, which costs a visible share of the hot path.
// The reader accepts every width of a type (non-minimal encodings included); the
// writer always picks the smallest. Floats and ext types are malformed, even skipped.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace meshbus::wire {

using bytes = std::vector<std::uint8_t>;
using byte_view = std::span<const std::uint8_t>;

/// Appends MessagePack items to a byte vector it does not own.
class mp_writer {
 public:
  explicit mp_writer(bytes& out) noexcept : out_(out) {}

  void nil();
  void boolean(bool v);
  void uint(std::uint64_t v);
  void sint(std::int64_t v);
  void str(std::string_view s);
  void bin(byte_view b);
  void bin(const void* data, std::size_t size);
  void array(std::uint32_t n);
  void map(std::uint32_t n);
  /// Fixed-width forms whose offset can be patched later (see patch_*).
  std::size_t uint32_fixed(std::uint32_t v);
  std::size_t uint64_fixed(std::uint64_t v);
  /// Raw bytes that are already MessagePack (or a frame prefix).
  void raw(const void* data, std::size_t size);
  void raw_byte(std::uint8_t b) { out_.push_back(b); }

  static void patch_uint32(bytes& out, std::size_t offset, std::uint32_t v) noexcept;
  static void patch_uint64(bytes& out, std::size_t offset, std::uint64_t v) noexcept;

  bytes& buffer() noexcept { return out_; }

 private:
  void be16(std::uint16_t v);
  void be32(std::uint32_t v);
  void be64(std::uint64_t v);
  bytes& out_;
};

/// Bounded cursor over untrusted MessagePack bytes. Every read checks the type
/// and the remaining length; the first failure latches `failed()` and every later
/// read fails too, so decoders can read a whole structure and check once.
class mp_reader {
 public:
  explicit mp_reader(byte_view in) noexcept : in_(in) {}
  mp_reader(const void* data, std::size_t size) noexcept
      : in_(static_cast<const std::uint8_t*>(data), size) {}

  bool failed() const noexcept { return failed_; }
  bool at_end() const noexcept { return pos_ == in_.size(); }
  std::size_t position() const noexcept { return pos_; }
  std::size_t remaining() const noexcept { return in_.size() - pos_; }
  byte_view rest() const noexcept { return in_.subspan(pos_); }

  bool is_nil();  ///< true and consumed when the next item is nil
  bool read_bool(bool& v);
  /// An unsigned format (positive fixint, uint 8/16/32/64); the signed formats are
  /// refused even for non-negative values.
  bool read_uint(std::uint64_t& v);
  bool read_uint(std::uint64_t& v, std::uint64_t max);
  /// Any integer format whose value fits an int64.
  bool read_sint(std::int64_t& v);
  bool read_str(std::string_view& v, std::size_t max_len);
  bool read_bin(byte_view& v, std::size_t max_len);
  /// Reads a bin of exactly `len` bytes.
  bool read_fixed_bin(std::uint8_t* dst, std::size_t len);
  bool read_array(std::uint32_t& n, std::uint32_t max);
  bool read_map(std::uint32_t& n, std::uint32_t max);
  /// Skips one item of any supported type (not floats or ext), nesting at most
  /// `max_depth` deep.
  bool skip(int max_depth = 8);
  /// Skips `n` items.
  bool skip_n(std::uint64_t n, int max_depth = 8);

  /// Moves past `n` bytes the caller has checked are there.
  void advance(std::size_t n) noexcept { pos_ += n; }

  bool fail() noexcept {
    failed_ = true;
    return false;
  }

 private:
  bool take(std::size_t n, const std::uint8_t*& p);
  bool read_length(std::uint8_t tag, std::uint8_t fix_base, std::uint8_t fix_mask,
                   std::uint8_t t8, std::uint8_t t16, std::uint8_t t32, std::uint32_t& n);
  byte_view in_;
  std::size_t pos_ = 0;
  bool failed_ = false;
};

}  // namespace meshbus::wire
