// publisher_streams: what a node keeps and does as a publisher for reliability.
// No I/O and no clock of its own: every call takes `now`, actions go to the sink.
//
// Every sent batch goes into the bounded history; subscribers' cumulative acks go
// into the delivery tracker, which tracks each ready subscriber on each topic its
// reliable or acknowledged patterns match, from the moment it became ready. NACKs
// are answered from history to that subscriber alone (repairs), or with a loss
// message for what history no longer holds; acknowledged subscribers without
// progress get their unacknowledged events again. Service groups: each batch on a
// topic one of a group's patterns matches goes to one member (the group assigner);
// a group's NACKs resend or hand on that member's assignments, and LOSS tells it
// which numbers it no longer holds. One thread drives it (the node's I/O thread).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "lib/reliability/counters.hpp"
#include "lib/reliability/delivery_tracker.hpp"
#include "lib/reliability/group_assigner.hpp"
#include "lib/reliability/send_history.hpp"
#include "lib/reliability/string_hash.hpp"
#include "lib/transport/frame.hpp"
#include "lib/wire/control.hpp"
#include "lib/wire/topic.hpp"

namespace meshbus::reliability {

/// What the publisher side sends. Every call comes from the thread that drives it.
class publisher_sink {
 public:
  virtual ~publisher_sink() = default;
  /// Sends `frame` (an original data frame) to one subscriber, as a repair.
  virtual void send_repair(const wire::node_id_bytes& to, transport::frame&& frame) = 0;
  virtual void send_loss(const wire::node_id_bytes& to, const wire::loss_msg& m) = 0;
  /// Sends `frame` to a group member as its `seq`-th batch of `group`.
  virtual void send_assignment(const wire::node_id_bytes& to, const std::string& group, std::uint64_t seq,
                               transport::frame&& frame) = 0;
  /// A node subscribes a group with another set of patterns than the group's (both
  /// given as text, e.g. "[a.*, b.c]"): it gets no work from this node.
  virtual void group_conflict(const wire::node_id_bytes& member, const std::string& group,
                              const std::string& patterns, const std::string& group_patterns) = 0;
  /// A group's set of patterns changed (it had `before`, empty text for none).
  virtual void group_changed(const std::string& group, const std::string& before, const std::string& now) = 0;
};

/// Where the batches the bounded history let go of may still be: the node's durable
/// log (lib/node/history_log.hpp). Called by the thread that drives publisher_streams.
class history_backing {
 public:
  virtual ~history_backing() = default;
  /// Hands the stored batches overlapping [from, to] to `send`, in order, spending one
  /// unit of `budget` per batch (none is sent once it is 0). Returns the ranges inside
  /// what it looked at that it does not hold (retention took them, never stored) or
  /// holds damaged: they are answered with LOSS.
  virtual std::vector<seq_range> fetch(std::string_view topic, std::uint64_t from, std::uint64_t to,
                                       std::size_t& budget, const std::function<void(transport::frame&&)>& send) = 0;
};

class publisher_streams {
 public:
  publisher_streams(history_limits history, tracker_config tracker, group_config groups, std::uint64_t epoch,
                    publisher_sink& sink, publisher_counters counters)
      : epoch_(epoch),
        history_(history),
        tracker_(tracker),
        groups_(groups),
        sink_(sink),
        counters_(counters) {}

  /// Older batches than the history holds are looked up here (not owned; may be null).
  void set_backing(history_backing* backing) noexcept { backing_ = backing; }
  /// A stream continues after a restart of this node (same epoch, the durable log
  /// vouching for it): its last sequence sent was `last_sent`.
  void resume(std::string_view topic, std::uint64_t last_sent);
  /// A batch went out: keep it, and count it against every tracked subscriber.
  void sent(std::string_view topic, std::uint64_t first_seq, std::uint32_t count, transport::frame&& frame,
            clock::time_point now);
  /// A subscriber's patterns or readiness changed.
  void set_subscriber(const wire::node_id_bytes& id, const std::vector<wire::pattern_spec>& patterns,
                      bool ready, clock::time_point now);
  /// A subscriber is gone: it is no longer tracked and gets no new group work. Its
  /// unacknowledged group work goes to the other members now, or, with
  /// `keep_group_work` (it said goodbye, and its last acks may still be on the way),
  /// when release_group_work() is called. Returns how many events it never
  /// acknowledged.
  std::uint64_t forget_subscriber(const wire::node_id_bytes& id, clock::time_point now,
                                  bool keep_group_work = false);
  /// A subscriber was declared gone without a goodbye and may come back with its
  /// streams (absent): what it acknowledged is kept and flush() still waits for it,
  /// but its window holds nobody up. Its group work goes to the other members now.
  /// set_subscriber() with ready brings it back; forget_subscriber() ends it.
  void subscriber_absent(const wire::node_id_bytes& id, clock::time_point now);
  /// Subscribers with events unacknowledged: id, events, absent.
  struct lagging_subscriber {
    wire::node_id_bytes id{};
    std::uint64_t events = 0;
    bool absent = false;
  };
  std::vector<lagging_subscriber> lagging() const;
  /// For each subscriber behind on a reliable stream: when its oldest unacknowledged
  /// event was published (ns since the Unix epoch, the batch's timestamp). When the
  /// history no longer holds that event, the oldest one it holds of the topic stands
  /// in (so the lag derived from it is a lower bound). Looks at most at `max_topics`
  /// (subscriber, topic) pairs.
  std::map<wire::node_id_bytes, std::uint64_t> oldest_unacknowledged(std::size_t max_topics) const;
  /// What a forgotten subscriber still holds of group work goes to the other members.
  void release_group_work(const wire::node_id_bytes& id, clock::time_point now);
  void on_nack(const wire::node_id_bytes& from, const wire::nack_msg& m, clock::time_point now);
  void on_ack(const wire::node_id_bytes& from, const wire::ack_msg& m, clock::time_point now);
  /// Redeliveries that are due.
  void tick(clock::time_point now);
  clock::time_point next_due() const { return tracker_.next_redelivery(); }

