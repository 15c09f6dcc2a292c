// Subscriptions of one node: patterns, handlers, and the per-topic match cache.
//
// API threads add and remove entries under a mutex; the I/O thread reads a
// snapshot and caches, per topic, the list of matching entries (rebuilt when the
// generation changes). Removal only flips `active`, so a dispatch already holding
// the entry skips it from then on.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "lib/node/outbox.hpp"  // string_hash
#include "lib/reliability/dedupe_window.hpp"
#include "lib/reliability/receive_window.hpp"
#include "lib/wire/control.hpp"
#include "lib/wire/topic.hpp"
#include "meshbus/event.hpp"
#include "meshbus/node.hpp"

namespace meshbus::detail {

using event_handler = std::function<void(const Event&)>;

/// How many explicit event ids an acknowledged subscription remembers for dedupe.
inline constexpr std::size_t event_id_window = 65536;

class durable_positions;

struct subscription_entry {
  std::uint64_t id = 0;
  wire::pattern pattern;
  event_handler handler;
  SubscribeOptions options;
  std::atomic<bool> active{true};
  /// The node's subscription generation at which it took effect (set by the I/O
  /// thread; UINT64_MAX until then).
  std::atomic<std::uint64_t> generation{UINT64_MAX};
  /// A durable subscription (options.durable_name): where its positions go. Null otherwise.
  durable_positions* durable = nullptr;
  /// Its handler commits the position itself, per event (a TransactionalHandler).
  bool transactional = false;
  /// acknowledged: explicit event ids handled recently (guarded by dedupe_mu).
  std::mutex dedupe_mu;
  reliability::dedupe_window dedupe{event_id_window};

  reliability::delivery_mode mode() const noexcept {
    return static_cast<reliability::delivery_mode>(options.delivery);
  }
};

using match_list = std::vector<std::shared_ptr<subscription_entry>>;

class subscription_registry {
 public:
  /// Adds a compiled pattern; returns the entry. Any thread. Returns null, adding
  /// nothing, when `o.group` is set and the group already has a subscription of the
  /// same pattern here (a group's subscriptions differ by pattern).
  std::shared_ptr<subscription_entry> add(wire::pattern p, event_handler h, const SubscribeOptions& o,
                                          durable_positions* durable = nullptr, bool transactional = false);
  /// True when an active subscription has durable name `name`.
  bool has_durable(const std::string& name) const;
  /// Removes by id; returns the entry (inactive now) or null. Any thread.
  std::shared_ptr<subscription_entry> remove(std::uint64_t id);
  /// Pattern texts of all active subscriptions, each with the strongest delivery
  /// mode asked for it.
  std::vector<wire::pattern_spec> patterns() const;
  /// Every active entry (a copy of the list).
  std::vector<std::shared_ptr<subscription_entry>> entries() const;
  std::shared_ptr<subscription_entry> find(std::uint64_t id) const;
  /// The active subscriptions of a service group on this node (several patterns).
  std::vector<std::shared_ptr<subscription_entry>> in_group(std::string_view name) const;
  std::uint64_t generation() const noexcept { return generation_.load(std::memory_order_acquire); }
  bool empty() const;

  /// Ordinary (not group) entries matching `topic`, cached per topic. I/O thread
  /// only. Returns null when nothing matches.
  std::shared_ptr<const match_list> match(std::string_view topic);

 private:
  mutable std::mutex mu_;
  std::vector<std::shared_ptr<subscription_entry>> entries_;
  std::uint64_t next_id_ = 1;
  std::atomic<std::uint64_t> generation_{0};

  // I/O thread only.
  std::uint64_t cache_generation_ = UINT64_MAX;
  std::unordered_map<std::string, std::shared_ptr<const match_list>, string_hash, std::equal_to<>>
      cache_;
};

}  // namespace meshbus::detail
