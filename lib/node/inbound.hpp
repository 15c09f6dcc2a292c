// inbound_streams: everything a node receives on data streams, as a subscriber.
//
// Each (stream, subscription) pair has its own receive window, so every subscription
// gets its own delivery mode, start position and, for acknowledged ones, its own
// processed position. A stream is (publisher, epoch, topic). Windows decide what is
// delivered, held, asked for again or given up on; this class turns their actions
// into dispatcher deliveries, NACKs, cumulative acks (one value per stream: the
// least any reliable or acknowledged subscription holds or has processed) and loss
// notices, through the sink. I/O thread only.
//
// Group work (docs/protocol.md §7) is kept apart: the assignments of one (publisher,
// group) are one stream, "$group.<group>", with one window on assignment numbers and
// one ack value; each assignment is handed to every subscription of the group on this
// node whose pattern matches its topic, and is acknowledged once all of them handled
// (or dead-lettered) every event of its batch. An assignment that no subscription
// here can take any more (unsubscribed meanwhile) is asked for again by NACK until
// the publisher says it went to another member (LOSS), or a subscription for it
// returns.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include <zmq.hpp>

#include "lib/node/counters.hpp"
#include "lib/node/dispatcher.hpp"
#include "lib/node/subscriptions.hpp"
#include "lib/reliability/receive_window.hpp"
#include "lib/wire/control.hpp"
#include "lib/wire/envelope.hpp"
#include "meshbus/node.hpp"

namespace meshbus::detail {

using clock = std::chrono::steady_clock;

class inbound_sink {
 public:
  virtual ~inbound_sink() = default;
  virtual void deliver(std::size_t stream_hash, delivery&& d) = 0;
  virtual void send_nack(const wire::node_id_bytes& publisher, const wire::nack_msg& m) = 0;
  virtual void send_ack(const wire::node_id_bytes& publisher, const wire::ack_msg& m) = 0;
  /// Posted in the stream's order: before the deliveries that follow the lost range.
  virtual void lost(std::size_t stream_hash, const LossNotice& notice) = 0;
};

struct inbound_config {
  reliability::receive_config window;
  /// A stream's ack is sent again this long after the last one, in case it was lost.
  clock::duration ack_refresh = std::chrono::milliseconds(500);
};

/// What a receive window holds per batch: the frame and what is needed to deliver it.
struct held_frame {
  zmq::message_t frame;
  std::uint64_t timestamp_ns = 0;
  std::size_t events_offset = 0;
  std::uint32_t topic_size = 0;
  // Group work: the window counts assignments, the batch has its own sequence numbers.
  std::uint64_t event_first_seq = 0;
  std::uint32_t event_count = 0;
};

struct group_progress;  // inbound.cpp: group work in progress, shared with handler threads

class inbound_streams {
 public:
  inbound_streams(inbound_config cfg, subscription_registry& subs, inbound_sink& sink, node_counters& counters)
      : cfg_(cfg), subs_(subs), sink_(sink), counters_(counters) {}

  /// A validated batch (by PUB, or a repair) of `topic`. Takes the frame.
  void on_batch(zmq::message_t&& frame, const wire::batch_header& h, std::string_view topic, bool repair,
                clock::time_point now);
  void on_heartbeat(const wire::heartbeat& hb, std::string_view topic, clock::time_point now);
  /// Group work: the publisher assigned this batch to us as its `seq`-th of `group`.
  void on_assignment(const wire::node_id_bytes& publisher, std::uint64_t epoch, const std::string& group,
                     std::uint64_t seq, zmq::message_t&& frame, const wire::batch_header& h,
                     std::string_view topic, clock::time_point now);
  /// The publisher says [from, to] of a topic is no longer in its history (or, for
  /// "$group.<name>", that those assignments are not this node's any more).
  void on_loss(const wire::node_id_bytes& publisher, const wire::loss_msg& m, clock::time_point now);
  /// The publisher holds our subscriptions of `generation`; its positions then.
  void on_ready(const wire::node_id_bytes& publisher, std::uint64_t epoch, const wire::ready_msg& m,
                clock::time_point now);
  /// The publisher left, or restarted (a new epoch): what it could not repair is lost.
  void on_publisher_gone(const wire::node_id_bytes& publisher, clock::time_point now);
  /// NACK retries and acks that are due.
  void tick(clock::time_point now);
  /// Sends every ack that has progressed, due or not (before a goodbye).
  void flush_acks(clock::time_point now) { send_acks(now, true); }
  /// Leaving: new group work is no longer taken (it stays unacknowledged, so the
  /// publisher hands it to another member when this node says goodbye).
  void stop_taking_group_work() noexcept { refuse_group_work_ = true; }
  /// When a NACK retry, a stream start or an ack repeat is next due.
  clock::time_point next_due() const;
  /// Progress no deadline reports: an ack value moved (handlers finished events),
  /// or subscriptions changed and windows are to be made. Ticked every few ms then.
  bool busy() const;
  /// Current epoch of a publisher's streams (0: none).
  std::uint64_t epoch_of(const wire::node_id_bytes& publisher) const;

