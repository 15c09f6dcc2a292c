// publisher_side: everything a node does as a publisher. API threads push events
// into the outbox (bounded: Options::send_policy says whether publish() waits or
// returns would_block); the I/O thread drains it into batches, hands them to ZeroMQ
// (pending_ holds what ZeroMQ refused at its high-water mark, retried in order),
// delivers this node's own events to its own subscriptions, keeps every sent batch in
// the outbound streams (history, ack tracking, flow control, repairs, redelivery,
// group work) and sends heartbeats on quiet topics. Flow control and flush state are
// published to API threads through atomics and a condition variable.
//
// Overflow policies: the outbox is bounded by bytes (publish() waits or returns
// would_block, counted); a window of unacknowledged events that is full holds new
// batches in the outbox; a subscriber that takes nothing for a whole peer expiry no
// longer holds the others up (counted as sent_past_gone, repaired by NACK).
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "lib/node/control_sender.hpp"
#include "lib/node/dispatcher.hpp"
#include "lib/node/history_log.hpp"
#include "lib/node/node_context.hpp"
#include "lib/node/outbound.hpp"
#include "lib/node/outbox.hpp"
#include "lib/node/subscriptions.hpp"
#include "lib/transport/transport.hpp"

namespace meshbus::detail {

/// Group work and LOSS answers that a node's publisher side addresses to the node
/// itself, handed to its own subscriber side. Implemented by node_impl.
class own_subscriber {
 public:
  virtual ~own_subscriber() = default;
  virtual void own_assignment(const wire::assign_msg& m, transport::frame&& frame) = 0;
  virtual void own_loss(const wire::loss_msg& m) = 0;

 protected:
  own_subscriber() = default;
  own_subscriber(const own_subscriber&) = default;
  own_subscriber& operator=(const own_subscriber&) = default;
};

class publisher_side final : private outbound_sink {
 public:
  publisher_side(node_context& ctx, transport::transport& transport, control_sender& control,
                 dispatcher& handlers, subscription_registry& subs, own_subscriber& self_route);

  // --- API threads ---
  /// publish(): checks, waits for the window and queue space as SendPolicy says.
  PublishResult publish(std::string_view topic, wire::byte_view payload, const PublishOptions* po, bool reserved);
  /// Once everything published is with ZeroMQ and acknowledged by every tracked
  /// subscriber (absent ones included), or at the deadline; see Node::flush.
  FlushResult flush(std::chrono::milliseconds timeout);
  /// Wakes publishers waiting for a window (stop).
  void wake_waiters();
  void close() { outbox_->close(); }
  bool stopping() const noexcept { return stopping_.load(std::memory_order_acquire); }
  void set_stopping() noexcept { stopping_.store(true, std::memory_order_release); }
  void fill(Stats& s) const;
  /// I/O thread: the subscribers behind on this node's streams, the furthest behind
  /// first (at most `max`).
  std::vector<SubscriberLag> lagging(std::size_t max) const;

  // --- I/O thread ---
  /// Drains the outbox and hands what it can to ZeroMQ.
  void pump(clock::time_point now);
  /// Redeliveries, heartbeats and the flow state.
  void tick(clock::time_point now);
  clock::time_point next_due() const;
  /// Something is in flight: queued, refused by ZeroMQ, or not yet acknowledged.
  bool busy() const;
  /// ZeroMQ refused a batch (a subscriber's queue is full); it is tried again.
  bool refused() const noexcept { return !pending_.empty(); }
  /// Nothing is waiting to be handed to ZeroMQ.
  bool drained() const {
    return pending_.empty() && (!log_ || log_->idle()) && unsubmitted_.empty() && outbox_->empty();
  }
  bool all_acknowledged() const { return outbound_.all_acknowledged(); }
  std::uint64_t unacknowledged() const { return outbound_.unacknowledged(); }
  std::size_t queued_bytes() const { return outbox_->bytes(); }
  /// Drops what ZeroMQ never took (the node stopped).
  void abandon_pending();

