/// @file
/// meshbus::Transaction — a write transaction on a node's durable log
/// (Options::data_dir): the application's key/values, and events published only if
/// it commits. Node::transact() runs one; a durable subscription's transactional
/// handler gets one that commits together with the subscription's position (the
/// inbox pattern: each event's effect happens exactly once, however the process
/// ends).
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace meshbus {

struct PublishOptions;

/// Valid only during the call that received it, on that thread. Not thread-safe.
class Transaction {
 public:
  virtual ~Transaction() = default;
  /// The value of `key` as this transaction sees it (its own writes included).
  virtual std::optional<std::string> get(std::string_view key) = 0;
  virtual void put(std::string_view key, std::string_view value) = 0;
  virtual void erase(std::string_view key) = 0;
  /// Publishes once the transaction has committed (the outbox pattern): the event is
  /// stored in the transaction and published after the commit; if the process ends in
  /// between, the node publishes it when it starts again. Nothing is published if the
  /// transaction does not commit. Without an explicit event id the event gets one
  /// derived from where it was published from, so a receiver can drop the duplicate
  /// a crash at the wrong moment could make (acknowledged subscriptions do).
  virtual void publish(std::string_view topic, std::string_view payload, const PublishOptions& options) = 0;
  void publish(std::string_view topic, std::string_view payload);

 protected:
  Transaction() = default;
  Transaction(const Transaction&) = default;
  Transaction& operator=(const Transaction&) = default;
};

}  // namespace meshbus
