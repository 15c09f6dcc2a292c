// durable_positions: where each durable subscription stands in each stream, in the
// node's durable log (table `positions`, key: name, NUL, publisher id, topic; value:
// epoch, committed, handed). A stream new to this run starts after `committed`
// (resume_at, I/O thread). Handler threads mark a batch `handed` before its handlers
// run and `committed` after they return, so a restart delivers again at most the
// batches that were being handled, and counts those events
// (Stats::durable_redeliveries). A transactional handler commits its writes and the
// position of each event in one transaction instead (exactly once). Any thread.
#pragma once

#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "lib/node/node_context.hpp"
#include "lib/store/log_store.hpp"
#include "lib/wire/common.hpp"
#include "meshbus/node.hpp"

namespace meshbus::detail {

class durable_state;

class durable_positions {
 public:
  durable_positions(node_context& ctx, store::log_store& store, durable_state& state);

  /// The next sequence for `name` on the stream (nullopt: nothing stored). I/O thread.
  std::optional<std::uint64_t> resume_at(const std::string& name, const wire::node_id_bytes& publisher,
                                         std::uint64_t epoch, std::string_view topic);
  /// Events [from, to] of a stream are about to be handled: `to` may reach past the
  /// batch to the end of the run queued behind it, so that one mark covers the run.
  /// Handler thread.
  void handing(const std::string& name, const NodeId& publisher, std::uint64_t epoch, std::string_view topic,
               std::uint64_t from, std::uint64_t to);
  /// Events up to `through` are handled: committed once the marked run is done.
  /// Handler thread.
  void handled(const std::string& name, const NodeId& publisher, std::uint64_t epoch, std::string_view topic,
               std::uint64_t through);
  /// Runs a transactional handler for `event`: its writes and the event's position
  /// commit together. Handler thread; throws what the handler throws.
  void transact(const std::string& name, const Event& event, const TransactionalHandler& handler);

 private:
  static std::string key_of(const std::string& name, const wire::node_id_bytes& publisher, std::string_view topic);
  void write(const std::string& key, std::uint64_t epoch, std::uint64_t committed, std::uint64_t handed);

  node_context& ctx_;
  store::log_store& store_;
  durable_state& state_;
  std::mutex mu_;
  /// Per stream key: the last sequence handed to handlers before this run, while
  /// deliveries may still repeat it.
  std::map<std::string, std::uint64_t, std::less<>> handed_before_;
  /// Per stream key: the end of the run marked handed in this run of the process.
  std::map<std::string, std::uint64_t, std::less<>> marked_;
};

}  // namespace meshbus::detail
