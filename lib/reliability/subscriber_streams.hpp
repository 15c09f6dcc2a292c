// subscriber_streams: everything a node receives on data streams, as a subscriber.
// No I/O and no clock of its own: every call takes `now`, actions go to the sink.
//
// Each (stream, subscription) pair has its own receive window, so every subscription
// gets its own delivery mode, start position and, for acknowledged ones, its own
// processed position. A stream is (publisher, epoch, topic). Windows decide what is
// delivered, held, asked for again or given up on; this class turns their actions
// into lane deliveries, NACKs, cumulative acks (one value per stream: the least any
// reliable or acknowledged subscription holds or has processed) and loss reports,
// through the sink. Service-group work is group_work's, one per (publisher, group).
// One thread drives it (the node's I/O thread).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "lib/reliability/group_work.hpp"
#include "lib/reliability/string_hash.hpp"
#include "lib/reliability/subscriber_sink.hpp"
#include "lib/wire/envelope.hpp"

namespace meshbus::reliability {

struct subscriber_config {
  receive_config window;
  /// A stream's ack is sent again this long after the last one, in case it was lost.
  clock::duration ack_refresh = std::chrono::milliseconds(500);
};

class subscriber_streams {
 public:
  subscriber_streams(subscriber_config cfg, subscription_source& subs, subscriber_sink& sink,
                     subscriber_counters counters)
      : cfg_(cfg), cx_{cfg.window, subs, subscriber_outputs(sink, counters), 1, {}} {}
  subscriber_streams(const subscriber_streams&) = delete;
  subscriber_streams& operator=(const subscriber_streams&) = delete;

  /// A validated batch (by PUB, or a repair) of `topic`. Takes the frame.
  void on_batch(transport::frame&& frame, const wire::batch_header& h, std::string_view topic, bool repair,
                clock::time_point now);
  void on_heartbeat(const wire::heartbeat& hb, std::string_view topic, clock::time_point now);
  /// Group work: the publisher assigned this batch to us as its `seq`-th of `group`.
  void on_assignment(const wire::node_id_bytes& publisher, std::uint64_t epoch, const std::string& group,
                     std::uint64_t seq, transport::frame&& frame, const wire::batch_header& h,
                     std::string_view topic, clock::time_point now);
  /// The publisher says [from, to] of a topic is no longer in its history (or, for
  /// "$group.<name>", that those assignments are not this node's any more).
  void on_loss(const wire::node_id_bytes& publisher, const wire::loss_msg& m, clock::time_point now);
  /// The publisher holds our subscriptions of `generation`; its positions then.
  void on_ready(const wire::node_id_bytes& publisher, std::uint64_t epoch, const wire::ready_msg& m,
                clock::time_point now);
  /// The publisher was declared gone without a goodbye (expiry): it may come back
  /// with the same epoch (a partition, a pause), so its streams are kept as they
  /// are, waiting; anything heard from it of that epoch resumes them (the READY of
  /// the new session shows what they lack, NACKs ask for it). Group work waits the
  /// same way (the publisher keeps this node's assignments for it meanwhile).
  void on_publisher_absent(const wire::node_id_bytes& publisher);
  /// The publisher says goodbye: where each of its streams ended.
  void on_publisher_end(const wire::node_id_bytes& publisher, const wire::goodbye_msg& m);
  /// The publisher is gone for good: it left (and its drain period ended), it
  /// restarted (a new epoch), or it stayed absent too long. What it did not deliver
  /// is lost: holes as closed ranges; the tail after the last sequence heard of as
  /// one open-ended range, unless its goodbye said where each stream ended.
  void on_publisher_gone(const wire::node_id_bytes& publisher, clock::time_point now);
  /// NACK retries and acks that are due.
  void tick(clock::time_point now);
  /// Sends every ack that has progressed, due or not (before a goodbye).
  void flush_acks(clock::time_point now) { send_acks(now, true); }
  /// Leaving: new group work is no longer taken (it stays unacknowledged, so the
  /// publisher hands it to another member when this node says goodbye).
  void stop_taking_group_work() noexcept { refuse_group_work_ = true; }
  /// When tick() next has something to do (time_point::max() when nothing waits): a
  /// NACK retry, a stream start, an ack repeated in case it was lost.
  clock::time_point next_due(clock::time_point now) const;
  /// Progress no deadline reports: an ack value moved (handlers finished events), or
  /// subscriptions changed and windows are to be made. The owner ticks every few ms
  /// while this holds.
  bool busy() const;
  /// Current epoch of a publisher's streams (0: none).
  std::uint64_t epoch_of(const wire::node_id_bytes& publisher) const;
  /// A stream received, with the last sequence delivered in order to any of its
  /// subscriptions (for reports).
  struct received_stream {
    wire::node_id_bytes publisher{};
    std::string topic;
    std::uint64_t last_seq = 0;
  };
  std::vector<received_stream> received() const;

