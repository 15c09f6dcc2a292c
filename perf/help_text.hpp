// The explanations meshbus-perf's --help prints after the options: what each command
// measures and how, so that a number can be read without the source.
#pragma once

namespace meshbus_perf::help {

/// What the commands do.
inline constexpr const char* intro = R"(throughput and latency run this process and a second one (started from this
program) over TCP loopback, first with raw ZeroMQ (PUB/SUB; DEALER/ROUTER for
latency --mode request) and then with meshbus, for each size, and print one row
(throughput, and latency --mode request) or two rows (latency) per size.
eventstore runs in this process (and, for its k=1 runs, a replica in a second one):
the event store and aggregates beside the durable log's own append rate, in
alternating rounds (see below).
)";

/// throughput: what is timed and how events/s, MB/s and loss are computed.
inline constexpr const char* throughput = R"(throughput: a publisher (this process) sends count events to a subscriber.
t0 = CLOCK_MONOTONIC just before the first measured send; t_last = the same clock
when the subscriber got the last measured event; t_end = the later of t_last and
the return of meshbus's flush(). events/s = received / (t_end - t0); MB/s =
events/s x size / 1e6 (payload only); lost = count - received (the subscriber
gives up after 3 s without a new event); ratio = meshbus events/s / raw events/s.
meshbus's publisher waits for the subscription (wait_for_subscribers), publishes
every event with publish() and ends with flush(), which for reliable and
acknowledged waits until the subscriber has acknowledged everything.
Raw ZeroMQ: PUB with ZMQ_XPUB_NODROP=1 and blocking sends, so it waits for queue
space instead of dropping; default high-water marks; one message per event; warm-up
messages go first until the subscriber has seen one (slow joiner), not counted.

)";

/// throughput --mode typed.
inline constexpr const char* typed = R"(throughput --mode typed: meshbus publishes a typed event instead of bytes:
"perf.sample" version 1 on "perf.data", the struct {sequence: uint64, sent_ns:
int64, padding: string} with MSGPACK_DEFINE_MAP, published with publish(event),
which encodes it (a MessagePack map with the field names as keys), and received
with subscribe<T>(), which decodes it (checks every field, converts into the struct)
before the handler; both are in the measured time; delivery reliable. sent_ns is
the publisher's clock at publish(); padding is the marker byte and then zeros, as
long as makes the encoded event size bytes; MB/s counts those bytes, not the type
name and version the envelope carries with every typed event (the content type,
implied by the type name, is not carried). MessagePack packs integers in the fewest bytes,
so sequence numbers start at 2^32 and, like the clock, always take 9 bytes. Where
the string header grows (77, 302, 65583 and 65584 bytes cannot be encoded) the
nearest size is used (ties: the smaller): the size column and JSON "size" are the
encoded size that was sent, JSON "requested_size" is S (the table says so when they
differ). Raw ZeroMQ sends plain bytes of that size, as in the other modes.

)";

/// latency: one event at a time.
inline constexpr const char* latency = R"(latency: one event at a time. This process sends a ping (its CLOCK_MONOTONIC send
time in the payload) on "perf.ping"; the echoer (the second process) records its
clock minus that time on receipt (one-way) and sends the payload back on
"perf.pong"; this process takes the round trip on the echo's receipt and then
sends the next ping. p50/p99/p99.9/max in microseconds, nearest rank; ratio =
meshbus p50 / raw p50. Raw ZeroMQ: two PUB/SUB pairs; blocking receives, the
pinger's on its main thread, the echoer's on a thread that also sends the echo.
meshbus: the echoer's ping handler publishes the pong; the pinger's pong handler
takes the round trip and publishes the next ping.

)";

/// latency --mode request.
inline constexpr const char* request = R"(latency --mode request: one request at a time, from this process's main thread.
It writes a sequence number and its CLOCK_MONOTONIC time into the payload and sends
it as a request; the replier (the second process) answers with a copy of it; round
trip = the same clock once the reply is back (raw ZeroMQ: return of the receive;
meshbus: return of future.get()) minus the time in the payload; then the next
request goes. Only round trips are timed: there is no one-way row, and the JSON
fields p50_us, p99_us, ..., baseline_p50_us, ... and ratio_p50 hold the round trip,
as the rtt_ ones do. p50/p99/p99.9/max as for latency; ratio = meshbus p50 / raw
p50. Raw ZeroMQ: a DEALER here, connected to a ROUTER there that sends every request
back to its sender, on a thread doing blocking receives; this process receives
blocking. meshbus: the replier serves "perf.echo" with serve(), its handler
returning Reply{a copy of the payload}; this process waits until
instances("perf.echo") lists it, then calls request("perf.echo", payload).get()
(RequestOptions::timeout 10 s) for each request; with --request-api callback it
calls request_async() instead, and the completion (on a handler thread, or on the
I/O thread with --handler-threads 0) takes the time and sends the next request
while this thread waits for the last one. JSON adds "request_api".

)";

