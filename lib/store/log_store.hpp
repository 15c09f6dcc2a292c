// log_store: a node's durable log, one LMDB environment in its data directory
// (docs/store.md). It holds the node's identity (node id, epoch), the publisher's
// history (every sent batch, as sent, keyed by topic and first sequence, with a time
// index), and small tables the node's parts keep across restarts (durable
// subscription positions, the handlers' key/values, the outbox, dead letters, saga
// instances). Every stored value carries a CRC32C checked on every read (LMDB does
// not checksum its pages): a damaged record is reported, never skipped silently.
//
// Depends on nothing above lib/wire: it stores bytes, the node decides what they
// mean. Thread-safe: reads run concurrently from any thread; write transactions are
// serialized (LMDB's writer lock) and must be short. Setup failures throw
// store_error (a message naming the file and what to do); writes on the hot path
// return write_result (a full disk is a value, never an exception); a damaged
// record found while reading is reported in the read's result.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lib/wire/common.hpp"

namespace meshbus::store {

using byte_span = std::span<const std::uint8_t>;

/// When a committed write reaches the disk (docs/store.md "Durability").
enum class durability : std::uint8_t {
  always,    ///< every commit is synced before it returns
  interval,  ///< synced every sync_interval (group commit); power loss loses at most that
  none,      ///< left to the OS; synced on a clean close
};
const char* to_string(durability d) noexcept;
/// "always", "interval" or "none"; nullopt otherwise.
std::optional<durability> parse_durability(std::string_view text) noexcept;

/// Retention of the history of topics that match `pattern` (topic syntax, `*`/`**`;
/// the first rule that matches a topic applies). 0: no bound of that kind.
struct retention_rule {
  std::string pattern = "**";
  std::chrono::seconds max_age{0};
  std::uint64_t max_bytes = 0;
  std::uint64_t max_events = 0;
};

struct store_options {
  std::string dir;
  durability policy = durability::always;
  std::chrono::milliseconds sync_interval{100};
  /// Largest size of the log file (LMDB's map). Only what is used takes disk space.
  std::size_t map_bytes = std::size_t{64} << 30;
  /// Open to read only, beside a running node (`meshbus log`): no lock taken, no
  /// identity created, nothing written.
  bool read_only = false;
  /// The node id to take when the log is new (none: a random one).
  std::optional<wire::node_id_bytes> node_id;
};

/// A setup failure: the message names the file and says what to do.
class store_error : public std::runtime_error {
 public:
  enum class kind : std::uint8_t {
    locked,        ///< another process has the data directory open
    not_a_log,     ///< the directory or file is not a meshbus log
    newer_format,  ///< written by a newer meshbus
    no_access,     ///< permissions, a read-only file system, not a directory
    damaged,       ///< LMDB refuses the file, or the identity record is damaged
    io,            ///< anything else the system reported
  };
  store_error(kind k, const std::string& message) : std::runtime_error(message), kind_(k) {}
  kind which() const noexcept { return kind_; }

 private:
  kind kind_;
};

/// The outcome of a write transaction.
struct write_result {
  enum class status : std::uint8_t {
    ok,
    full,    ///< the disk or the map is full: nothing was written; try again later
    failed,  ///< any other error: nothing was written
  };
  status state = status::ok;
  std::string message;  ///< for full and failed: what happened, the file, what to do
  explicit operator bool() const noexcept { return state == status::ok; }
};

/// Who this node is, as the log remembers it.
struct identity {
  wire::node_id_bytes node_id{};
  std::uint64_t epoch = 0;
  bool new_node = false;        ///< the log was created now
  bool new_epoch = false;       ///< the log could not vouch for the last epoch's tail
  std::string new_epoch_reason; ///< why, when new_epoch and not new_node
};

/// One batch of the publisher's history, as it was sent.
struct history_batch {
  std::string_view topic;
  std::uint64_t first_seq = 0;
  std::uint32_t count = 0;
  std::uint64_t timestamp_ns = 0;  ///< the batch's base timestamp
  byte_span frame;                 ///< the data frame (docs/protocol.md §3)
};

/// The tables a node's parts keep (besides the history). Keys are bytes chosen by
/// their owner.
enum class table : std::uint8_t {
  positions,     ///< durable subscriptions: position per stream
  kv,            ///< handlers' own key/values (the inbox pattern)
  outbox,        ///< events published inside a handler's transaction, until sent
  dead_letters,  ///< the dead-letter store
  sagas,         ///< saga instances
  events,        ///< the event store: streams, their index by position, snapshots
};

/// What a history read found for [from, to] of one topic.
struct history_read {
  std::uint64_t oldest = 0;  ///< oldest sequence held for the topic (0: none)
  std::uint64_t last = 0;    ///< newest sequence held (0: none)
  /// Ranges inside [from, to] whose records failed their CRC32C (or did not parse):
  /// reported, never delivered.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> damaged;
  std::string damage;        ///< what was found, for the fault report
  std::uint32_t batches = 0; ///< batches visited
};

/// One topic of one epoch in the log, for tools.
struct topic_summary {
  std::uint64_t epoch = 0;
  std::string topic;
  std::uint64_t first_seq = 0;  ///< 0: nothing held
  std::uint64_t last_seq = 0;
  std::uint64_t events = 0;
  std::uint64_t bytes = 0;
};

class log_store {
 public:
  /// Opens (creating when absent) the log in options.dir; throws store_error.
  static std::unique_ptr<log_store> open(const store_options& options);
  virtual ~log_store() = default;

