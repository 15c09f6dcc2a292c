// transport::frame over zmq_msg_t: every zmq_msg_* call of the frame lives here, so
// that its header stays free of ZeroMQ. The cached data pointer and size are read
// again after each change, since a small message keeps its bytes inside the
// zmq_msg_t itself and moves with it.
#include "lib/transport/frame.hpp"

#include <cstring>
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

frame::frame(frame&& other) noexcept {
  zmq_msg_init(msg(msg_));
  zmq_msg_move(msg(msg_), msg(other.msg_));
  refresh();
  other.refresh();
}

frame& frame::operator=(frame&& other) noexcept {
  if (this != &other) {
    zmq_msg_move(msg(msg_), msg(other.msg_));  // closes ours first
    refresh();
    other.refresh();
  }
  return *this;
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
