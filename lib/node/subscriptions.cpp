// Subscription registry and topic match cache; see subscriptions.hpp.
#include "lib/node/subscriptions.hpp"

#include <algorithm>
#include <map>

namespace meshbus::detail {

std::shared_ptr<subscription_entry> subscription_registry::add(wire::pattern p, event_handler h,
                                                               const SubscribeOptions& o, durable_positions* durable,
                                                               bool transactional) {
  auto e = std::make_shared<subscription_entry>();
  e->pattern = std::move(p);
  e->handler = std::move(h);
  e->options = o;
  e->durable = durable;
  e->transactional = transactional;
  std::lock_guard lock(mu_);
  if (!o.group.empty() && std::any_of(entries_.begin(), entries_.end(), [&](const auto& other) {
        return other->options.group == o.group && other->pattern.text() == e->pattern.text();
      })) {
    return nullptr;
  }
  e->id = next_id_++;
  entries_.push_back(e);
  generation_.fetch_add(1, std::memory_order_acq_rel);
  return e;
}

bool subscription_registry::has_durable(const std::string& name) const {
  std::lock_guard lock(mu_);
  return std::any_of(entries_.begin(), entries_.end(), [&](const auto& e) { return e->options.durable_name == name; });
}

std::shared_ptr<subscription_entry> subscription_registry::remove(std::uint64_t id) {
  std::lock_guard lock(mu_);
  auto it = std::find_if(entries_.begin(), entries_.end(), [&](const auto& e) { return e->id == id; });
  if (it == entries_.end()) return nullptr;
  auto e = *it;
  e->active.store(false, std::memory_order_release);
  entries_.erase(it);
  generation_.fetch_add(1, std::memory_order_acq_rel);
  return e;
}

std::vector<wire::pattern_spec> subscription_registry::patterns() const {
  std::lock_guard lock(mu_);
  std::map<std::pair<std::string, std::string>, std::uint8_t> strongest;  // (pattern, group) -> mode
  for (const auto& e : entries_) {
    auto& mode = strongest[{e->pattern.text(), e->options.group}];
    mode = std::max(mode, static_cast<std::uint8_t>(e->options.delivery));
  }
  std::vector<wire::pattern_spec> out;
  out.reserve(strongest.size());
  for (const auto& [key, mode] : strongest) out.push_back({key.first, mode, key.second});
  return out;
}

std::vector<std::shared_ptr<subscription_entry>> subscription_registry::entries() const {
  std::lock_guard lock(mu_);
  return entries_;
}

std::vector<std::shared_ptr<subscription_entry>> subscription_registry::in_group(
    std::string_view name) const {
  std::lock_guard lock(mu_);
  std::vector<std::shared_ptr<subscription_entry>> out;
  for (const auto& e : entries_) {
    if (e->options.group == name) out.push_back(e);
  }
  return out;
}

std::shared_ptr<subscription_entry> subscription_registry::find(std::uint64_t id) const {
  std::lock_guard lock(mu_);
  auto it = std::find_if(entries_.begin(), entries_.end(), [&](const auto& e) { return e->id == id; });
  return it == entries_.end() ? nullptr : *it;
}

bool subscription_registry::empty() const {
  std::lock_guard lock(mu_);
  return entries_.empty();
}

std::shared_ptr<const match_list> subscription_registry::match(std::string_view topic) {
  const auto gen = generation();
  if (gen != cache_generation_) {
    cache_.clear();
    cache_generation_ = gen;
  }
  if (auto it = cache_.find(topic); it != cache_.end()) return it->second;
  auto list = std::make_shared<match_list>();
  {
    std::lock_guard lock(mu_);
    for (const auto& e : entries_) {
      if (e->options.group.empty() && e->pattern.matches(topic)) list->push_back(e);
    }
  }
  std::shared_ptr<const match_list> result = list->empty() ? nullptr : std::move(list);
  if (cache_.size() > 65536) cache_.clear();  // bounded: a flood of topics cannot grow it
  cache_.emplace(std::string(topic), result);
  return result;
}

}  // namespace meshbus::detail
