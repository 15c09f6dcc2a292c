/// @file
/// The MessagePack side of typed events: bounded, strict decoding of a struct from
/// its MSGPACK_DEFINE_MAP fields, and the per-thread buffers that spare a typed
/// publish or decode its allocations. Internal to <meshbus/typed.hpp>; include that.
#pragma once

#ifndef MSGPACK_NO_BOOST
#define MSGPACK_NO_BOOST
#endif
#include <msgpack.hpp>

#include <cstddef>
#include <cstdint>
#include <exception>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "meshbus/error.hpp"
#include "meshbus/node.hpp"

namespace meshbus::detail {

/// Decode limits for typed payloads (on top of Options::max_message_bytes).
inline msgpack::unpack_limit typed_decode_limit() {
  return msgpack::unpack_limit(65536, 65536, 16u << 20, 16u << 20, 0, 32);
}

inline const char* kind_of(const msgpack::object& o) {
  switch (o.type) {
    case msgpack::type::NIL: return "nil";
    case msgpack::type::BOOLEAN: return "a boolean";
    case msgpack::type::POSITIVE_INTEGER:
    case msgpack::type::NEGATIVE_INTEGER: return "an integer";
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64: return "a float";
    case msgpack::type::STR: return "a string";
    case msgpack::type::BIN: return "binary";
    case msgpack::type::ARRAY: return "an array";
    case msgpack::type::MAP: return "a map";
    default: return "an extension";
  }
}

template <class V>
struct is_optional : std::false_type {};
template <class V>
struct is_optional<std::optional<V>> : std::true_type {};

/// Reads a received map into a struct through its MSGPACK_DEFINE_MAP fields (by
/// posing as a msgpack packer: the macro hands it each field name and then each
/// field, with its static type): every non-optional field must be present and every
/// value must convert to the field's type. The first problem, naming the field, ends
/// up in `error`. Fields are converted in place, once each: `target` is the struct
/// being filled, so writing through the references the macro hands out is writing
/// to a non-const object.
class field_reader {
 public:
  explicit field_reader(const msgpack::object& map) : map_(map) {}
  field_reader& pack_map(std::uint32_t) { return *this; }
  template <class V>
  field_reader& pack(const V& field) {
    if (expect_name_) {
      if constexpr (std::is_convertible_v<const V&, std::string_view>) name_ = std::string_view(field);
      expect_name_ = false;
      return *this;
    }
    expect_name_ = true;
    if (!error_.empty()) return *this;
    const msgpack::object* value = find(name_);
    if (value == nullptr) {
      if (!is_optional<V>::value) error_ = "field '" + std::string(name_) + "' is missing";
      return *this;
    }
    try {
      value->convert(const_cast<V&>(field));
    } catch (const std::exception&) {
      error_ = "field '" + std::string(name_) + "' has the wrong type (" + kind_of(*value) + ")";
    }
    return *this;
  }
  const std::string& error() const noexcept { return error_; }

 private:
  // The sender packed the same macro, so keys usually come in field order: look at
  // the position after the last match first, then around.
  const msgpack::object* find(std::string_view name) {
    const auto n = map_.via.map.size;
    for (std::uint32_t k = 0; k < n; ++k) {
      const auto at = (next_ + k) % n;
      const auto& kv = map_.via.map.ptr[at];
      if (kv.key.type == msgpack::type::STR && std::string_view(kv.key.via.str.ptr, kv.key.via.str.size) == name) {
        next_ = at + 1;
        return &kv.val;
      }
    }
    return nullptr;
  }

  const msgpack::object& map_;
  std::uint32_t next_ = 0;
  std::string_view name_;
  std::string error_;
  bool expect_name_ = true;
};

/// The unpacking zone of this thread, reused from event to event (cleared after
/// each, keeping its first chunk), so a decode does not allocate one. Decodes nest
/// (an upcaster decodes the older version inside a decode): the inner ones get a
/// zone of their own.
class decode_zone {
 public:
  decode_zone() {
    if (depth_++ > 0) own_.emplace(1024);
  }
  ~decode_zone() {
    --depth_;
    if (!own_) shared().clear();
  }
  decode_zone(const decode_zone&) = delete;
  decode_zone& operator=(const decode_zone&) = delete;
  msgpack::zone& get() noexcept { return own_ ? *own_ : shared(); }

 private:
  static msgpack::zone& shared() {
    thread_local msgpack::zone zone(4096);
    return zone;
  }
  static inline thread_local int depth_ = 0;
  std::optional<msgpack::zone> own_;
};

/// Decodes bytes that are exactly version T::event_version of T.
template <TypedEvent T>
T decode_current(std::span<const std::byte> bytes) {
  decode_zone zone;
  msgpack::object obj;
  try {
    obj = msgpack::unpack(zone.get(), reinterpret_cast<const char*>(bytes.data()), bytes.size(), nullptr, nullptr,
                          typed_decode_limit());
  } catch (const std::exception& e) {
    throw poison_event(std::string(T::event_name) + " does not decode as MessagePack: " + e.what());
  }
  if (obj.type != msgpack::type::MAP) {
    throw poison_event(std::string(T::event_name) + " is not a map of fields but " + kind_of(obj));
  }
  T value{};
  field_reader reader(obj);
  value.msgpack_pack(reader);
  if (!reader.error().empty()) throw poison_event(std::string(T::event_name) + ": " + reader.error());
  return value;
}

/// The encoding buffer of this thread, reused from event to event; taken out while in
/// use, so a nested publish (from inside a callback) gets a fresh one.
class encode_buffer {
 public:
  encode_buffer() : buffer_(std::move(shared())) { buffer_.clear(); }
  ~encode_buffer() {
    if (buffer_.size() <= keep_bytes) shared() = std::move(buffer_);
  }
  encode_buffer(const encode_buffer&) = delete;
  encode_buffer& operator=(const encode_buffer&) = delete;
  msgpack::sbuffer& get() noexcept { return buffer_; }
  std::span<const std::byte> bytes() const noexcept {
    return std::as_bytes(std::span(buffer_.data(), buffer_.size()));
  }

 private:
  static constexpr std::size_t keep_bytes = 64 * 1024;  // larger ones are not kept
  static msgpack::sbuffer& shared() {
    thread_local msgpack::sbuffer buffer(256);
    return buffer;
  }
  msgpack::sbuffer buffer_;
};

}  // namespace meshbus::detail