 private:
  struct sub_stream {
    lane l;
    held_window w;
  };
  struct stream {
    std::string topic;
    std::vector<sub_stream> subs;
    std::uint64_t match_generation = UINT64_MAX;
    ack_state ack;
  };
  struct publisher_state {
    wire::node_id_bytes id{};
    std::uint64_t epoch = 0;
    std::unordered_map<std::string, stream, string_hash, std::equal_to<>> streams;
    std::map<std::string, group_work, std::less<>> groups;
    // The last READY: its generation and positions (topic -> last sequence).
    std::uint64_t ready_generation = 0;
    bool ready = false;
    std::unordered_map<std::string, std::uint64_t, string_hash, std::equal_to<>> positions;
    bool absent = false;  ///< declared gone without a goodbye: may come back
    // Its goodbye: the last sequence of each topic; complete unless it was cut at
    // wire::max_positions topics.
    bool ended = false;
    bool end_complete = false;
    std::unordered_map<std::string, std::uint64_t, string_hash, std::equal_to<>> end_positions;
  };

  publisher_state* publisher_for(const wire::node_id_bytes& id, std::uint64_t epoch, clock::time_point now);
  stream* stream_for(publisher_state& p, std::string_view topic, bool create);
  void sync_subscriptions(publisher_state& p, stream& s);
  std::uint64_t start_for(const publisher_state& p, const subscription& sub, std::string_view topic) const;
  /// Carries out a window's actions for its lane.
  void apply(const wire::node_id_bytes& publisher, std::uint64_t epoch, stream& s, sub_stream& ss,
             loss_reason reason);
  /// Runs `step` on the window of `ss`, counts, and carries out its actions.
  template <class Step>
  void drive(const wire::node_id_bytes& publisher, std::uint64_t epoch, stream& s, sub_stream& ss,
             loss_reason reason, Step&& step) {
    const auto before = ss.w.counters();
    step(ss.w, cx_.actions);
    cx_.out.count(before, ss.w.counters());
    apply(publisher, epoch, s, ss, reason);
  }
  void withdraw_group_work(publisher_state& p, const wire::loss_msg& m, clock::time_point now);
  /// The least any reliable or acknowledged subscription of the stream holds or has
  /// processed; nullopt when none of them needs acks.
  std::optional<std::uint64_t> ack_value(const stream& s) const;
  clock::time_point refresh_due(const ack_state& a, clock::time_point now) const;
  void send_acks(clock::time_point now, bool force = false);
  /// Adds `topic`'s ack to `m` when it is due.
  void maybe_ack(ack_state& a, std::optional<std::uint64_t> value, const std::string& topic,
                 clock::time_point now, bool force, wire::ack_msg& m) const;

  subscriber_config cfg_;
  subscriber_context cx_;
  std::map<wire::node_id_bytes, publisher_state> publishers_;
  bool refuse_group_work_ = false;
};

}  // namespace meshbus::reliability