  void on_nack(const wire::node_id_bytes& from, const wire::nack_msg& m, clock::time_point now);
  void on_ack(const wire::node_id_bytes& from, const wire::ack_msg& m, clock::time_point now);
  /// The last group acks of a peer that said goodbye and has no session any more.
  void on_late_group_acks(const wire::node_id_bytes& from, const wire::ack_msg& m, clock::time_point now);
  void set_subscriber(const wire::node_id_bytes& id, const std::string& name,
                      const std::vector<wire::pattern_spec>& patterns, bool ready, clock::time_point now);
  /// A subscriber left (see outbound_streams::forget_subscriber). `report`: it did not
  /// choose to (it restarted, or stayed absent too long): events it never
  /// acknowledged are counted, logged and reported by the next flush().
  void forget_subscriber(const wire::node_id_bytes& id, bool keep_group_work, bool report, clock::time_point now);
  /// A subscriber expired and may come back (see outbound_streams::subscriber_absent).
  void subscriber_absent(const wire::node_id_bytes& id, clock::time_point now);
  void release_group_work(const wire::node_id_bytes& id, clock::time_point now);
  /// A peer left while a stall was going on: the stall no longer waits for it.
  void peer_left() noexcept {
    if (stalled_) peer_left_during_stall_ = true;
  }
  std::vector<std::pair<std::string, std::uint64_t>> positions() const {
    return outbound_.positions(wire::max_positions);
  }
  /// Every batch the bounded history holds, shared (trace requests read it elsewhere).
  std::vector<transport::frame> share_history() const { return outbound_.share_history(); }

 private:
  struct pending_send {
    transport::frame msg;
    std::size_t bytes = 0;
    std::string topic;
    std::uint64_t first_seq = 0;
    std::uint32_t count = 0;
  };
  struct topic_state {
    std::uint64_t last_seq = 0;
    clock::time_point last_sent{};
    clock::time_point next_heartbeat = clock::time_point::max();
    clock::duration heartbeat_gap{};
  };
  bool wait_for_window(std::chrono::milliseconds wait);
  /// Finished batches become pending sends (and local deliveries).
  void to_pending(std::vector<outbox_batch>& batches, std::uint64_t timestamp_ns);
  /// With a durable log: takes what its writer committed, hands it the next group.
  void write_ahead();
  void send_pending(clock::time_point now);
  /// ZeroMQ refused a batch: from when a stall lets the others go on without it.
  transport::send_status send_stalled(transport::frame& msg, clock::time_point now);
  void deliver_locally(const pending_send& p, std::size_t events_offset, std::uint64_t timestamp_ns);
  void send_heartbeats(clock::time_point now);
  void update_flow_state();
  void take_lagging(clock::time_point now);

  // outbound_sink
  void send_repair(const wire::node_id_bytes& to, transport::frame&& frame) override;
  void send_loss(const wire::node_id_bytes& to, const wire::loss_msg& m) override;
  void send_assignment(const wire::node_id_bytes& to, const std::string& group, std::uint64_t seq,
                       transport::frame&& frame) override;
  void group_conflict(const wire::node_id_bytes& member, const std::string& group, const std::string& patterns,
                      const std::string& group_patterns) override;
  void group_changed(const std::string& group, const std::string& before, const std::string& now) override;

  node_context& ctx_;
  transport::transport& transport_;
  control_sender& control_;
  dispatcher& handlers_;
  subscription_registry& subs_;
  own_subscriber& self_route_;
  std::unique_ptr<outbox> outbox_;
  std::unique_ptr<history_log> log_;  ///< Options::data_dir; before outbound_, which refers to it
  outbound_streams outbound_;

  // Shared with API threads: flow control and flush.
  std::atomic<bool> stopping_{false};
  std::mutex flow_mu_;
  std::condition_variable flow_cv_;
  std::atomic<bool> window_full_{false};
  /// The durable log refused a write: publish() returns store_failed until it takes it.
  std::atomic<bool> store_failed_{false};
  std::atomic<bool> all_acknowledged_{true};
  std::atomic<std::size_t> unacknowledged_{0};
  std::atomic<std::size_t> history_events_{0};
  std::atomic<std::size_t> history_bytes_{0};
  // Who lacks what, for flush(): a snapshot refreshed while anything is
  // unacknowledged, and the subscribers forgotten since the last flush().
  std::mutex report_mu_;
  std::vector<UnacknowledgedSubscriber> lagging_;
  std::vector<UnacknowledgedSubscriber> gone_;
  clock::time_point lagging_taken_{};
  std::map<wire::node_id_bytes, std::string> names_;  ///< I/O thread: subscribers' node names

  // I/O thread only.
  std::map<std::string, topic_state, std::less<>> topics_;
  std::deque<pending_send> pending_;
  std::vector<outbox_batch> drained_;
  std::vector<outbox_batch> written_;  ///< taken from the log's writer, reused
  std::deque<outbox_batch> unsubmitted_;  ///< drained, finished, waiting for the log's writer
  std::uint64_t unsubmitted_ts_ = 0;
  bool stalled_ = false;
  bool lossy_episode_ = false;
  bool peer_left_during_stall_ = false;
  clock::time_point stall_since_{};
};

}  // namespace meshbus::detail