/// eventstore.
inline constexpr const char* eventstore = R"(eventstore: --rounds rounds of six runs, one after the other, so that all see the
same machine. Each run has a Node of its own (the two k=1 runs share one) in a
private cluster, with default Options, the defaults of EventStoreOptions (but for
the k=1 runs' service and replicas) and AggregateOptions, and a fresh data directory
under /tmp, so durability always: a commit returns once fdatasync did. Every event's payload is size bytes: in the log,
the bytes; in the event store, a typed event ("perf.bench.added", one string field)
that encodes to size bytes.
 log: the durable log alone, as throughput --mode durable's publisher but without a
  subscriber: publish() count events, then flush(), which returns once the log has
  written and synced them all (checked against its counter). events/s = count /
  (flush()'s return - t0), t0 = CLOCK_MONOTONIC before the first publish().
 execute, k=0: Aggregate<State>::execute() on --aggregates new aggregates
  ("bench-<i>"), one command each, aggregate i on thread i mod --threads; each loads
  its aggregate, emits one event and appends it with ExpectedVersion::exactly(the
  version loaded), so the threads' appends meet in the store's group commits. No
  replication: the appends go to this node's log only. events/s = aggregates / (the
  last command's return - t0), t0 = when the threads are let go.
 append_async, k=0: EventStore::append_async() with ExpectedVersion::any(), one
  event each, --appends of them from one thread to the streams "bench-<i mod
  aggregates>" without waiting in between (the store's ceiling); events/s = appends
  / (the last completion - t0).
 execute, k=1 and append_async, k=1: the same two on a replicated store, which they
  share: EventStoreOptions{.service = a private name, .replicas = 1} in this process,
  and one replica of the service in a second process (this program again, with a
  data directory of its own under /tmp, removed afterwards) in the same cluster,
  found by loopback discovery. Each commit's events go to the replica, which commits
  them (its own fdatasync) and acknowledges; then this process commits and the
  appends return. Untimed first: the wait until EventStore::members() lists both
  instances, and a warm-up pass of one command per aggregate, whose first append to
  each stream claims it for this process (a round trip and a commit at each end, one
  stream at a time), so that every aggregate is owned here. Then, timed as at k=0:
  one more command per aggregate (it loads version 1 and appends version 2), then
  the pipelined appends to the same streams. Each timed run must append every event
  without a refusal, a failure or a claim, and at the end the replica must hold
  every event this process appended.
 loads: an aggregate of --load-events events without a snapshot, and one of as many
  with --snapshot-every (its snapshot saved by the command that carries it to the last
  multiple, as execute() does; the rest appended after it), built before any timing;
  then --loads loads of each, alternating, each timed alone: Aggregate::load() =
  version, snapshot, the events after it, each decoded and applied.
Every appended event is also published (EventStoreOptions::publish; nobody is
subscribed) once its append committed, and the log writes that too; a run ends when
its appends have returned, as append() does at the commit. Every append is checked
against the store's counters; a run that falls short fails (at k=1, both k=1 runs
of the round fail together).
The table: medians over the rounds (a load's figure per round is the median of its
timed loads; loads/s = 1e6 / us per load); ev/commit = events per group commit of
the event store (at k=1, in the timed run only); ratio = per round, the run's
events/s or loads/s / the log's events/s, the median and (min-max) over the rounds;
k=1 / k=0 = per round, a k=1 run's events/s / the same k=0 run's; and the
snapshot's speed-up of a load (us without / us with). --json: one line per round,
then one with the medians and median_/min_/max_ of each ratio (the k=1 fields carry
"k1", e.g. median_command_k1_events_per_s, median_ratio_append_async_k1,
median_ratio_command_k1_to_k0). --verbose: each run's counters on stderr (k=1: the
warm-up's time, claims, replication requests and the replica's counters).

)";

/// How the meshbus nodes are set up.
inline constexpr const char* meshbus_in_both = R"(meshbus in both: one Node per process in a private cluster (perf-<pid>-<n>),
loopback discovery, default Options (send_policy block) without MESHBUS_*
variables (MESHBUS_LOG still applies).

)";

/// Exit status.
inline constexpr const char* exit_status = R"(Exit status: 0 when every run completed (throughput losses are reported, not
failures), 1 when a run could not complete (setup failure, timeout, nothing
received, an echo or reply that never came), 2 on a usage error.
)";

}  // namespace meshbus_perf::help
