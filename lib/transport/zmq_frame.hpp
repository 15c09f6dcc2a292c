// Conversions between transport::frame and zmq::message_t, for .cpp files of the
// transport and the node only (headers above the transport never see zmq.hpp).
// Both directions move the message: no byte is copied.
#pragma once

#include <zmq.hpp>

#include "lib/transport/frame.hpp"

namespace meshbus::transport {

struct zmq_frame_access {
  static void* native(frame& f) noexcept;  ///< the frame's zmq_msg_t
  static void refresh(frame& f) noexcept;
};

/// Takes `m`'s message (`m` is left empty).
inline frame to_frame(zmq::message_t&& m) noexcept {
  frame f;
  zmq_msg_move(static_cast<zmq_msg_t*>(zmq_frame_access::native(f)), m.handle());
  zmq_frame_access::refresh(f);
  return f;
}

/// Takes `f`'s message (`f` is left empty).
inline zmq::message_t to_message(frame&& f) noexcept {
  zmq::message_t m;
  zmq_msg_move(m.handle(), static_cast<zmq_msg_t*>(zmq_frame_access::native(f)));
  zmq_frame_access::refresh(f);
  return m;
}

}  // namespace meshbus::transport
