// durable_state: the application's part of a node's durable log — key/values
// (Node::stored, Node::transact) and the outbox (events published inside a
// transaction go out only once it committed; ones a crash left behind go out when
// the node starts again). Durable subscriptions commit their positions through it,
// in the same transaction as a transactional handler's writes. Keys under "$saga/"
// (durable sagas, <meshbus/saga.hpp>) go to table `sagas`, keys under "$es/" (the
// event store, <meshbus/event_store.hpp>) to table `events`, the others to `kv`. Any
// thread; one write transaction at a time (LMDB's writer lock).
#pragma once

#include <atomic>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "lib/node/node_context.hpp"
#include "lib/store/log_store.hpp"
#include "meshbus/node.hpp"

namespace meshbus::detail {

class durable_state {
 public:
  /// How an event leaves the outbox (publisher_side::publish; reserved topics too).
  using publish_fn = std::function<PublishResult(std::string_view topic, std::string_view payload,
                                                 const PublishOptions& options)>;
  durable_state(node_context& ctx, store::log_store& store, publish_fn publish);

  std::optional<std::string> get(std::string_view key) const;
  std::vector<std::pair<std::string, std::string>> range(std::string_view prefix) const;
  /// Node::stored_range(prefix, from, limit, backward).
  std::vector<std::pair<std::string, std::string>> range(std::string_view prefix, std::string_view from,
                                                         std::size_t limit, bool backward) const;

  /// Runs `work` with a Transaction; `also` (may be null) adds its own records to the
  /// same store transaction (a durable subscription's position). Commits, then
  /// publishes the transaction's outbox. Throws what `work` throws (nothing written)
  /// or error(storage) when the commit fails. `id_base`: the stem of the default
  /// event ids of what it publishes (empty: a fresh one).
  void transact(const std::function<void(Transaction&)>& work,
                const std::function<void(store::log_store::transaction&)>& also, const std::string& id_base);

  /// Publishes what the outbox still holds (a crash came between a commit and its
  /// publishing). Called once the node runs.
  void publish_leftovers();

 private:
  struct pending {
    std::vector<std::uint8_t> key;
    std::vector<std::uint8_t> record;
  };
  class tx;
  bool publish_record(const std::vector<std::uint8_t>& record);
  void forget(const std::vector<pending>& sent);

  node_context& ctx_;
  store::log_store& store_;
  publish_fn publish_;
  std::atomic<std::uint64_t> next_outbox_{1};
};

}  // namespace meshbus::detail
