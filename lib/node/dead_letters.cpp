// Dead-letter store; see dead_letters.hpp.
#include "lib/node/dead_letters.hpp"

#include <algorithm>

namespace meshbus::detail {

std::pair<std::uint64_t, bool> dead_letter_store::add(DeadLetter letter, std::uint64_t subscription_id) {
  std::lock_guard lock(mu_);
  letter.id = next_id_++;
  bool dropped = false;
  if (capacity_ == 0) return {letter.id, true};
  while (entries_.size() >= capacity_) {
    entries_.pop_front();
    dropped = true;
  }
  const auto id = letter.id;
  entries_.push_back({std::move(letter), subscription_id});
  return {id, dropped};
}

std::vector<DeadLetter> dead_letter_store::list() const {
  std::lock_guard lock(mu_);
  std::vector<DeadLetter> out;
  out.reserve(entries_.size());
  for (const auto& e : entries_) out.push_back(e.letter);
  return out;
}

std::optional<std::pair<DeadLetter, std::uint64_t>> dead_letter_store::find(std::uint64_t id) const {
  std::lock_guard lock(mu_);
  for (const auto& e : entries_) {
    if (e.letter.id == id) return std::make_pair(e.letter, e.subscription_id);
  }
  return std::nullopt;
}

void dead_letter_store::remove(std::uint64_t id) {
  std::lock_guard lock(mu_);
  entries_.erase(std::remove_if(entries_.begin(), entries_.end(), [&](const entry& e) { return e.letter.id == id; }),
                 entries_.end());
}

}  // namespace meshbus::detail
