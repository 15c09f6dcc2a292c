// The dead-letter store of one node: events an acknowledged subscription gave up on,
// with the subscription, the last error and the number of attempts. Bounded; when
// full the oldest entry is dropped (overflow policy: drop oldest, counted in
// Stats::dead_letters_dropped). Any thread.
//
// With a durable log (Options::data_dir) it writes through to table `dead_letters`
// (docs/store.md): each letter under its id, the next id beside them, so a restarted
// node lists and replays the letters of its earlier runs and never reuses an id. A
// failed write is counted (store_failures) and reported, the letter kept in memory;
// a damaged record is counted (store_damaged), reported and skipped at load.
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "lib/node/node_context.hpp"
#include "meshbus/node.hpp"

namespace meshbus::detail {

class dead_letter_store {
 public:
  /// The subscription that failed a letter, as far as a replay needs it.
  struct origin {
    /// The subscription of this run of the process; 0 for a letter loaded from the
    /// log (an id of an earlier run means nothing now): its subscription is then
    /// found by pattern, durable name and group.
    std::uint64_t subscription_id = 0;
    std::string durable_name;
    std::string group;
  };

  /// Loads what the log holds (ctx.store; none: memory only).
  dead_letter_store(node_context& ctx, std::size_t capacity);

  /// Stores a dead letter (its id is assigned here); returns the id and whether an
  /// older entry had to be dropped to make room.
  std::pair<std::uint64_t, bool> add(DeadLetter letter, origin from);
  std::vector<DeadLetter> list() const;
  std::size_t size() const;
  /// The entry and where it came from.
  std::optional<std::pair<DeadLetter, origin>> find(std::uint64_t id) const;
  void remove(std::uint64_t id);

 private:
  struct entry {
    DeadLetter letter;
    origin from;
  };
  void load();
  /// Writes `added` (may be null) and the next id, deletes `erased`; reports a failure.
  void write(const entry* added, const std::vector<std::uint64_t>& erased, const char* what);

  node_context& ctx_;
  /// Held across assigning ids and writing them, so the log's records and its next id
  /// are written in the order the ids were given (`mu_` is taken inside it, briefly).
  std::mutex write_mu_;
  mutable std::mutex mu_;
  std::deque<entry> entries_;
  std::size_t capacity_;
  std::uint64_t next_id_ = 1;
};

}  // namespace meshbus::detail
