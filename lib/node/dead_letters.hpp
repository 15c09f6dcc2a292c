// The dead-letter store of one node: events an acknowledged subscription gave up on,
// with the subscription, the last error and the number of attempts. Bounded; when
// full the oldest entry is dropped (overflow policy: drop oldest, counted). Any
// thread.
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <vector>

#include "meshbus/node.hpp"

namespace meshbus::detail {

class dead_letter_store {
 public:
  explicit dead_letter_store(std::size_t capacity = 10000) : capacity_(capacity) {}
  void set_capacity(std::size_t capacity) {
    std::lock_guard lock(mu_);
    capacity_ = capacity;
  }

  /// Stores a dead letter (its id is assigned here); returns the id and whether an
  /// older entry had to be dropped to make room.
  std::pair<std::uint64_t, bool> add(DeadLetter letter, std::uint64_t subscription_id);
  std::vector<DeadLetter> list() const;
  /// The entry and the id of the subscription that failed it.
  std::optional<std::pair<DeadLetter, std::uint64_t>> find(std::uint64_t id) const;
  void remove(std::uint64_t id);

 private:
  struct entry {
    DeadLetter letter;
    std::uint64_t subscription_id;
  };
  mutable std::mutex mu_;
  std::deque<entry> entries_;
  std::size_t capacity_;
  std::uint64_t next_id_ = 1;
};

}  // namespace meshbus::detail
