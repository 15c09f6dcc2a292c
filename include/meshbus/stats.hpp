/// @file
/// Counters a Node keeps. Every drop, refusal and malformed input is counted here;
/// nothing is lost without a number going up.
#pragma once

#include <cstddef>
#include <cstdint>

namespace meshbus {

struct Stats {
  // --- publishing ---
  std::uint64_t events_published = 0;     ///< events accepted by publish()
  std::uint64_t batches_sent = 0;         ///< data messages handed to ZeroMQ
  std::uint64_t bytes_sent = 0;           ///< bytes of those messages
  std::uint64_t publish_would_block = 0;  ///< publish() returned would_block: send queue full
  std::uint64_t send_stalls = 0;          ///< times ZeroMQ refused a data message at its
                                          ///< high-water mark (a subscriber is slow); retried
  std::uint64_t sent_past_gone = 0;       ///< data messages sent while a departed peer's full
                                          ///< queue refused them; that peer does not get them
  std::uint64_t heartbeats_sent = 0;
  std::uint64_t control_send_failures = 0;  ///< control messages refused: a full peer queue, or no connection to the peer
                                            ///< (their timers send them again)
  std::uint64_t window_waits = 0;           ///< publish() waited: a subscriber's window was full
  std::uint64_t nacks_received = 0;
  std::uint64_t repairs_sent = 0;           ///< batches sent again on request
  std::uint64_t losses_sent = 0;            ///< "no longer in history" answers
  std::uint64_t redeliveries = 0;           ///< times unacknowledged events were sent again
  std::uint64_t acks_received = 0;
  std::uint64_t bad_acks = 0;               ///< acks from unknown subscribers or beyond what was sent
  std::uint64_t bad_nacks = 0;              ///< NACKs for what was never sent, or of another epoch
  // --- receiving ---
  std::uint64_t batches_received = 0;
  std::uint64_t events_received = 0;
  std::uint64_t bytes_received = 0;
  std::uint64_t events_delivered = 0;   ///< handler calls that returned normally
  std::uint64_t handler_errors = 0;     ///< handler calls that threw
  std::uint64_t events_unmatched = 0;   ///< passed ZeroMQ's prefix filter, matched no pattern
  std::uint64_t gaps = 0;               ///< sequence gaps detected
  std::uint64_t events_lost = 0;        ///< events that will never arrive (loss notices)
  std::uint64_t loss_notices = 0;
  std::uint64_t nacks_sent = 0;
  std::uint64_t repairs_received = 0;   ///< batches received as repairs
  std::uint64_t acks_sent = 0;
  std::uint64_t duplicates_dropped = 0; ///< events already received, not delivered again
  std::uint64_t reorder_overflow = 0;   ///< held batches dropped to bound the reorder buffer
                                        ///< (asked for again later)
  std::uint64_t rejected_sequences = 0; ///< batches or heartbeats too far ahead, or of an
                                        ///< older epoch: not believed
  std::uint64_t receive_pauses = 0;     ///< times reading paused: handler queue full
  std::uint64_t unknown_starts = 0;     ///< streams started at the first event received because the
                                        ///< publisher's READY (where "now" is) never came
  std::uint64_t handler_retries = 0;    ///< acknowledged: handler calls repeated after a throw
  std::uint64_t dead_letters = 0;       ///< events dead-lettered
  std::uint64_t dead_letters_dropped = 0;  ///< dead letters evicted from a full store
  // --- request/reply ---
  std::uint64_t requests_sent = 0;
  std::uint64_t requests_failed = 0;   ///< of those: no service, timeout, remote failure, ...
  std::uint64_t requests_served = 0;
  std::uint64_t late_replies = 0;      ///< replies that came after their request timed out
  // --- bad input (dropped, counted, logged once per cause) ---
  std::uint64_t malformed_beacons = 0;
  std::uint64_t unsupported_beacons = 0;      ///< another protocol version
  std::uint64_t foreign_cluster_beacons = 0;  ///< another cluster name: ignored
  std::uint64_t foreign_network_beacons = 0;  ///< from outside the selected interfaces
  std::uint64_t malformed_messages = 0;       ///< data or control frames
  std::uint64_t unsupported_messages = 0;     ///< another protocol version
  std::uint64_t unknown_senders = 0;          ///< directed messages without a valid sender id
  // --- peers ---
  std::uint64_t peers_joined = 0;
  std::uint64_t peers_left = 0;
  std::uint64_t peers_suspected = 0;
  std::size_t peers_alive = 0;
  std::size_t peers_suspect = 0;
  std::size_t send_queue_bytes = 0;     ///< published, not yet taken by ZeroMQ
  std::size_t receive_queue_bytes = 0;  ///< received, not yet handled
  std::size_t unacknowledged_events = 0;  ///< sent, not yet acknowledged, over all subscribers
  std::size_t history_events = 0;
  std::size_t history_bytes = 0;
};

}  // namespace meshbus