  virtual const identity& who() const noexcept = 0;
  virtual const store_options& options() const noexcept = 0;
  /// The data file, for messages.
  virtual const std::string& path() const noexcept = 0;

  // --- the publisher's history (this epoch) ---
  /// Last sequence stored per topic, for continuing the streams after a restart.
  virtual std::vector<std::pair<std::string, std::uint64_t>> last_sequences() const = 0;
  /// Stores sent batches in one transaction (synced as the policy says).
  virtual write_result append(std::span<const history_batch> batches) = 0;
  /// Visits, in order, the stored batches of `topic` that overlap [from, to], at most
  /// `max_batches` of them. The frame is valid only during the call.
  virtual history_read read(std::string_view topic, std::uint64_t from, std::uint64_t to,
                            std::uint32_t max_batches,
                            const std::function<void(const history_batch&)>& visit) const = 0;
  /// The first sequence of `topic` whose batch began at or after `unix_ns` (last + 1
  /// when none did).
  virtual std::uint64_t sequence_at(std::string_view topic, std::uint64_t unix_ns) const = 0;
  /// Applies retention (the first matching rule per topic) at `unix_now_ns`, deleting
  /// whole batches, oldest first. Returns events deleted.
  virtual std::uint64_t enforce_retention(const std::vector<retention_rule>& rules, std::uint64_t unix_now_ns) = 0;

  // --- durability ---
  /// interval: syncs when the interval has passed since the last sync and something
  /// was written. Returns the next time it wants to be called.
  virtual std::chrono::steady_clock::time_point tick(std::chrono::steady_clock::time_point now) = 0;
  /// Syncs now (any policy): flush() with interval/none, and a clean close.
  virtual write_result sync() = 0;

  // --- the small tables ---
  class transaction {
   public:
    virtual ~transaction() = default;
    virtual void put(table t, byte_span key, byte_span value) = 0;
    virtual void erase(table t, byte_span key) = 0;
    /// A value written in this transaction or before; nullopt when absent. A damaged
    /// record throws store_error(damaged).
    virtual std::optional<std::vector<std::uint8_t>> get(table t, byte_span key) = 0;
    /// Commits (synced as the policy says). Nothing is written when it fails.
    virtual write_result commit() = 0;
  };
  /// A write transaction: only one at a time in the process (others wait). Drop it
  /// without commit() to abort.
  virtual std::unique_ptr<transaction> begin() = 0;
  /// Reads one value; nullopt when absent; throws store_error(damaged) on a bad CRC.
  virtual std::optional<std::vector<std::uint8_t>> get(table t, byte_span key) const = 0;
  /// Visits every record whose key starts with `prefix`, in key order. A damaged
  /// record is passed with `damaged` = true and an empty value.
  virtual void scan(table t, byte_span prefix,
                    const std::function<void(byte_span key, byte_span value, bool damaged)>& visit) const = 0;
  /// Visits the records whose key starts with `prefix` from the key `from` on
  /// (inclusive) in key order, or, with `backward`, from `from` down in reverse order
  /// (an empty `from`: from the first, or backward from the last), while `visit`
  /// returns true. Damaged records as in scan().
  virtual void scan_from(table t, byte_span prefix, byte_span from, bool backward,
                         const std::function<bool(byte_span key, byte_span value, bool damaged)>& visit) const = 0;

  // --- offline reading (tools) ---
  virtual std::vector<topic_summary> topics() const = 0;
  /// Visits the stored batches of `topic` in `epoch` from sequence `from` on, in
  /// order, until `visit` returns false. Damaged records are passed with an empty
  /// frame and `damaged` = true.
  virtual void read_epoch(std::uint64_t epoch, std::string_view topic, std::uint64_t from,
                          const std::function<bool(const history_batch&, bool damaged)>& visit) const = 0;

 protected:
  log_store() = default;
  log_store(const log_store&) = delete;
  log_store& operator=(const log_store&) = delete;
};

/// The version of the log's layout this build writes (docs/store.md).
inline constexpr std::uint32_t format_version = 1;

inline byte_span as_span(std::string_view s) noexcept {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

}  // namespace meshbus::store
