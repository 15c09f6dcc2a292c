// Messages addressed to one peer; see control_sender.hpp.
#include "lib/node/control_sender.hpp"

#include <fmt/format.h>

namespace meshbus::detail {

void control_sender::send(const wire::node_id_bytes& to, const wire::control_msg& m) {
  const auto bytes = wire::encode_control(m);
  transport::frame msg(bytes.data(), bytes.size());
  switch (transport_.send_to(to, msg)) {
    case transport::send_status::ok: break;
    case transport::send_status::would_block:
      bump(ctx_.counters.control_send_failures);
      ctx_.faults.report(fault::control_send_failure,
                         fmt::format("a control message to peer {} was refused (its queue is full)", short_id(to)));
      break;
    case transport::send_status::no_route:
      // The peer's connection is already gone (it left, or has not connected yet):
      // counted, but nothing to warn about - what matters is resent once it is back.
      bump(ctx_.counters.control_send_failures);
      break;
  }
}

void control_sender::send_with_frame(const wire::node_id_bytes& to, const wire::control_msg& head,
                                     transport::frame& frame) {
  const auto head_bytes = wire::encode_control(head);
  transport::frame msg(head_bytes.data(), head_bytes.size());
  if (transport_.send_to(to, msg, frame) != transport::send_status::ok) {
    bump(ctx_.counters.control_send_failures);  // asked for again by NACK, or redelivered
  }
}

}  // namespace meshbus::detail
