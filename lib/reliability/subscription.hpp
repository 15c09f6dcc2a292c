// What a subscription is to the subscriber side's windows, and where they get the
// node's subscriptions from. The node implements both over its subscription
// registry; tests implement them with plain objects.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "lib/reliability/receive_window.hpp"
#include "lib/wire/common.hpp"
#include "lib/wire/topic.hpp"

namespace meshbus::reliability {

/// Where a subscription begins on a stream it has not seen before.
struct start_position {
  enum class kind : std::uint8_t {
    now,       ///< just after the publisher's position when the subscription reached it
    earliest,  ///< the oldest the publisher still holds
    sequence,  ///< `sequence` (what history lacks of it is a loss)
  };
  kind from = kind::now;
  std::uint64_t sequence = 0;
};

/// One subscription, as the windows see it. I/O thread, except where it says.
class subscription {
 public:
  virtual ~subscription() = default;
  virtual delivery_mode mode() const noexcept = 0;
  virtual start_position start() const noexcept = 0;
  virtual const wire::pattern& pattern() const noexcept = 0;
  /// False once unsubscribed (cleared by any thread).
  virtual bool active() const noexcept = 0;
  /// The source's generation at which publishers were told of it (UINT64_MAX until then).
  virtual std::uint64_t generation() const noexcept = 0;
  /// A durable subscription's stored place in a stream it has not seen in this run:
  /// the next sequence to deliver. nullopt: none stored; start() applies.
  virtual std::optional<std::uint64_t> resume_at(const wire::node_id_bytes& publisher, std::uint64_t epoch,
                                                 std::string_view topic) const {
    (void)publisher;
    (void)epoch;
    (void)topic;
    return std::nullopt;
  }
};

using subscription_ptr = std::shared_ptr<const subscription>;

/// The node's subscriptions. Each call returns the same object for the same
/// subscription as long as it exists (the windows tell them apart by address). I/O thread.
class subscription_source {
 public:
  virtual ~subscription_source() = default;
  /// Changes whenever a subscription comes or goes.
  virtual std::uint64_t generation() const noexcept = 0;
  /// True when an ordinary (not service group) subscription matches `topic`.
  virtual bool any_match(std::string_view topic) = 0;
  /// The ordinary subscriptions matching `topic`.
  virtual std::vector<subscription_ptr> match(std::string_view topic) = 0;
  /// The subscriptions of service group `group` (one per pattern).
  virtual std::vector<subscription_ptr> in_group(std::string_view group) = 0;
};

/// One subscription's own order of delivery: on one stream, or on one group's work.
struct lane {
  subscription_ptr sub;
  /// Unique, never 0: names this order (a retry that waits holds up this lane only).
  std::uint64_t id = 0;
  /// acknowledged: the last sequence its handler finished, stored by the handler
  /// thread, read for acks. Null otherwise.
  std::shared_ptr<std::atomic<std::uint64_t>> processed;
};

}  // namespace meshbus::reliability
