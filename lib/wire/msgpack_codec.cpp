// Bounded MessagePack codec: see msgpack_codec.hpp. The reader validates every
// declared length against the bytes left before touching them; a claimed element
// count larger than the remaining bytes (every item takes at least one byte) is
// malformed at once, so hostile counts cannot drive loops or allocations.
#include "lib/wire/msgpack_codec.hpp"

#include <cstring>

namespace meshbus::wire {

void mp_writer::be16(std::uint16_t v) {
  out_.push_back(static_cast<std::uint8_t>(v >> 8));
  out_.push_back(static_cast<std::uint8_t>(v));
}
void mp_writer::be32(std::uint32_t v) {
  const std::uint8_t b[4] = {static_cast<std::uint8_t>(v >> 24), static_cast<std::uint8_t>(v >> 16),
                             static_cast<std::uint8_t>(v >> 8), static_cast<std::uint8_t>(v)};
  out_.insert(out_.end(), b, b + 4);
}
void mp_writer::be64(std::uint64_t v) {
  be32(static_cast<std::uint32_t>(v >> 32));
  be32(static_cast<std::uint32_t>(v));
}

void mp_writer::nil() { out_.push_back(0xc0); }
void mp_writer::boolean(bool v) { out_.push_back(v ? 0xc3 : 0xc2); }

void mp_writer::uint(std::uint64_t v) {
  if (v < 0x80) {
    out_.push_back(static_cast<std::uint8_t>(v));
  } else if (v <= 0xff) {
    out_.push_back(0xcc);
    out_.push_back(static_cast<std::uint8_t>(v));
  } else if (v <= 0xffff) {
    out_.push_back(0xcd);
    be16(static_cast<std::uint16_t>(v));
  } else if (v <= 0xffffffffULL) {
    out_.push_back(0xce);
    be32(static_cast<std::uint32_t>(v));
  } else {
    out_.push_back(0xcf);
    be64(v);
  }
}

void mp_writer::sint(std::int64_t v) {
  if (v >= 0) {
    uint(static_cast<std::uint64_t>(v));
  } else if (v >= -32) {
    out_.push_back(static_cast<std::uint8_t>(v));
  } else if (v >= -128) {
    out_.push_back(0xd0);
    out_.push_back(static_cast<std::uint8_t>(v));
  } else if (v >= -32768) {
    out_.push_back(0xd1);
    be16(static_cast<std::uint16_t>(v));
  } else if (v >= INT32_MIN) {
    out_.push_back(0xd2);
    be32(static_cast<std::uint32_t>(v));
  } else {
    out_.push_back(0xd3);
    be64(static_cast<std::uint64_t>(v));
  }
}

void mp_writer::str(std::string_view s) {
  const auto n = s.size();
  if (n < 32) {
    out_.push_back(static_cast<std::uint8_t>(0xa0 | n));
  } else if (n <= 0xff) {
    out_.push_back(0xd9);
    out_.push_back(static_cast<std::uint8_t>(n));
  } else if (n <= 0xffff) {
    out_.push_back(0xda);
    be16(static_cast<std::uint16_t>(n));
  } else {
    out_.push_back(0xdb);
    be32(static_cast<std::uint32_t>(n));
  }
  raw(s.data(), n);
}

void mp_writer::bin(const void* data, std::size_t n) {
  if (n <= 0xff) {
    out_.push_back(0xc4);
    out_.push_back(static_cast<std::uint8_t>(n));
  } else if (n <= 0xffff) {
    out_.push_back(0xc5);
    be16(static_cast<std::uint16_t>(n));
  } else {
    out_.push_back(0xc6);
    be32(static_cast<std::uint32_t>(n));
  }
  raw(data, n);
}
void mp_writer::bin(byte_view b) { bin(b.data(), b.size()); }

void mp_writer::array(std::uint32_t n) {
  if (n < 16) {
    out_.push_back(static_cast<std::uint8_t>(0x90 | n));
  } else if (n <= 0xffff) {
    out_.push_back(0xdc);
    be16(static_cast<std::uint16_t>(n));
  } else {
    out_.push_back(0xdd);
    be32(n);
  }
}

void mp_writer::map(std::uint32_t n) {
  if (n < 16) {
    out_.push_back(static_cast<std::uint8_t>(0x80 | n));
  } else if (n <= 0xffff) {
    out_.push_back(0xde);
    be16(static_cast<std::uint16_t>(n));
  } else {
    out_.push_back(0xdf);
    be32(n);
  }
}

std::size_t mp_writer::uint32_fixed(std::uint32_t v) {
  out_.push_back(0xce);
  const auto at = out_.size();
  be32(v);
  return at;
}
std::size_t mp_writer::uint64_fixed(std::uint64_t v) {
  out_.push_back(0xcf);
  const auto at = out_.size();
  be64(v);
  return at;
}

void mp_writer::raw(const void* data, std::size_t size) {
  const auto* p = static_cast<const std::uint8_t*>(data);
  out_.insert(out_.end(), p, p + size);  // no zero-fill before the copy
}

void mp_writer::patch_uint32(bytes& out, std::size_t offset, std::uint32_t v) noexcept {
  out[offset] = static_cast<std::uint8_t>(v >> 24);
  out[offset + 1] = static_cast<std::uint8_t>(v >> 16);
  out[offset + 2] = static_cast<std::uint8_t>(v >> 8);
  out[offset + 3] = static_cast<std::uint8_t>(v);
}
void mp_writer::patch_uint64(bytes& out, std::size_t offset, std::uint64_t v) noexcept {
  patch_uint32(out, offset, static_cast<std::uint32_t>(v >> 32));
  patch_uint32(out, offset + 4, static_cast<std::uint32_t>(v));
}

// ---------------------------------------------------------------------------

namespace {
inline std::uint16_t load16(const std::uint8_t* p) {
  return static_cast<std::uint16_t>((p[0] << 8) | p[1]);
}
inline std::uint32_t load32(const std::uint8_t* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
         std::uint32_t{p[3]};
}
inline std::uint64_t load64(const std::uint8_t* p) {
  return (std::uint64_t{load32(p)} << 32) | load32(p + 4);
}
}  // namespace

bool mp_reader::take(std::size_t n, const std::uint8_t*& p) {
  if (failed_ || n > in_.size() - pos_) return fail();
  p = in_.data() + pos_;
  pos_ += n;
  return true;
}

bool mp_reader::is_nil() {
  if (failed_ || pos_ >= in_.size() || in_[pos_] != 0xc0) return false;
  ++pos_;
  return true;
}

bool mp_reader::read_bool(bool& v) {
  const std::uint8_t* p = nullptr;
  if (!take(1, p)) return false;
  if (*p == 0xc2 || *p == 0xc3) {
    v = *p == 0xc3;
    return true;
  }
  return fail();
}

bool mp_reader::read_uint(std::uint64_t& v) {
  const std::uint8_t* p = nullptr;
  if (!take(1, p)) return false;
  const std::uint8_t tag = *p;
  if (tag < 0x80) {
    v = tag;
    return true;
  }
  switch (tag) {
    case 0xcc:
      if (!take(1, p)) return false;
      v = *p;
      return true;
    case 0xcd:
      if (!take(2, p)) return false;
      v = load16(p);
      return true;
    case 0xce:
      if (!take(4, p)) return false;
      v = load32(p);
      return true;
    case 0xcf:
      if (!take(8, p)) return false;
      v = load64(p);
      return true;
    default:
      return fail();
  }
}

bool mp_reader::read_uint(std::uint64_t& v, std::uint64_t max) {
  if (!read_uint(v)) return false;
  return v <= max || fail();
}

bool mp_reader::read_sint(std::int64_t& v) {
  if (failed_ || pos_ >= in_.size()) return fail();
  const std::uint8_t tag = in_[pos_];
  if (tag < 0x80 || (tag >= 0xcc && tag <= 0xcf)) {
    std::uint64_t u = 0;
    if (!read_uint(u)) return false;
    if (u > static_cast<std::uint64_t>(INT64_MAX)) return fail();
    v = static_cast<std::int64_t>(u);
    return true;
  }
  const std::uint8_t* p = nullptr;
  take(1, p);
  if (tag >= 0xe0) {
    v = static_cast<std::int8_t>(tag);
    return true;
  }
  switch (tag) {
    case 0xd0:
      if (!take(1, p)) return false;
      v = static_cast<std::int8_t>(*p);
      return true;
    case 0xd1:
      if (!take(2, p)) return false;
      v = static_cast<std::int16_t>(load16(p));
      return true;
    case 0xd2:
      if (!take(4, p)) return false;
      v = static_cast<std::int32_t>(load32(p));
      return true;
    case 0xd3:
      if (!take(8, p)) return false;
      v = static_cast<std::int64_t>(load64(p));
      return true;
    default:
      return fail();
  }
}

bool mp_reader::read_length(std::uint8_t tag, std::uint8_t fix_base, std::uint8_t fix_mask,
                            std::uint8_t t8, std::uint8_t t16, std::uint8_t t32,
                            std::uint32_t& n) {
  const std::uint8_t* p = nullptr;
  if (fix_mask != 0 && (tag & static_cast<std::uint8_t>(~fix_mask)) == fix_base) {
    n = tag & fix_mask;
    return true;
  }
  if (tag == t8 && t8 != 0) {
    if (!take(1, p)) return false;
    n = *p;
    return true;
  }
  if (tag == t16) {
    if (!take(2, p)) return false;
    n = load16(p);
    return true;
  }
  if (tag == t32) {
    if (!take(4, p)) return false;
    n = load32(p);
    return true;
  }
  return fail();
}

bool mp_reader::read_str(std::string_view& v, std::size_t max_len) {
  const std::uint8_t* p = nullptr;
  if (!take(1, p)) return false;
  std::uint32_t n = 0;
  if (!read_length(*p, 0xa0, 0x1f, 0xd9, 0xda, 0xdb, n)) return false;
  if (n > max_len) return fail();
  if (!take(n, p)) return false;
  v = std::string_view(reinterpret_cast<const char*>(p), n);
  return true;
}

bool mp_reader::read_bin(byte_view& v, std::size_t max_len) {
  const std::uint8_t* p = nullptr;
  if (!take(1, p)) return false;
  std::uint32_t n = 0;
  if (!read_length(*p, 0, 0, 0xc4, 0xc5, 0xc6, n)) return false;
  if (n > max_len) return fail();
  if (!take(n, p)) return false;
  v = byte_view(p, n);
  return true;
}

bool mp_reader::read_fixed_bin(std::uint8_t* dst, std::size_t len) {
  byte_view v;
  if (!read_bin(v, len)) return false;
  if (v.size() != len) return fail();
  std::memcpy(dst, v.data(), len);
  return true;
}

bool mp_reader::read_array(std::uint32_t& n, std::uint32_t max) {
  const std::uint8_t* p = nullptr;
  if (!take(1, p)) return false;
  if (!read_length(*p, 0x90, 0x0f, 0, 0xdc, 0xdd, n)) return false;
  return (n <= max && n <= remaining()) || fail();
}

bool mp_reader::read_map(std::uint32_t& n, std::uint32_t max) {
  const std::uint8_t* p = nullptr;
  if (!take(1, p)) return false;
  if (!read_length(*p, 0x80, 0x0f, 0, 0xde, 0xdf, n)) return false;
  return (n <= max && std::uint64_t{n} * 2 <= remaining()) || fail();
}

bool mp_reader::skip(int max_depth) {
  if (failed_ || pos_ >= in_.size()) return fail();
  if (max_depth <= 0) return fail();
  const std::uint8_t tag = in_[pos_];
  const std::uint8_t* p = nullptr;
  if (tag < 0x80 || tag >= 0xe0 || tag == 0xc0 || tag == 0xc2 || tag == 0xc3) return take(1, p);
  if ((tag & 0xf0) == 0x90 || tag == 0xdc || tag == 0xdd) {
    std::uint32_t n = 0;
    if (!read_array(n, UINT32_MAX)) return false;
    return skip_n(n, max_depth - 1);
  }
  if ((tag & 0xf0) == 0x80 || tag == 0xde || tag == 0xdf) {
    std::uint32_t n = 0;
    if (!read_map(n, UINT32_MAX)) return false;
    return skip_n(std::uint64_t{n} * 2, max_depth - 1);
  }
  if ((tag & 0xe0) == 0xa0 || tag == 0xd9 || tag == 0xda || tag == 0xdb) {
    std::string_view s;
    return read_str(s, SIZE_MAX);
  }
  if (tag == 0xc4 || tag == 0xc5 || tag == 0xc6) {
    byte_view b;
    return read_bin(b, SIZE_MAX);
  }
  switch (tag) {
    case 0xcc: case 0xd0: return take(2, p);
    case 0xcd: case 0xd1: return take(3, p);
    case 0xce: case 0xd2: return take(5, p);
    case 0xcf: case 0xd3: return take(9, p);
    default: return fail();  // floats, ext types and the reserved tag are not part of the protocol
  }
}

bool mp_reader::skip_n(std::uint64_t n, int max_depth) {
  for (std::uint64_t i = 0; i < n; ++i) {
    if (!skip(max_depth)) return false;
  }
  return true;
}

}  // namespace meshbus::wire
