// subscriber_side: everything a node does as a subscriber. Data frames from the SUB
// socket, repairs and group assignments from the ROUTER are checked and handed to
// the inbound streams (receive windows per stream and subscription); what those
// decide goes out from here: deliveries to the dispatcher, NACKs and acks to the
// publishers (or, for this node's own group work, to its own publisher side through
// `own_publisher`), loss notices to the loss handler. Malformed frames are dropped
// and counted. I/O thread only, but for set_loss_handler().
#pragma once

#include <mutex>
#include <vector>

#include "lib/node/control_sender.hpp"
#include "lib/node/dispatcher.hpp"
#include "lib/node/inbound.hpp"
#include "lib/node/node_context.hpp"
#include "lib/node/subscriptions.hpp"
#include "lib/transport/transport.hpp"

namespace meshbus::detail {

/// NACKs and acks of this node's own group work, for its own publisher side.
/// Implemented by node_impl.
class own_publisher {
 public:
  virtual ~own_publisher() = default;
  virtual void own_nack(const wire::nack_msg& m) = 0;
  virtual void own_ack(const wire::ack_msg& m) = 0;

 protected:
  own_publisher() = default;
  own_publisher(const own_publisher&) = default;
  own_publisher& operator=(const own_publisher&) = default;
};

class subscriber_side final : private inbound_sink {
 public:
  subscriber_side(node_context& ctx, transport::transport& transport, control_sender& control,
                  dispatcher& handlers, subscription_registry& subs, own_publisher& self_route);

  void set_loss_handler(LossHandler h);  ///< any thread

  /// Reads data frames from the SUB socket while the dispatcher has room.
  std::size_t read(std::size_t max);
  /// A data frame; `repaired_by` set: a repair that publisher sent over the ROUTER.
  void on_frame(transport::frame&& msg, const wire::node_id_bytes* repaired_by);
  /// Group work assigned to this node (by a peer, or by this node itself).
  void on_assignment(const wire::node_id_bytes& from, const wire::assign_msg& m, transport::frame&& frame);
  void on_ready(const wire::node_id_bytes& from, std::uint64_t epoch, const wire::ready_msg& m,
                clock::time_point now) {
    inbound_.on_ready(from, epoch, m, now);
  }
  void on_loss(const wire::node_id_bytes& from, const wire::loss_msg& m, clock::time_point now) {
    inbound_.on_loss(from, m, now);
  }
  void on_publisher_gone(const wire::node_id_bytes& id, clock::time_point now) {
    inbound_.on_publisher_gone(id, now);
  }
  void on_publisher_absent(const wire::node_id_bytes& id) { inbound_.on_publisher_absent(id); }
  void on_publisher_end(const wire::node_id_bytes& id, const wire::goodbye_msg& m) {
    inbound_.on_publisher_end(id, m);
  }
  /// A repair or assignment of an epoch older than the sender's current one.
  bool stale(const wire::node_id_bytes& from, std::uint64_t epoch) const { return inbound_.epoch_of(from) > epoch; }

  /// NACK retries and acks that are due.
  void tick(clock::time_point now);
  clock::time_point next_due(clock::time_point now) const { return inbound_.next_due(now); }
  bool busy() const { return inbound_.busy(); }
  std::vector<reliability::subscriber_streams::received_stream> received() const { return inbound_.received(); }
  /// Leaving: no new group work, and every ack that has progressed goes out.
  void stop_taking_group_work() { inbound_.stop_taking_group_work(); }
  void flush_acks(clock::time_point now) { inbound_.flush_acks(now); }

 private:
  // inbound_sink
  void deliver(std::size_t stream_hash, const reliability::lane& l, reliability::lane_delivery&& d) override;
  void send_nack(const wire::node_id_bytes& publisher, const wire::nack_msg& m) override;
  void send_ack(const wire::node_id_bytes& publisher, const wire::ack_msg& m) override;
  void lost(std::size_t stream_hash, const reliability::loss_report& loss) override;
  void drop(wire::decode_status status, fault malformed, std::string_view what);

  node_context& ctx_;
  transport::transport& transport_;
  control_sender& control_;
  dispatcher& handlers_;
  own_publisher& self_route_;
  inbound_streams inbound_;
  std::mutex handler_mu_;
  LossHandler loss_handler_;
};

}  // namespace meshbus::detail
