// Subscription registry and topic match cache; see subscriptions.hpp.
#include "lib/node/subscriptions.hpp"

#include <algorithm>

namespace meshbus::detail {

std::shared_ptr<subscription_entry> subscription_registry::add(wire::pattern p, event_handler h) {
  auto e = std::make_shared<subscription_entry>();
  e->pattern = std::move(p);
  e->handler = std::move(h);
  std::lock_guard lock(mu_);
  e->id = next_id_++;
  entries_.push_back(e);
  generation_.fetch_add(1, std::memory_order_acq_rel);
  return e;
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

std::vector<std::string> subscription_registry::patterns() const {
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  out.reserve(entries_.size());
  for (const auto& e : entries_) out.push_back(e->pattern.text());
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
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
      if (e->pattern.matches(topic)) list->push_back(e);
    }
  }
  std::shared_ptr<const match_list> result = list->empty() ? nullptr : std::move(list);
  if (cache_.size() > 65536) cache_.clear();  // bounded: a flood of topics cannot grow it
  cache_.emplace(std::string(topic), result);
  return result;
}

}  // namespace meshbus::detail
