// A bounded window of recently seen event ids, for dropping duplicates by id (an
// event redelivered, or published again under the same explicit id). Oldest-first
// eviction. Not thread-safe; the caller locks.
#pragma once

#include <cstddef>
#include <deque>
#include <string>
#include <string_view>
#include <unordered_set>

namespace meshbus::reliability {

class dedupe_window {
 public:
  explicit dedupe_window(std::size_t capacity) : capacity_(capacity) {}

  /// True when `id` was seen within the window; otherwise remembers it.
  bool seen(std::string_view id) {
    std::string key(id);
    if (ids_.count(key) != 0) return true;
    if (capacity_ == 0) return false;
    if (order_.size() >= capacity_) {
      ids_.erase(order_.front());
      order_.pop_front();
    }
    order_.push_back(key);
    ids_.insert(std::move(key));
    return false;
  }
  /// True when `id` was seen within the window (nothing is remembered).
  bool contains(std::string_view id) const { return ids_.count(std::string(id)) != 0; }
  /// Forgets `id` (a handler that failed must be able to see it again).
  void forget(std::string_view id) { ids_.erase(std::string(id)); }
  std::size_t size() const noexcept { return ids_.size(); }

 private:
  std::size_t capacity_;
  std::unordered_set<std::string> ids_;
  std::deque<std::string> order_;
};

}  // namespace meshbus::reliability