  bool window_full() const noexcept { return tracker_.window_full() || groups_.window_full(); }
  bool all_acknowledged() const noexcept { return tracker_.all_acknowledged() && groups_.all_acknowledged(); }
  std::uint64_t unacknowledged() const noexcept {
    return tracker_.total_unacknowledged() + groups_.unacknowledged();
  }
  std::size_t group_backlog() const { return groups_.backlog(); }
  std::size_t history_events() const noexcept { return history_.events(); }
  std::size_t history_bytes() const noexcept { return history_.bytes(); }
  /// Another frame of every batch the bounded history holds (shared, not copied), so
  /// another thread can read them without holding this one up.
  std::vector<transport::frame> share_history() const {
    std::vector<transport::frame> out;
    history_.for_each([&out](std::string_view, const auto& b) { out.push_back(b.payload.share()); });
    return out;
  }
  /// The last sequence of every topic sent, for READY.
  std::vector<std::pair<std::string, std::uint64_t>> positions(std::size_t max) const;

 private:
  struct subscriber {
    std::vector<std::pair<wire::pattern, delivery_mode>> patterns;
    std::set<std::string> groups;
    bool ready = false;
  };
  /// A service group as this publisher sees it (docs/protocol.md §7): the set of
  /// patterns it subscribes is the set most of its nodes subscribe (a tie keeps the
  /// current one); nodes that subscribe exactly that set are its members, the others
  /// get no work from here.
  struct group_info {
    std::vector<std::string> texts;       ///< the group's set, sorted; empty until a node subscribes
    std::vector<wire::pattern> patterns;  ///< the same, compiled
    std::map<wire::node_id_bytes, std::vector<std::string>> wanted;   ///< each subscribing node's set
    std::set<wire::node_id_bytes> members;                            ///< active: wanted == texts
    std::map<wire::node_id_bytes, std::vector<std::string>> refused;  ///< conflicts reported
    /// Members declared gone that may come back: while there are any, the group
    /// still takes work (it waits in the backlog if no member is active).
    std::set<wire::node_id_bytes> absent;
    bool matches(std::string_view topic) const;
  };
  void reconcile(const std::string& name, group_info& g, clock::time_point now);
  /// A subscriber's session ended: its patterns and group memberships go.
  void leave(const wire::node_id_bytes& id, clock::time_point now, bool keep_group_work);
  void send_all(std::vector<group_assigner<transport::frame>::send>& sends);
  /// Adds what the history and the group assigner counted since the last call to the
  /// owner's counters.
  void count_tallies();
  void track_topic(const wire::node_id_bytes& id, const subscriber& s, std::string_view topic,
                   clock::time_point now);
  void resend(const wire::node_id_bytes& to, std::string_view topic, std::uint64_t from, std::uint64_t to_seq,
              std::size_t& budget);

  std::uint64_t epoch_;
  history_backing* backing_ = nullptr;
  send_history<transport::frame> history_;
  delivery_tracker tracker_;
  group_assigner<transport::frame> groups_;
  std::map<std::string, group_info> group_info_;
  std::vector<group_assigner<transport::frame>::send> group_sends_;  ///< reused
  publisher_sink& sink_;
  publisher_counters counters_;
  /// The history's and the group assigner's tallies already added to counters_.
  struct {
    std::uint64_t evicted = 0, reassigned = 0, backlog_dropped = 0, out_of_scope = 0;
  } counted_;
  std::map<wire::node_id_bytes, subscriber> subscribers_;
  /// Topics sent, with the subscriber generation their tracking was last checked at.
  std::unordered_map<std::string, std::uint64_t, string_hash, std::equal_to<>> topics_;
  std::uint64_t generation_ = 1;
  std::vector<redelivery> due_;  ///< reused
};

}  // namespace meshbus::reliability
