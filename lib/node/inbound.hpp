// The node's subscriber side: reliability::subscriber_streams over this node's
// subscription registry and counters. The windows see a subscription entry through a
// subscription_view, which also keeps the one-entry list a dispatcher delivery names;
// to_delivery() and to_notice() turn what the windows hand out into dispatcher
// deliveries and loss notices. I/O thread only.
#pragma once

#include <memory>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "lib/node/counters.hpp"
#include "lib/node/dispatcher.hpp"
#include "lib/node/subscriptions.hpp"
#include "lib/reliability/subscriber_streams.hpp"
#include "meshbus/node.hpp"

namespace meshbus::detail {

using inbound_sink = reliability::subscriber_sink;
using inbound_config = reliability::subscriber_config;

/// A subscription entry as the windows see it.
class subscription_view final : public reliability::subscription {
 public:
  explicit subscription_view(std::shared_ptr<subscription_entry> entry)
      : entry_(entry.get()), only_this_(std::make_shared<const match_list>(match_list{std::move(entry)})) {}

  reliability::delivery_mode mode() const noexcept override { return entry_->mode(); }
  reliability::start_position start() const noexcept override;
  const wire::pattern& pattern() const noexcept override { return entry_->pattern; }
  bool active() const noexcept override { return entry_->active.load(std::memory_order_acquire); }
  std::uint64_t generation() const noexcept override {
    return entry_->generation.load(std::memory_order_acquire);
  }
  std::optional<std::uint64_t> resume_at(const wire::node_id_bytes& publisher, std::uint64_t epoch,
                                         std::string_view topic) const override;
  /// The list a delivery to this subscription alone names (it keeps the entry alive).
  const std::shared_ptr<const match_list>& only_this() const noexcept { return only_this_; }

 private:
  const subscription_entry* entry_;
  std::shared_ptr<const match_list> only_this_;
};

/// The registry as the windows ask for it: one view per entry, for as long as the
/// entry is active.
class subscription_views final : public reliability::subscription_source {
 public:
  explicit subscription_views(subscription_registry& registry) : registry_(registry) {}

  std::uint64_t generation() const noexcept override { return registry_.generation(); }
  bool any_match(std::string_view topic) override { return registry_.match(topic) != nullptr; }
  std::vector<reliability::subscription_ptr> match(std::string_view topic) override;
  std::vector<reliability::subscription_ptr> in_group(std::string_view group) override;

 private:
  reliability::subscription_ptr view_of(const std::shared_ptr<subscription_entry>& entry);

  subscription_registry& registry_;
  std::unordered_map<const subscription_entry*, std::shared_ptr<const subscription_view>> views_;
  std::uint64_t pruned_at_ = UINT64_MAX;
};

/// A batch for one lane, as the dispatcher takes it (the frame moves, no copy).
delivery to_delivery(const reliability::lane& l, reliability::lane_delivery&& d);
LossNotice to_notice(const reliability::loss_report& r);
reliability::subscriber_counters subscriber_counters_of(node_counters& c) noexcept;

namespace inbound_parts {
/// Holds the views, so that they are built before the streams that use them.
struct views_holder {
  explicit views_holder(subscription_registry& registry) : views(registry) {}
  subscription_views views;
};
}  // namespace inbound_parts

/// subscriber_streams on this node's registry and counters.
class inbound_streams final : private inbound_parts::views_holder, public reliability::subscriber_streams {
 public:
  inbound_streams(inbound_config cfg, subscription_registry& subs, inbound_sink& sink,
                  node_counters& counters)
      : views_holder(subs), subscriber_streams(cfg, views, sink, subscriber_counters_of(counters)) {}
};

}  // namespace meshbus::detail
