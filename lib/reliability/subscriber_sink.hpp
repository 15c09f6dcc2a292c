// What the subscriber side hands out, and to whom: batches for a lane, NACKs, acks
// and loss reports go through a subscriber_sink that the owner implements (the node
// turns them into dispatcher deliveries and control messages; tests record them).
// Every call comes from the thread that drives the subscriber side.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "lib/reliability/counters.hpp"
#include "lib/reliability/receive_window.hpp"
#include "lib/reliability/subscription.hpp"
#include "lib/transport/frame.hpp"
#include "lib/wire/common.hpp"
#include "lib/wire/control.hpp"

namespace meshbus::reliability {

/// How the delivery of group work ended (see lane_delivery::on_done).
enum class work_outcome : std::uint8_t {
  finished,   ///< every event handled (or dead-lettered)
  abandoned,  ///< its subscription went away first: the rest may go to someone else
};

/// A batch for one lane, in the lane's order.
struct lane_delivery {
  transport::frame frame;
  wire::node_id_bytes publisher{};
  std::uint64_t epoch = 0;
  std::uint64_t first_seq = 0;  ///< of the batch's first event
  std::uint32_t count = 0;
  std::uint32_t skip = 0;  ///< leading events already delivered
  std::uint64_t timestamp_ns = 0;
  std::uint32_t topic_size = 0;  ///< the topic is the frame's first bytes
  std::size_t events_offset = 0;
  /// Group work only (empty otherwise): called once when the batch is done, on the
  /// handler thread. When its subscription goes away first, the rest of the batch
  /// is given up as `abandoned` rather than skipped.
  std::function<void(work_outcome)> on_done;
};

enum class loss_reason : std::uint8_t { gap, not_in_history, publisher_gone };

/// Events that will never arrive for a subscription.
struct loss_report {
  wire::node_id_bytes publisher{};
  std::uint64_t epoch = 0;
  std::string topic;  ///< or "$group.<group>" for group work
  seq_range range;
  loss_reason reason = loss_reason::not_in_history;
  std::string pattern;  ///< the subscription's (empty for group work)
};

class subscriber_sink {
 public:
  virtual ~subscriber_sink() = default;
  /// A batch for `l`. Deliveries and loss reports of equal `stream_key` keep their order.
  virtual void deliver(std::size_t stream_key, const lane& l, lane_delivery&& d) = 0;
  virtual void send_nack(const wire::node_id_bytes& publisher, const wire::nack_msg& m) = 0;
  virtual void send_ack(const wire::node_id_bytes& publisher, const wire::ack_msg& m) = 0;
  /// In the stream's order: before the deliveries that follow the lost range.
  virtual void lost(std::size_t stream_key, const loss_report& r) = 0;
};

/// A hash of one publisher's stream of `topic` (its epoch aside).
inline std::size_t stream_hash(const wire::node_id_bytes& publisher, std::string_view topic) noexcept {
  std::size_t h = std::hash<std::string_view>{}(topic);
  for (const auto b : publisher) h = h * 131 + b;
  return h;
}

/// The key that orders one lane's deliveries (and loss reports) of one stream.
inline std::size_t stream_key(const wire::node_id_bytes& publisher, std::string_view topic,
                              std::uint64_t lane_id) noexcept {
  return stream_hash(publisher, topic) ^ (lane_id * 0x9e3779b97f4a7c15ULL);
}

/// What a receive window holds per batch: the frame and what is needed to deliver it.
struct held_frame {
  transport::frame frame;
  std::uint64_t timestamp_ns = 0;
  std::size_t events_offset = 0;
  std::uint32_t topic_size = 0;
  // Group work: the window counts assignments, the batch has its own sequence numbers.
  std::uint64_t event_first_seq = 0;
  std::uint32_t event_count = 0;
};

using held_window = receive_window<held_frame>;

/// The sink with the counting every part of the subscriber side does around it.
class subscriber_outputs {
 public:
  subscriber_outputs(subscriber_sink& sink, subscriber_counters counters)
      : sink_(sink), counters_(counters) {}

  /// NACKs `ranges` of `topic` (nothing when empty).
  void nack(const wire::node_id_bytes& publisher, std::uint64_t epoch, const std::string& topic,
            const std::vector<seq_range>& ranges);
  void lost(std::size_t key, const loss_report& r);
  void deliver(std::size_t key, const lane& l, lane_delivery&& d) { sink_.deliver(key, l, std::move(d)); }
  void ack(const wire::node_id_bytes& publisher, const wire::ack_msg& m);
  /// Counts what a window did between two readings of its counters.
  void count(const receive_counters& before, const receive_counters& after);
  subscriber_counters& counters() noexcept { return counters_; }

 private:
  subscriber_sink& sink_;
  subscriber_counters counters_;
};

/// A stream's cumulative ack, as sent.
struct ack_state {
  std::uint64_t acked = 0;            ///< last ack value sent
  clock::time_point first_unacked{};  ///< when the ack value first went past `acked`
  clock::time_point last_ack_sent{};
  clock::time_point moved_at{};  ///< when a new value was last sent
};

/// What the parts of the subscriber side share.
struct subscriber_context {
  receive_config window;
  subscription_source& subs;
  subscriber_outputs out;
  std::uint64_t next_lane_id = 1;  ///< lane ids are unique across streams and groups
  held_window::actions actions;    ///< reused; empty between calls
};

}  // namespace meshbus::reliability