 private:
  using window = reliability::receive_window<held_frame>;
  struct sub_stream {
    std::shared_ptr<subscription_entry> sub;
    window w;
    std::shared_ptr<std::atomic<std::uint64_t>> processed;  ///< acknowledged only
    std::shared_ptr<const match_list> only_this;           ///< for deliveries
    std::uint64_t id = 0;                                   ///< dispatcher stream id
  };
  struct ack_state {
    std::uint64_t acked = 0;            ///< last ack value sent
    clock::time_point first_unacked{};  ///< when the ack value first went past `acked`
    clock::time_point last_ack_sent{};
  };
  struct stream {
    std::string topic;
    std::vector<sub_stream> subs;
    std::uint64_t match_generation = UINT64_MAX;
    ack_state ack;
  };
  /// One subscription of a group on this node: a lane of its own in the dispatcher.
  struct group_lane {
    std::shared_ptr<subscription_entry> sub;
    std::shared_ptr<const match_list> only_this;
    std::uint64_t id = 0;  ///< dispatcher stream id
  };
  struct group_stream {
    std::string name;  ///< "$group.<group>": the topic of its acks, NACKs and LOSSes
    std::string group;
    window w;  ///< on assignment numbers, from 1
    std::shared_ptr<group_progress> progress;
    std::vector<group_lane> lanes;
    std::uint64_t lanes_generation = UINT64_MAX;
    ack_state ack;
    // Assignments no subscription here can take: NACKed, with backoff, until withdrawn.
    bool refusing = false;
    clock::time_point refusal_due{};
    clock::duration refusal_backoff{};
  };
  struct publisher_state {
    std::uint64_t epoch = 0;
    std::unordered_map<std::string, stream, string_hash, std::equal_to<>> streams;
    std::map<std::string, group_stream, std::less<>> groups;
    // The last READY: its generation and positions (topic -> last sequence).
    std::uint64_t ready_generation = 0;
    bool ready = false;
    std::unordered_map<std::string, std::uint64_t, string_hash, std::equal_to<>> positions;
  };

  publisher_state* publisher_for(const wire::node_id_bytes& id, std::uint64_t epoch, clock::time_point now);
  stream* stream_for(publisher_state& p, const wire::node_id_bytes& id, std::string_view topic, bool create);
  group_stream& group_stream_for(publisher_state& p, const std::string& group);
  void sync_lanes(group_stream& g);
  /// Carries out a group window's actions: opens and hands out delivered assignments.
  void apply_group(const wire::node_id_bytes& publisher, std::uint64_t epoch, group_stream& g,
                   LossNotice::Reason reason);
  /// Hands assignments that are waiting for a subscription to one, and NACKs those
  /// that no subscription here can take.
  void settle_group(const wire::node_id_bytes& publisher, std::uint64_t epoch, group_stream& g,
                    clock::time_point now);
  void sync_subscriptions(publisher_state& p, stream& s);
  std::uint64_t start_for(const publisher_state& p, const subscription_entry& sub, std::string_view topic) const;
  void apply(const wire::node_id_bytes& publisher, std::uint64_t epoch, stream& s, sub_stream& ss,
             LossNotice::Reason reason);
  void count(const reliability::receive_counters& before, const reliability::receive_counters& after);
  /// NACKs `ranges` of `topic` to `publisher` (nothing when empty), counted.
  void send_nack(const wire::node_id_bytes& publisher, std::uint64_t epoch, const std::string& topic,
                 const std::vector<reliability::seq_range>& ranges);
  /// The least any reliable or acknowledged subscription of the stream holds or has
  /// processed; nullopt when none of them needs acks.
  std::optional<std::uint64_t> ack_value(const stream& s) const;
  void send_acks(clock::time_point now, bool force = false);
  /// Adds `topic`'s ack to `m` when it is due.
  void maybe_ack(ack_state& a, std::optional<std::uint64_t> value, const std::string& topic,
                 clock::time_point now, bool force, wire::ack_msg& m);

  inbound_config cfg_;
  subscription_registry& subs_;
  inbound_sink& sink_;
  node_counters& counters_;
  std::map<wire::node_id_bytes, publisher_state> publishers_;
  std::uint64_t next_stream_id_ = 1;
  window::actions actions_;  ///< reused
  bool refuse_group_work_ = false;
};

}  // namespace meshbus::detail
