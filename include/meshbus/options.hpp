/// @file
/// meshbus::Options — everything a Node can be configured with.
///
/// Fields left at their defaults are filled from the environment when
/// use_environment is true (the default):
///   MESHBUS_NAME, MESHBUS_CLUSTER, MESHBUS_INTERFACE, MESHBUS_BEACON_PORT,
///   MESHBUS_PEERS, MESHBUS_PORT (ROUTER), MESHBUS_PUB_PORT, MESHBUS_MAX_MESSAGE_BYTES,
///   MESHBUS_LOG, MESHBUS_DATA_DIR, MESHBUS_DURABILITY.
/// An explicit option always wins over the environment.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "meshbus/types.hpp"

namespace spdlog {
class logger;  // <spdlog/spdlog.h>, for Options::logger
}

namespace meshbus {

/// How much a node logs.
enum class LogLevel : std::uint8_t { trace, debug, info, warn, error, off };

/// What publish() does when the send queue is full.
enum class SendPolicy : std::uint8_t {
  block,  ///< wait up to Options::send_timeout for space, then return would_block
  fail,   ///< return would_block at once
};

/// When what the durable log (Options::data_dir) holds reaches the disk. A crash of
/// the process loses nothing that publish() accepted and the node sent, whichever the
/// policy (the written pages are in the OS's cache); the policies differ in what a
/// power loss or an OS crash can take (docs/store.md "Durability").
enum class Durability : std::uint8_t {
  /// Every batch is synced before its events are sent (and so before flush()
  /// returns): nothing synced is ever lost. One fdatasync per I/O batch.
  always,
  /// Synced every Options::sync_interval (group commit): a power loss loses at most
  /// that much, and the node starts a new epoch after it.
  interval,
  /// Left to the OS (synced at a clean stop): a power loss loses what the OS had not
  /// written yet (typically up to 30 s).
  none,
};

/// How long the history of the topics `pattern` matches is kept on disk. The first
/// rule whose pattern matches a topic applies; 0 is no bound of that kind. Whole
/// batches go, oldest first, once any bound is passed.
struct Retention {
  std::string pattern = "**";
  std::chrono::seconds max_age{0};
  std::uint64_t max_bytes = 0;   ///< per topic
  std::uint64_t max_events = 0;  ///< per topic
};

struct Options {
  /// Human-readable name shown to peers. Default: "<hostname>-<pid>".
  std::string name;
  /// Nodes talk only to nodes of the same cluster. Default: "meshbus".
  std::string cluster;
  /// Where to announce and listen: "" (loopback only: the default), "loopback",
  /// an interface name ("eth0"), one of its IPv4 addresses, or "all".
  std::string interface;
  /// UDP port of the beacon. 0: MESHBUS_BEACON_PORT or 5670.
  std::uint16_t beacon_port = 0;
  std::chrono::milliseconds beacon_interval{1000};
  /// A peer is suspect after this many beacon intervals without a sign of life...
  unsigned suspect_after_missed = 3;
  /// ...and gone after this long. 0: max(5 s, (suspect_after_missed + 2) x beacon_interval).
  std::chrono::milliseconds peer_expiry{0};
  /// A peer declared gone without a goodbye (nothing heard for peer_expiry: a crash,
  /// a partition, a paused process) stays resumable this long: if it comes back with
  /// the same epoch, its streams go on where they were and what they lack is repaired
  /// from its history, both ways. Until then its subscriptions still count for
  /// flush(); after it, it is gone for good: the tail of its streams is reported lost
  /// (an open-ended LossNotice) and events it never acknowledged are reported by
  /// flush(). A node that was itself stopped does not declare its peers gone for that.
  std::chrono::milliseconds peer_resume{30000};
  /// Seeds, "host:port" of nodes with a fixed ROUTER port, for networks without
  /// broadcast. One is enough: seeds pass on the peers they know.
  std::vector<std::string> seeds;
  /// Fixed ports (0: ephemeral). A node that serves as a seed needs a fixed router_port.
  std::uint16_t router_port = 0;
  std::uint16_t pub_port = 0;
  /// Free-form key/values sent to peers in HELLO.
  std::map<std::string, std::string> metadata;
  /// Default: random per Node.
  std::optional<NodeId> node_id;
  /// Fill unset fields from MESHBUS_* variables.
  bool use_environment = true;

  /// true: the Node runs its own I/O thread and handler threads. false: nothing
  /// runs until the caller calls Node::poll_once(), which also runs the handlers.
  bool background_thread = true;
  /// Handler threads (background mode). Streams are spread over them by hash;
  /// one stream always runs on one thread, in order. 0: handlers run on the I/O
  /// thread itself — the lowest latency (no hand-over between threads; what a
  /// handler publishes goes out in the same round), but a slow handler holds up all
  /// I/O of the node meanwhile.
  unsigned handler_threads = 1;
  /// Deliver this node's own events to its own matching subscriptions.
  bool local_delivery = true;

