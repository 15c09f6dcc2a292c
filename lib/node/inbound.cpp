// The node's adapter of the subscriber side; see inbound.hpp. Views are kept per
// entry so that the windows see the same object for the same subscription; views of
// entries that went away are dropped once the registry's generation moves on (a
// window that still holds one keeps it alive).
#include "lib/node/inbound.hpp"

#include "lib/node/durable_positions.hpp"
#include "lib/node/node_context.hpp"

namespace meshbus::detail {

reliability::start_position subscription_view::start() const noexcept {
  using kind = reliability::start_position::kind;
  const auto& s = entry_->options.start;
  switch (s.kind) {
    case StartFrom::Kind::earliest:
    case StartFrom::Kind::time:  // earliest, and the dispatcher passes over what is older
      return {kind::earliest, 1};
    case StartFrom::Kind::sequence: return {kind::sequence, s.sequence};
    case StartFrom::Kind::now: break;
  }
  return {kind::now, s.sequence};
}

std::optional<std::uint64_t> subscription_view::resume_at(const wire::node_id_bytes& publisher, std::uint64_t epoch,
                                                         std::string_view topic) const {
  if (entry_->durable == nullptr) return std::nullopt;
  return entry_->durable->resume_at(entry_->options.durable_name, publisher, epoch, topic);
}

reliability::subscription_ptr subscription_views::view_of(const std::shared_ptr<subscription_entry>& entry) {
  const auto generation = registry_.generation();
  if (pruned_at_ != generation) {
    pruned_at_ = generation;
    std::erase_if(views_, [](const auto& v) { return !v.second->active(); });
  }
  auto& view = views_[entry.get()];
  if (!view) view = std::make_shared<const subscription_view>(entry);
  return view;
}

std::vector<reliability::subscription_ptr> subscription_views::match(std::string_view topic) {
  std::vector<reliability::subscription_ptr> out;
  if (const auto entries = registry_.match(topic)) {
    for (const auto& e : *entries) out.push_back(view_of(e));
  }
  return out;
}

std::vector<reliability::subscription_ptr> subscription_views::in_group(std::string_view group) {
  std::vector<reliability::subscription_ptr> out;
  for (const auto& e : registry_.in_group(group)) out.push_back(view_of(e));
  return out;
}

delivery to_delivery(const reliability::lane& l, reliability::lane_delivery&& d) {
  delivery out;
  out.frame = std::move(d.frame);
  // Every subscription the windows see comes from subscription_views.
  out.subscriptions = static_cast<const subscription_view&>(*l.sub).only_this();
  out.publisher = to_node_id(d.publisher);
  out.epoch = d.epoch;
  out.timestamp_ns = d.timestamp_ns;
  out.topic_size = d.topic_size;
  out.events_offset = d.events_offset;
  out.stream_id = l.id;
  out.processed = l.processed;
  out.first_seq = d.first_seq;
  out.count = d.count;
  out.skip = d.skip;
  if (d.on_done) {
    out.abandon_if_inactive = true;
    out.on_done = [done = std::move(d.on_done)](delivery_outcome o) {
      done(o == delivery_outcome::abandoned ? reliability::work_outcome::abandoned
                                            : reliability::work_outcome::finished);
    };
  }
  return out;
}

LossNotice to_notice(const reliability::loss_report& r) {
  LossNotice n;
  n.publisher = to_node_id(r.publisher);
  n.epoch = r.epoch;
  n.topic = r.topic;
  n.from = r.range.from;
  n.to = r.range.to;
  switch (r.reason) {
    case reliability::loss_reason::gap: n.reason = LossNotice::Reason::gap; break;
    case reliability::loss_reason::not_in_history: n.reason = LossNotice::Reason::not_in_history; break;
    case reliability::loss_reason::publisher_gone: n.reason = LossNotice::Reason::publisher_gone; break;
  }
  n.pattern = r.pattern;
  return n;
}

reliability::subscriber_counters subscriber_counters_of(node_counters& c) noexcept {
  return {c.duplicates_dropped, c.gaps,         c.reorder_overflow, c.rejected_sequences, c.unknown_starts,
          c.events_lost,        c.loss_notices, c.nacks_sent,       c.acks_sent,          c.repairs_received,
          c.events_unmatched};
}

}  // namespace meshbus::detail
