// group_work: the subscriber side of one publisher's service-group work for one
// group (docs/protocol.md §7). No I/O, no clock of its own.
//
// The assignments of one (publisher, group) are one stream, "$group.<group>", with
// one window on assignment numbers and one ack value. Each assignment is handed to
// every subscription of the group here whose pattern matches its topic, and is
// finished once all of them handled (or dead-lettered) every event of its batch;
// the ack covers every assignment before the first unfinished one. An assignment
// that no subscription here can take any more (unsubscribed meanwhile) is asked for
// again by NACK, with backoff, until the publisher says it went to another member
// (LOSS), or a subscription for it returns.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "lib/reliability/subscriber_sink.hpp"

namespace meshbus::reliability {

struct group_progress;  // group_work.cpp: work in progress, shared with handler threads

class group_work {
 public:
  /// Assignments are numbered from 1 per member: the window starts there.
  group_work(subscriber_context& cx, const wire::node_id_bytes& publisher, std::uint64_t epoch,
             const std::string& group);
  ~group_work();
  group_work(group_work&&) noexcept;
  group_work(const group_work&) = delete;
  group_work& operator=(const group_work&) = delete;
  group_work& operator=(group_work&&) = delete;

  /// "$group.<group>": the topic of its acks, NACKs and LOSSes.
  const std::string& name() const noexcept { return name_; }
  /// The publisher gave us `held` as its `seq`-th assignment of the group.
  void on_assignment(std::uint64_t seq, held_frame&& held, std::size_t bytes, clock::time_point now);
  /// The publisher says assignments `r` are not this node's (any more): stop waiting
  /// for them, and for their handlers. Not a loss.
  void withdraw(seq_range r, clock::time_point now);
  /// The publisher is gone: what it could not send again is lost.
  void abandon(clock::time_point now);
  /// NACK retries, and assignments waiting for a subscription.
  void tick(clock::time_point now);
  /// Every assignment before the first unfinished one (0: none).
  std::uint64_t ack_value() const;
  ack_state& ack() noexcept { return ack_; }
  const ack_state& ack() const noexcept { return ack_; }
  clock::time_point next_due() const;
  /// Its ack value moved, or work waiting for a subscription wants a look.
  bool busy() const;

 private:
  void sync_lanes();
  /// Carries out the window's actions: opens and hands out delivered assignments.
  void apply(loss_reason reason);
  /// Hands assignments that are waiting for a subscription to one, and NACKs those
  /// that no subscription here can take.
  void settle(clock::time_point now);

  subscriber_context* cx_;
  wire::node_id_bytes publisher_{};
  std::uint64_t epoch_ = 0;
  std::string name_;
  std::string group_;
  held_window w_;
  std::shared_ptr<group_progress> progress_;
  std::vector<lane> lanes_;  ///< one per subscription of the group here
  std::uint64_t lanes_generation_ = UINT64_MAX;
  ack_state ack_;
  bool refusing_ = false;
  clock::time_point refusal_due_{};
  clock::duration refusal_backoff_{};
};

}  // namespace meshbus::reliability
