// transport::frame over zmq_msg_t: every zmq_msg_* call of the frame lives here, so
// that its header stays free of ZeroMQ. The cached data pointer and size are read
// again after each change, since a small message keeps its bytes inside the
// zmq_msg_t itself and moves with it.
#include "lib/transport/frame.hpp"

#include <cstring>
#include <functional>
#include <new>

#include <zmq.h>

#include "lib/transport/zmq_frame.hpp"

namespace meshbus::transport {
namespace {
static_assert(sizeof(zmq_msg_t) == 64, "frame's storage must hold a zmq_msg_t");
static_assert(alignof(zmq_msg_t) <= alignof(void*), "frame's storage must be aligned for a zmq_msg_t");

zmq_msg_t* msg(unsigned char* storage) noexcept {
  return reinterpret_cast<zmq_msg_t*>(storage);
}
}  // namespace

frame::frame() noexcept {
  zmq_msg_init(msg(msg_));
}

frame::frame(const void* data, std::size_t size) {
  if (zmq_msg_init_size(msg(msg_), size) != 0) throw std::bad_alloc();
  if (size != 0) std::memcpy(zmq_msg_data(msg(msg_)), data, size);
  refresh();
}

frame::~frame() {
  zmq_msg_close(msg(msg_));
}

// A move copies the message's 64 bytes and leaves the source an empty message, as
// zmq_msg_move does; only the cached pointer of a small message, which points into
// the message itself, has to follow.
frame::frame(frame&& other) noexcept { take(other); }

frame& frame::operator=(frame&& other) noexcept {
  if (this != &other) {
    zmq_msg_close(msg(msg_));
    take(other);
  }
  return *this;
}

void frame::take(frame& other) noexcept {
  std::memcpy(msg_, other.msg_, sizeof msg_);
  const auto* inside = static_cast<const unsigned char*>(other.data_);
  const std::less<const unsigned char*> before;
  if (!before(inside, other.msg_) && before(inside, other.msg_ + sizeof other.msg_)) {
    data_ = msg_ + (inside - other.msg_);
  } else {
    data_ = other.data_;
  }
  size_ = other.size_;
  zmq_msg_init(msg(other.msg_));
  other.data_ = nullptr;
  other.size_ = 0;
}

frame frame::share() const {
  frame out;
  zmq_msg_copy(msg(out.msg_), msg(msg_));
  out.refresh();
  return out;
}

void frame::refresh() noexcept {
  size_ = zmq_msg_size(msg(msg_));
  data_ = size_ == 0 ? nullptr : zmq_msg_data(msg(msg_));
}

void* zmq_frame_access::native(frame& f) noexcept {
  return f.msg_;
}
void zmq_frame_access::refresh(frame& f) noexcept {
  f.refresh();
}

}  // namespace meshbus::transport