  /// Published bytes waiting for ZeroMQ, at most; then send_policy applies (as it
  /// does when a subscriber's window is full, see window_events).
  std::size_t send_queue_bytes = std::size_t{64} << 20;
  SendPolicy send_policy = SendPolicy::block;
  std::chrono::milliseconds send_timeout{10000};
  /// Received bytes waiting for handlers, at most; then reading pauses
  /// (back-pressure through ZeroMQ to the publishers; counted in Stats::receive_pauses).
  std::size_t receive_queue_bytes = std::size_t{64} << 20;
  /// Largest batch of small events in one ZeroMQ message.
  std::size_t max_batch_bytes = std::size_t{64} << 10;
  /// Largest message accepted from the network (ZMQ_MAXMSGSIZE) and largest event
  /// that can be published. Must be the same on every node. Left at the default,
  /// MESHBUS_MAX_MESSAGE_BYTES (a number of bytes) replaces it.
  std::size_t max_message_bytes = std::size_t{16} << 20;
  /// ZeroMQ high-water mark (messages) per subscriber and per peer. Small events
  /// travel in batches of up to max_batch_bytes, so this bounds the bytes queued in
  /// ZeroMQ per subscriber to about zmq_hwm x max_batch_bytes.
  int zmq_hwm = 1000;
  /// How long stop() keeps trying to hand over unsent data and to get it acknowledged.
  std::chrono::milliseconds linger{2000};

  // --- observability ---
  /// The application's spdlog logger: the node logs there (include <spdlog/spdlog.h>
  /// to set it). Null (the default): a logger of the node's own on stderr, sharing
  /// one sink with every other such node of the process.
  std::shared_ptr<spdlog::logger> logger;
  /// The level of the node's logger. Unset: MESHBUS_LOG, else warn, for the node's own
  /// logger; an application's logger keeps its level. Node::set_log_level() changes
  /// it later.
  std::optional<LogLevel> log_level;
  /// "HOST:PORT" (or ":PORT"; the host is 127.0.0.1 when left out; port 0 picks a free
  /// one, see Node::metrics_port()): serve GET /metrics there in the Prometheus text
  /// format. Empty (the default): off; MESHBUS_METRICS when left empty. An address
  /// that is not this machine's or a port in use makes the Node constructor throw.
  std::string metrics_address;

  // --- the durable log ---
  /// A directory for this node's durable log (created if absent). Empty (the
  /// default): everything lives in memory. With it the node keeps its id across
  /// restarts and, while its log vouches for what it sent, its epoch and sequence
  /// numbers; its history is on disk (late joiners, repairs and StartFrom reach back
  /// as far as retention keeps); durable subscriptions, dead letters and saga
  /// instances outlive the process. One process per directory: a second one gets
  /// error(storage). MESHBUS_DATA_DIR when left empty.
  std::string data_dir;
  /// MESHBUS_DURABILITY (always, interval, none) when left at the default.
  Durability durability = Durability::always;
  std::chrono::milliseconds sync_interval{100};
  /// Retention rules, per topic; empty: every topic keeps at most 7 days and 1 GiB.
  std::vector<Retention> retention;
  /// The most the log file may grow to (LMDB's map; only what is used takes space).
  /// When full, publish() returns store_failed until retention makes room.
  std::size_t store_max_bytes = std::size_t{64} << 30;

  // --- reliability ---
  /// The publisher's history, kept for repairs and late joiners: at most this many
  /// events and bytes, across all topics (the oldest go first).
  std::size_t history_events = std::size_t{1} << 20;
  std::size_t history_bytes = std::size_t{256} << 20;
  /// Flow control: at most this many events published but not yet acknowledged by
  /// any one reliable or acknowledged subscriber. When a window is full, publish()
  /// follows send_policy (counted in Stats::window_waits). At most history_events.
  std::size_t window_events = std::size_t{1} << 18;
  /// acknowledged subscribers that make no progress get unacknowledged events again
  /// after this, doubling on each further attempt (up to 30 s).
  std::chrono::milliseconds redelivery_timeout{1000};
  /// Dead letters kept at most (then the oldest are dropped, counted).
  std::size_t dead_letter_capacity = 10000;

  /// Background faults (handler exceptions, malformed input, refused sends, group
  /// conflicts). Every occurrence is counted in Stats; a cause is reported here (and
  /// logged) when first seen, then at most once per 10 s while it goes on, the message
  /// saying how many occurrences were only counted since the last report. Called on a
  /// meshbus thread (the I/O thread or a handler thread); must not throw.
  std::function<void(std::error_code, const std::string&)> on_error;
};

}  // namespace meshbus
