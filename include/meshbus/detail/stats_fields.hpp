/// @file
/// The one list of a Node's statistics. Stats, the node's live counters, the copy
/// between them, the name table (meshbus::stat_fields) and, through it, metric names
/// are all generated from MESHBUS_STATS, so a statistic is added in one place.
///
/// Each entry is X(section, kind, name, doc):
/// * section — the group it is shown under: publishing, receiving, groups, requests,
///   bad_input, peers, queues;
/// * kind — `counter` (only grows over the Node's life; std::uint64_t) or `gauge`
///   (a current value, read when Stats is taken; std::size_t);
/// * name — the Stats field, also the metric name;
/// * doc — one line on what it counts.
///
/// Every drop, refusal and malformed input has a counter here: nothing is lost without
/// a number going up.
#pragma once

// clang-format off
#define MESHBUS_STATS(X)                                                                                       \
  /* publishing */                                                                                             \
  X(publishing, counter, events_published, "events accepted by publish()")                                     \
  X(publishing, counter, batches_sent, "data messages handed to ZeroMQ")                                       \
  X(publishing, counter, bytes_sent, "bytes of those data messages")                                           \
  X(publishing, counter, publish_would_block, "publish() returned would_block: the send queue was full")       \
  X(publishing, counter, send_stalls,                                                                          \
    "times ZeroMQ refused a data message at its high-water mark (a subscriber is slow); retried")             \
  X(publishing, counter, sent_past_gone,                                                                       \
    "data messages sent while a departed or stalled peer's full queue refused them; that peer does not get "   \
    "them")                                                                                                    \
  X(publishing, counter, heartbeats_sent, "heartbeats sent by idle streams")                                   \
  X(publishing, counter, control_send_failures,                                                                \
    "control messages refused: a full peer queue, or no connection to the peer (their timers send them "      \
    "again)")                                                                                                  \
  X(publishing, counter, window_waits, "publish() waited: a subscriber's window was full")                     \
  X(publishing, counter, nacks_received, "NACKs received from subscribers")                                    \
  X(publishing, counter, repairs_sent, "batches sent again on request")                                        \
  X(publishing, counter, losses_sent, "\"no longer in history\" answers sent")                                 \
  X(publishing, counter, redeliveries, "times unacknowledged events were sent again")                          \
  X(publishing, counter, acks_received, "acks received from subscribers")                                      \
  X(publishing, counter, bad_acks, "acks from unknown subscribers or beyond what was sent")                    \
  X(publishing, counter, bad_nacks, "NACKs for what was never sent, or of another epoch")                      \
  X(publishing, counter, history_evicted,                                                                      \
    "events evicted from the bounded history (a NACK for them is answered with a loss)")                       \
  X(publishing, counter, subscribers_gone_unacknowledged,                                                      \
    "subscribers gone for good (restarted, process ended, not back in time) without acknowledging everything")  \
  X(publishing, counter, events_never_acknowledged,                                                            \
    "events those subscribers never acknowledged (flush() reports them)")                                     \
  /* receiving */                                                                                              \
  X(receiving, counter, batches_received, "data messages received")                                            \
  X(receiving, counter, events_received, "events in those data messages")                                     \
  X(receiving, counter, bytes_received, "bytes of those data messages")                                        \
  X(receiving, counter, events_delivered, "handler calls that returned normally")                              \
  X(receiving, counter, handler_errors, "handler calls that threw")                                            \
  X(receiving, counter, events_unmatched, "events that passed ZeroMQ's prefix filter but matched no pattern")  \
  X(receiving, counter, gaps, "sequence gaps detected")                                                        \
  X(receiving, counter, events_lost, "events that will never arrive (announced by loss notices)")              \
  X(receiving, counter, loss_notices, "loss notices given to the loss handler")                                \
  X(receiving, counter, nacks_sent, "NACKs sent to publishers")                                                \
  X(receiving, counter, repairs_received, "batches received as repairs")                                       \
  X(receiving, counter, acks_sent, "acks sent to publishers")                                                  \
  X(receiving, counter, duplicates_dropped, "events already received, not delivered again")                    \
  X(receiving, counter, reorder_overflow,                                                                      \
    "held batches dropped to bound the reorder buffer (asked for again later)")                                \
  X(receiving, counter, rejected_sequences,                                                                    \
    "batches or heartbeats too far ahead, or of an older epoch: not believed")                                 \
  X(receiving, counter, receive_pauses, "times reading paused because the handler queue was full")             \
  X(receiving, counter, unknown_starts,                                                                        \
    "streams started at the first event received because the publisher's READY (where \"now\" is) never "     \
    "came")                                                                                                    \
  X(receiving, counter, events_before_start,                                                                   \
    "events passed over because they are older than their subscription's StartFrom::time")                    \
  X(receiving, counter, handler_retries, "acknowledged: handler calls repeated after a throw")                 \
  X(receiving, counter, dead_letters, "events dead-lettered")                                                  \
  X(receiving, counter, dead_letters_dropped, "dead letters evicted from a full dead-letter store")             \
  X(receiving, counter, events_abandoned,                                                                      \
    "events left unhandled because the node stopped, or their group subscription ended, while they waited; "  \
    "not acknowledged")                                                                                        \
  /* service groups, on the publisher side */                                                                  \
  X(groups, counter, group_conflicts,                                                                          \
    "times a node subscribed a service group with other patterns than the group's (it gets no work)")          \
  X(groups, counter, group_reassignments, "group batches handed from one member to another")                   \
  X(groups, counter, group_backlog_dropped,                                                                    \
    "group batches dropped, oldest first, from a full backlog while the group had no member")                 \
  X(groups, counter, group_out_of_scope,                                                                       \
    "group batches dropped because their topic was no longer the group's work")                                \
  /* request/reply */                                                                                          \
  X(requests, counter, requests_sent, "requests sent")                                                         \
  X(requests, counter, requests_failed, "of those: no service, timeout, remote failure, ...")                  \
  X(requests, counter, requests_served, "requests this node's services answered")                              \
  X(requests, counter, requests_refused, "requests refused: the service's own queue was full (ServeOptions)")     \
  X(requests, counter, late_replies, "replies that came after their request timed out")                        \
  X(requests, counter, trace_requests_answered,                                                                \
    "trace requests (meshbus trace) this node looked up and answered")                                         \
  X(requests, counter, trace_requests_refused,                                                                 \
    "trace requests answered \"refused\" unread: more than 4 a second (burst 8), or 8 already waiting")         \
  X(requests, counter, status_requests_answered, "status requests (meshbus stats, top) this node answered")    \
  X(requests, counter, status_requests_refused,                                                                \
    "status requests dropped unanswered: more than 10 a second (burst 20) from one asker")                     \
  X(requests, counter, metrics_requests, "GET /metrics requests the metrics endpoint answered")                 \
  /* bad input: dropped, counted, reported at most once per quiet period per cause */                          \
  X(bad_input, counter, malformed_beacons, "malformed beacons")                                                \
  X(bad_input, counter, unsupported_beacons, "beacons of another protocol version")                            \
  X(bad_input, counter, foreign_cluster_beacons, "beacons or HELLOs of another cluster name: ignored")          \
  X(bad_input, counter, foreign_network_beacons, "beacons from outside the selected interfaces")               \
  X(bad_input, counter, malformed_messages, "malformed data or control frames")                                \
  X(bad_input, counter, unsupported_messages, "data or control frames of another protocol version")            \
  X(bad_input, counter, unknown_senders, "directed messages without a valid sender id")                        \
  X(bad_input, counter, malformed_trace_requests,                                                              \
    "trace requests that did not decode or named a reply topic outside $meshbus.trace.reply: dropped")         \
  X(bad_input, counter, metrics_requests_rejected,                                                             \
    "HTTP requests the metrics endpoint answered 4xx or 5xx: malformed, oversized, another path or method")    \
  /* peers */                                                                                                  \
  X(peers, counter, peers_joined, "peers that joined")                                                         \
  X(peers, counter, peers_left, "peers that left or expired")                                                  \
  X(peers, counter, peers_suspected, "times a peer became suspect")                                            \
  X(peers, counter, peers_resumed, "peers declared gone that came back with their streams (same epoch)")       \
  X(peers, counter, peers_found_gone,                                                                          \
    "absent peers forgotten early: their ROUTER port refused a connection (their process is gone)")            \
  X(peers, counter, pauses_noticed,                                                                            \
    "times this node noticed it had not run for over a second (stopped, or its thread held up)")               \
  X(peers, gauge, peers_alive, "peers alive now")                                                              \
  X(peers, gauge, peers_suspect, "peers suspect now")                                                          \
  /* queues and history */                                                                                     \
  X(queues, gauge, send_queue_bytes, "bytes published, not yet taken by ZeroMQ")                               \
  X(queues, gauge, receive_queue_bytes, "bytes received, not yet handled")                                     \
  X(queues, gauge, dead_letters_held, "dead letters this node holds (dead_letters(), meshbus dlq list)")       \
  X(queues, gauge, unacknowledged_events, "events sent, not yet acknowledged, over all subscribers")           \
  X(queues, gauge, history_events, "events held in the publisher's history")                                   \
  X(queues, gauge, history_bytes, "bytes held in the publisher's history")                                     \
  /* the durable log (Options::data_dir) */                                                                    \
  X(store, counter, store_commits, "write transactions of the durable log (one per I/O batch)")               \
  X(store, counter, store_events_written, "events written to the durable log")                                \
  X(store, counter, store_bytes_written, "bytes of batches written to the durable log")                       \
  X(store, counter, store_failures,                                                                            \
    "writes the durable log refused (a full disk or map, an I/O error); nothing is lost, they are retried")    \
  X(store, counter, publish_store_failed, "publish() returned store_failed: the durable log could not be written") \
  X(store, counter, store_damaged,                                                                             \
    "records of the durable log that failed their CRC32C check (never delivered; reported as losses)")         \
  X(store, counter, repairs_from_disk, "batches sent from the durable log (repairs, late joiners)")            \
  X(store, counter, retention_deleted, "events deleted from the durable log by retention")                    \
  X(store, counter, durable_commits, "durable subscriptions: positions committed")                            \
  X(store, counter, durable_redeliveries,                                                                      \
    "durable subscriptions: events delivered again after a restart that may have been handled before")
// clang-format on

/// The C++ type of a Stats field of each kind.
#define MESHBUS_DETAIL_STAT_TYPE_counter std::uint64_t
#define MESHBUS_DETAIL_STAT_TYPE_gauge std::size_t
