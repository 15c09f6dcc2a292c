// The subscriber side of a node; see subscriber_side.hpp. A repair must be of its
// sender's own stream, a heartbeat is never a repair, and this node's own batches
// coming back over the network are not delivered twice (local delivery has them).
#include "lib/node/subscriber_side.hpp"

#include <fmt/format.h>

#include "lib/wire/envelope.hpp"

namespace meshbus::detail {

subscriber_side::subscriber_side(node_context& ctx, transport::transport& transport, control_sender& control,
                                 dispatcher& handlers, subscription_registry& subs, own_publisher& self_route)
    : ctx_(ctx),
      transport_(transport),
      control_(control),
      handlers_(handlers),
      self_route_(self_route),
      inbound_(inbound_config{}, subs, static_cast<inbound_sink&>(*this), ctx.counters) {}

void subscriber_side::set_loss_handler(LossHandler h) {
  std::lock_guard lock(handler_mu_);
  loss_handler_ = std::move(h);
}

std::size_t subscriber_side::read(std::size_t max) {
  std::size_t n = 0;
  for (; n < max && !handlers_.full(); ++n) {
    transport::frame msg;
    if (!transport_.receive_data(msg)) break;
    on_frame(std::move(msg), nullptr);
  }
  return n;
}

void subscriber_side::on_frame(transport::frame&& msg, const wire::node_id_bytes* repaired_by) {
  const wire::byte_view frame(static_cast<const std::uint8_t*>(msg.data()), msg.size());
  std::string_view topic;
  wire::data_kind kind{};
  std::size_t body = 0;
  auto status = wire::decode_data_prefix(frame, topic, kind, body);
  if (status == wire::decode_status::ok && kind == wire::data_kind::heartbeat && repaired_by == nullptr) {
    wire::heartbeat hb;
    status = wire::decode_heartbeat(frame, body, hb);
    if (status == wire::decode_status::ok) {
      if (hb.publisher != ctx_.self.bytes) inbound_.on_heartbeat(hb, topic, clock::now());
      return;
    }
  } else if (status == wire::decode_status::ok && kind == wire::data_kind::batch) {
    wire::batch_header h;
    status = wire::decode_batch(frame, body, h);
    if (status == wire::decode_status::ok && (repaired_by == nullptr || h.publisher == *repaired_by)) {
      bump(ctx_.counters.batches_received);
      bump(ctx_.counters.events_received, h.count);
      bump(ctx_.counters.bytes_received, msg.size());
      if (h.publisher == ctx_.self.bytes) return;
      const std::string topic_copy(topic);  // the view dies with the frame
      inbound_.on_batch(std::move(msg), h, topic_copy, repaired_by != nullptr, clock::now());
      return;
    }
    if (status == wire::decode_status::ok) status = wire::decode_status::malformed;
  } else if (status == wire::decode_status::ok) {
    status = wire::decode_status::malformed;  // a heartbeat is never a repair
  }
  drop(status, fault::malformed_data, "a malformed data frame");
}

void subscriber_side::drop(wire::decode_status status, fault malformed, std::string_view what) {
  if (status == wire::decode_status::unsupported_version) {
    bump(ctx_.counters.unsupported_messages);
    ctx_.faults.report(fault::unsupported_data, "dropped a data frame of another protocol version");
  } else {
    bump(ctx_.counters.malformed_messages);
    ctx_.faults.report(malformed, fmt::format("dropped {}", what));
  }
}

void subscriber_side::on_assignment(const wire::node_id_bytes& from, const wire::assign_msg& m,
                                    transport::frame&& frame) {
  const wire::byte_view bytes(static_cast<const std::uint8_t*>(frame.data()), frame.size());
  std::string_view topic;
  wire::data_kind kind{};
  std::size_t body = 0;
  wire::batch_header h;
  auto status = wire::decode_data_prefix(bytes, topic, kind, body);
  if (status == wire::decode_status::ok && kind == wire::data_kind::batch) status = wire::decode_batch(bytes, body, h);
  if (status != wire::decode_status::ok || kind != wire::data_kind::batch || h.publisher != from) {
    drop(wire::decode_status::malformed, fault::malformed_data, "a malformed group assignment");
    return;
  }
  bump(ctx_.counters.batches_received);
  bump(ctx_.counters.events_received, h.count);
  const std::string topic_copy(topic);
  inbound_.on_assignment(from, m.epoch, m.group, m.seq, std::move(frame), h, topic_copy,
                          clock::now());
}

void subscriber_side::tick(clock::time_point now) {
  const auto unknown_before = read(ctx_.counters.unknown_starts);
  inbound_.tick(now);
  if (read(ctx_.counters.unknown_starts) != unknown_before) {
    ctx_.faults.report(fault::unknown_start,
                       "a stream was started at the first event received: the publisher's READY (where the "
                       "subscription began) did not come within 3 s, so events before it may be missing "
                       "unreported (Stats::unknown_starts)");
  }
}

void subscriber_side::deliver(std::size_t hash, const reliability::lane& l, reliability::lane_delivery&& d) {
  handlers_.post(hash, to_delivery(l, std::move(d)));
}

void subscriber_side::send_nack(const wire::node_id_bytes& publisher, const wire::nack_msg& m) {
  if (publisher == ctx_.self.bytes) {
    self_route_.own_nack(m);
  } else {
    control_.send(publisher, m);
  }
}

void subscriber_side::send_ack(const wire::node_id_bytes& publisher, const wire::ack_msg& m) {
  if (publisher == ctx_.self.bytes) {
    self_route_.own_ack(m);
  } else {
    control_.send(publisher, m);
  }
}

void subscriber_side::lost(std::size_t stream_hash, const reliability::loss_report& loss) {
  const auto notice = to_notice(loss);
  if (notice.open_ended()) {
    ctx_.faults.report(fault::sequence_gap,
                       fmt::format("whatever followed event {} of '{}' from {} will not arrive ({}, without saying "
                                   "where its stream ended)",
                                   notice.from - 1, notice.topic, notice.publisher.short_string(),
                                   to_string(notice.reason)));
  } else {
    ctx_.faults.report(fault::sequence_gap,
                       fmt::format("{} events of '{}' from {} will not arrive ({})", notice.to - notice.from + 1,
                                   notice.topic, notice.publisher.short_string(), to_string(notice.reason)));
  }
  handlers_.post(stream_hash, [this, notice] {
    LossHandler h;
    {
      std::lock_guard lock(handler_mu_);
      h = loss_handler_;
    }
    if (h) h(notice);
  });
}

}  // namespace meshbus::detail
