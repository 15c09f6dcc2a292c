// Sends messages addressed to one peer over the transport's DEALERs: control
// messages, and the two-frame repairs and assignments. A refusal is counted
// (Stats::control_send_failures) and, when the peer's queue is full, reported; what
// was refused is sent again by the timers of whoever sent it. I/O thread only.
#pragma once

#include "lib/node/node_context.hpp"
#include "lib/transport/transport.hpp"
#include "lib/wire/control.hpp"

namespace meshbus::detail {

class control_sender {
 public:
  control_sender(node_context& ctx, transport::transport& transport) : ctx_(ctx), transport_(transport) {}

  void send(const wire::node_id_bytes& to, const wire::control_msg& m);
  /// A control message followed by a data frame (REPAIR, ASSIGN).
  void send_with_frame(const wire::node_id_bytes& to, const wire::control_msg& head, transport::frame& frame);

 private:
  node_context& ctx_;
  transport::transport& transport_;
};

}  // namespace meshbus::detail
