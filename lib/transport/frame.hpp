// One message's bytes, owned, without ZeroMQ in the header.
//
// A frame holds a ZeroMQ message (zmq_msg_t) in opaque storage, so layers above the
// transport (reliability, the node's headers) keep received and sent data without
// copying it and without including zmq.hpp. Only .cpp files convert to and from
// zmq::message_t (lib/transport/zmq_frame.hpp). Move-only; share() gives a second
// frame of the same bytes the way zmq_msg_copy does: a large buffer is shared by
// reference count (never copied), a small one (33 bytes or less) is copied.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "lib/wire/common.hpp"

namespace meshbus::transport {

struct zmq_frame_access;

class frame {
 public:
  /// An empty frame (size 0).
  frame() noexcept;
  /// A frame of a copy of `size` bytes at `data`.
  frame(const void* data, std::size_t size);
  /// A frame of a copy of `bytes`.
  explicit frame(std::string_view bytes) : frame(bytes.data(), bytes.size()) {}
  ~frame();
  frame(frame&& other) noexcept;
  frame& operator=(frame&& other) noexcept;
  frame(const frame&) = delete;
  frame& operator=(const frame&) = delete;

  /// Another frame of the same bytes: shares a large buffer (reference counted),
  /// copies a small one. The bytes are never written afterwards, by either.
  [[nodiscard]] frame share() const;

  const void* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  const std::uint8_t* bytes() const noexcept { return static_cast<const std::uint8_t*>(data_); }
  wire::byte_view bytes_view() const noexcept { return {bytes(), size_}; }
  std::string_view view() const noexcept { return {static_cast<const char*>(data_), size_}; }

 private:
  friend struct zmq_frame_access;
  /// Reads the message's data pointer and size again after it changed.
  void refresh() noexcept;
  /// Takes `other`'s message into this frame's storage (not initialised, or closed).
  void take(frame& other) noexcept;

  // A zmq_msg_t: 64 bytes, pointer-aligned (checked in frame.cpp). Mutable: sharing
  // the buffer counts a reference inside it.
  alignas(void*) mutable unsigned char msg_[64];
  const void* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace meshbus::transport
