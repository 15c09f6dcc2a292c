/// @file
/// meshbus::Node — one participant in a brokerless mesh.
///
/// Threading contract
/// ------------------
/// * Every public member may be called from any thread, except as noted.
/// * In background mode (the default) the Node owns one I/O thread, which owns every
///   socket, and Options::handler_threads handler threads. publish() never blocks on
///   a slow peer: it only waits for space in the send queue (see SendPolicy).
/// * Handlers run on a handler thread, never on the I/O thread and never on the
///   thread that called publish(). Events of one stream (publisher, epoch, topic)
///   reach handlers one at a time, in sequence order. Different streams may be
///   handled in parallel when handler_threads > 1.
/// * A handler may call any member of its own Node, stop() included, but must not
///   destroy it. Calls that wait (a blocking publish(), flush(), wait_for_*()) hold up
///   that handler thread meanwhile; the I/O thread never waits for handlers, so they
///   cannot deadlock it. A handler that throws is counted (Stats::handler_errors),
///   reported once to Options::on_error and the log, and the Node goes on.
/// * With background_thread = false nothing runs by itself: poll_once() runs one
///   round of the I/O loop and then the handlers, on the caller's thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "meshbus/error.hpp"
#include "meshbus/event.hpp"
#include "meshbus/options.hpp"
#include "meshbus/stats.hpp"
#include "meshbus/types.hpp"

namespace meshbus {

namespace detail {
class node_impl;
}

/// Result of publish(): refusal is a value, not an exception.
enum class [[nodiscard]] PublishResult : std::uint8_t {
  ok,           ///< queued; it will be sent in order
  would_block,  ///< the send queue stayed full (SendPolicy); nothing was queued
};

/// Optional parts of an event. All views are copied before publish() returns.
struct PublishOptions {
  std::string_view event_id;  ///< default: derived from (publisher, epoch, sequence)
  std::string_view type_name;
  std::uint32_t type_version = 0;
  std::string_view correlation_id;
  std::string_view causation_id;
  std::string_view content_type;
  std::span<const Header> headers;
  /// Default: the time the batch is sent (one clock read per batch).
  std::optional<std::chrono::system_clock::time_point> timestamp;
};

using Handler = std::function<void(const Event&)>;
using PeerHandler = std::function<void(const PeerEvent&)>;

/// Identifies a subscription for unsubscribe().
struct Subscription {
  std::uint64_t id = 0;
  explicit operator bool() const noexcept { return id != 0; }
};

class Node {
 public:
  /// Binds, starts discovery and (in background mode) the threads.
  /// Throws meshbus::error: address_in_use, network, configuration.
  explicit Node(Options options = {});
  /// Stops (see stop()).
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  /// Publishes one event on `topic` (dot-separated segments, no wildcards).
  /// Throws meshbus::error: invalid_topic, message_too_large, invalid_argument, stopped.
  PublishResult publish(std::string_view topic, std::span<const std::byte> payload,
                        const PublishOptions& options = {});
  PublishResult publish(std::string_view topic, std::string_view text,
                        const PublishOptions& options = {});

  /// Calls `handler` for every event whose topic matches `pattern`: `*` matches
  /// one segment, `**` any number (zero or more). Throws meshbus::error:
  /// invalid_topic, stopped.
  Subscription subscribe(std::string_view pattern, Handler handler);
  /// After this returns no new call of the handler starts (one already running
  /// may finish). Unknown or already removed subscriptions are ignored.
  void unsubscribe(Subscription subscription);

  /// Peer joined / suspect / alive again / left, on a handler thread. Replaces
  /// any previous peer handler.
  void on_peer(PeerHandler handler);

  /// Waits until at least `count` peers are ready subscribers of `topic` (their
  /// subscriptions are in effect at this node's PUB socket, so nothing published
  /// from now on misses them). False on timeout.
  bool wait_for_subscribers(std::string_view topic, std::size_t count,
                            std::chrono::milliseconds timeout);
  /// Waits until at least `count` peers have joined. False on timeout.
  bool wait_for_peers(std::size_t count, std::chrono::milliseconds timeout);
  /// Waits until everything published so far was handed to ZeroMQ. False on timeout.
  bool flush(std::chrono::milliseconds timeout);

  /// Runs one round of the I/O loop (waiting up to `timeout` for input) and then
  /// every pending handler, on this thread. Only with background_thread = false.
  /// Returns how many inputs and handler batches were processed.
  std::size_t poll_once(std::chrono::milliseconds timeout = std::chrono::milliseconds(0));

  /// Flushes (bounded by Options::linger), says goodbye to peers, stops the threads.
  /// Handlers already queued still run. Idempotent.
  void stop();
  bool stopped() const noexcept;

  Stats stats() const;
  std::vector<PeerInfo> peers() const;
  const NodeId& id() const noexcept;
  std::uint64_t epoch() const noexcept;
  const std::string& name() const noexcept;
  const std::string& cluster() const noexcept;
  /// The address the sockets are bound to and their ports.
  const std::string& bind_address() const noexcept;
  std::uint16_t router_port() const noexcept;
  std::uint16_t pub_port() const noexcept;
  std::uint16_t beacon_port() const noexcept;

 private:
  std::unique_ptr<detail::node_impl> impl_;
};

}  // namespace meshbus
