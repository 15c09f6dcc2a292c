// node_impl: the state and I/O loop behind meshbus::Node.
//
// One I/O thread (or the poll_once() caller) owns every socket: the ZeroMQ
// transport and the UDP beacon socket. API threads reach it through the outbox
// (events), the command queue (subscription changes) and an eventfd that wakes the
// loop. The loop never blocks on a peer: sends use DONTWAIT, refusals are counted
// and retried by timers. Handlers run in the dispatcher, never here.
//
// Peer protocol (docs/protocol.md §5): beacon or seed -> connect DEALER and SUB ->
// HELLO both ways -> the peer is joined. Each node keeps one readiness sentinel
// subscription; when a publisher's XPUB sees it, every earlier subscription of that
// subscriber is in effect there, and the publisher answers READY.
//
// Reliability (docs/protocol.md §6): inbound_streams is the subscriber side (receive
// windows, NACKs, acks, loss notices), outbound_streams the publisher side (history,
// repairs, ack tracking, flow control, redelivery); this class carries their actions
// out. The implementation is spread over node_loop.cpp (construction, API, loop),
// node_peers.cpp (discovery and sessions) and node_data.cpp (the data path).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <future>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "discovery/beacon_socket.hpp"
#include "discovery/interfaces.hpp"
#include "discovery/peer_table.hpp"
#include "discovery/seeds.hpp"
#include "lib/node/counters.hpp"
#include "lib/node/dead_letters.hpp"
#include "lib/node/dispatcher.hpp"
#include "lib/node/inbound.hpp"
#include "lib/node/log.hpp"
#include "lib/node/outbound.hpp"
#include "lib/node/outbox.hpp"
#include "lib/node/subscriptions.hpp"
#include "lib/transport/zmq_transport.hpp"
#include "lib/wire/control.hpp"
#include "meshbus/node.hpp"

namespace meshbus::detail {

using clock = std::chrono::steady_clock;

inline constexpr std::size_t max_inputs_per_round = 512;

inline std::uint64_t unix_ns() {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
}

inline NodeId to_node_id(const wire::node_id_bytes& b) {
  NodeId id;
  id.bytes = b;
  return id;
}

inline std::string short_id(const wire::node_id_bytes& b) { return to_node_id(b).short_string(); }

/// Owns a file descriptor.
class unique_fd {
 public:
  unique_fd() = default;
  ~unique_fd();
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  void reset(int fd) noexcept;
  int get() const noexcept { return fd_; }

 private:
  int fd_ = -1;
};

class node_impl final : private inbound_sink, private outbound_sink {
 public:
  explicit node_impl(const Options& given);
  ~node_impl();
  node_impl(const node_impl&) = delete;
  node_impl& operator=(const node_impl&) = delete;

  // --- API, any thread ---
  PublishResult publish(std::string_view topic, wire::byte_view payload, const PublishOptions* po);
  /// Same, for meshbus's own '$' topics (dead-letter announcements).
  PublishResult publish_reserved(std::string_view topic, wire::byte_view payload, const PublishOptions* po);
  Subscription subscribe(std::string_view pattern, Handler handler, const SubscribeOptions& options);
  void unsubscribe(Subscription s);
  void set_peer_handler(PeerHandler h);
  void set_loss_handler(LossHandler h);
  std::vector<DeadLetter> dead_letters() const { return dead_letters_.list(); }
  // request/reply
  std::future<Reply> request(std::string_view service, wire::byte_view payload, const RequestOptions& options);
  void request_async(std::string_view service, wire::byte_view payload, ReplyCallback done,
                     const RequestOptions& options);
  void request_on_io_thread(std::string_view service, wire::byte_view payload, ReplyCallback done,
                            const RequestOptions& options);
  Service serve(std::string_view service, RequestHandler handler);
  void unserve(Service service);
  std::vector<NodeId> instances(std::string_view service) const;
  bool replay_dead_letter(std::uint64_t id);
  PublishResult request_dead_letter_replay(const NodeId& node, std::uint64_t id);
  bool wait_for_subscribers(std::string_view topic, std::size_t count, std::chrono::milliseconds timeout);
  bool wait_for_peers(std::size_t count, std::chrono::milliseconds timeout);
  bool flush(std::chrono::milliseconds timeout);
  std::size_t poll_once(std::chrono::milliseconds timeout);
  void stop();
  bool stopped() const noexcept { return stopped_.load(std::memory_order_acquire); }
  Stats stats() const;
  std::vector<PeerInfo> peers() const;

  const NodeId& id() const noexcept { return id_; }
  std::uint64_t epoch() const noexcept { return epoch_; }
  const std::string& name() const noexcept { return opts_.name; }
  const std::string& cluster() const noexcept { return opts_.cluster; }
  const std::string& bind_address() const noexcept { return interfaces_.bind_address; }
  std::uint16_t router_port() const noexcept { return router_port_; }
  std::uint16_t pub_port() const noexcept { return pub_port_; }
  std::uint16_t beacon_port() const noexcept { return opts_.beacon_port; }

 private:
  // A peer as the protocol sees it (I/O thread only).
  struct peer_session {
    wire::node_id_bytes id{};
    std::uint64_t epoch = 0;
    discovery::peer_endpoint endpoint;
    bool hello_sent = false;
    bool hello_received = false;
    bool announced = false;
    clock::time_point last_hello_sent{};
    clock::time_point joined_at{};
    std::string name;
    std::map<std::string, std::string> metadata;
    // As a subscriber of this node.
    std::uint64_t patterns_generation = 0;
    std::vector<wire::pattern_spec> patterns;
    std::uint64_t ready_generation = 0;
    bool ready_seen = false;
    std::optional<wire::ready_msg> ready_sent;  ///< the last READY, sent again if asked
    // As a publisher to this node: the generation of ours it confirmed (READY), and
    // when we last told it our subscriptions (sent again while unconfirmed).
    std::uint64_t confirmed_generation = 0;
    clock::time_point subscriptions_sent{};
    std::vector<std::string> services;  ///< request services it serves
  };
  // What API threads may read about a peer (under view_mu_).
  struct subscriber_view {
    std::vector<wire::pattern> patterns;
    bool ready = false;
  };
  struct topic_state {
    std::uint64_t last_seq = 0;
    clock::time_point last_sent{};
    clock::time_point next_heartbeat = clock::time_point::max();
    clock::duration heartbeat_gap{};
  };
  struct pending_send {
    zmq::message_t msg;
    std::size_t bytes = 0;
    std::string topic;
    std::uint64_t first_seq = 0;
    std::uint32_t count = 0;
  };
  struct seed_state {
    discovery::seed_address address;
    std::string endpoint;
    std::uint32_t resolved = 0;  ///< IPv4, 0 if not resolved yet
    std::optional<wire::node_id_bytes> identified;
  };

  PublishResult publish_checked(std::string_view topic, wire::byte_view payload, const PublishOptions* po,
                                bool reserved);
  // loop
  void run();
  std::size_t loop_once(std::chrono::milliseconds max_wait);
  /// True on the thread that turns the loop (the I/O thread, or the poll_once()
  /// caller): a wait there has to turn the loop itself.
  bool drives_loop_here() const noexcept;
  void wake() noexcept;
  bool wait_for_view(const std::function<bool()>& satisfied, clock::time_point deadline);
  void post_command(std::function<void()> cmd);
  /// Runs `cmd` at once when called on the I/O thread, else posts it.
  void run_on_loop(std::function<void()> cmd);
  void run_commands();
  void shutdown_io();

  // timers
  void run_timers(clock::time_point now);
  clock::time_point next_timer() const;
  void on_interval(clock::time_point now);
  void send_heartbeats(clock::time_point now);

  // outbound data
  void pump_outbox(clock::time_point now);
  void send_pending(clock::time_point now);

  // inbound
  std::size_t process_beacons(clock::time_point now);
  std::size_t process_router(clock::time_point now);
  std::size_t process_sub();
  std::size_t process_xpub();
  void handle_data(zmq::message_t&& msg, const wire::node_id_bytes* repaired_by);
  void handle_control(const wire::node_id_bytes& from, wire::control_msg& msg, const std::string& ip,
                      clock::time_point now);
  void handle_hello(const wire::node_id_bytes& from, wire::hello_msg& m, const std::string& ip,
                    clock::time_point now);
  void reliability_tick(clock::time_point now);
  // request/reply (node_requests.cpp)
  using completion = std::function<void(std::optional<Reply>, std::exception_ptr)>;
  void start_request(std::string_view service, wire::byte_view payload, const RequestOptions& options,
                     completion done, bool on_handler_thread);
  wire::reply_msg run_service(const wire::node_id_bytes& requester, const wire::request_msg& m);
  void handle_request(const wire::node_id_bytes& from, wire::request_msg&& m);
  void handle_reply(const wire::node_id_bytes& from, wire::reply_msg&& m);
  void fail_requests(const wire::node_id_bytes* peer, errc code, const std::string& why);
  void expire_requests(clock::time_point now);
  void set_peer_services(peer_session& s, std::vector<std::string> services);
  std::vector<std::string> service_names() const;
  void update_flow_state();
  void deliver_locally(const pending_send& p, std::size_t events_offset, std::uint64_t timestamp_ns);
  void dead_letter(const Event& event, const subscription_entry& sub, std::string_view reason, unsigned attempts);
  void answer_replay_request(const Event& request);

  // inbound_sink
  void deliver(std::size_t stream_hash, const reliability::lane& l, reliability::lane_delivery&& d) override;
  void send_nack(const wire::node_id_bytes& publisher, const wire::nack_msg& m) override;
  void send_ack(const wire::node_id_bytes& publisher, const wire::ack_msg& m) override;
  void lost(std::size_t stream_hash, const reliability::loss_report& loss) override;
  // outbound_sink
  void send_repair(const wire::node_id_bytes& to, transport::frame&& frame) override;
  void send_loss(const wire::node_id_bytes& to, const wire::loss_msg& m) override;
  void send_assignment(const wire::node_id_bytes& to, const std::string& group, std::uint64_t seq,
                       transport::frame&& frame) override;
  void group_conflict(const wire::node_id_bytes& member, const std::string& group,
                      const std::string& patterns, const std::string& group_patterns) override;
  void group_changed(const std::string& group, const std::string& before, const std::string& now) override;
  void handle_assignment(const wire::node_id_bytes& from, const wire::assign_msg& m, zmq::message_t&& frame);

  // peers
  void apply_transition(const discovery::peer_transition& t, clock::time_point now);
  peer_session& open_session(const discovery::peer_transition& t, clock::time_point now);
  /// `draining`: the peer said goodbye, so its data may still be in flight on the
  /// PUB connection (a goodbye travels on another one); keep reading it for a while.
  void close_session(const wire::node_id_bytes& id, bool draining = false);
  void retire_drained(clock::time_point now);
  wire::hello_msg make_hello() const;
  wire::bytes make_beacon(std::uint8_t flags) const;
  void send_hello(peer_session& s, clock::time_point now);
  void send_control(const wire::node_id_bytes& id, const wire::control_msg& m);
  void merge_gossip(const std::vector<wire::peer_address>& peers, clock::time_point now);
  std::vector<wire::peer_address> gossip_list() const;
  void announce(PeerEvent::Kind kind, const peer_session& s);
  void update_subscriber_view(const peer_session& s);
  void touch_view(const wire::node_id_bytes& id, clock::time_point now);
  PeerInfo info_of(const peer_session& s) const;
  void subscriptions_changed();
  void send_ready(peer_session& s);
  void send_seed_hellos(clock::time_point now);
  void report(fault f, const std::string& message);

  // --- configuration (immutable) ---
  Options opts_;
  std::vector<seed_state> seeds_;
  NodeId id_;
  wire::node_id_bytes id_bytes_{};
  std::uint64_t epoch_ = 0;
  std::uint64_t cluster_hash_ = 0;
  discovery::interface_selection interfaces_;
  std::uint16_t router_port_ = 0;
  std::uint16_t pub_port_ = 0;

  // --- shared with API threads ---
  node_counters counters_;
  fault_log faults_;
  unique_fd wake_fd_;
  std::mutex cmd_mu_;
  std::vector<std::function<void()>> commands_;
  std::unique_ptr<outbox> outbox_;
  subscription_registry subs_;
  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> stopped_{false};
  std::mutex stop_mu_;
  mutable std::mutex view_mu_;
  std::condition_variable view_cv_;
  std::map<wire::node_id_bytes, PeerInfo> peer_view_;
  std::map<wire::node_id_bytes, subscriber_view> subscriber_view_;
  std::map<std::string, std::set<wire::node_id_bytes>, std::less<>> service_view_;  ///< service -> peers
  std::mutex handler_mu_;  ///< guards peer_handler_ and loss_handler_
  PeerHandler peer_handler_;
  LossHandler loss_handler_;
  dead_letter_store dead_letters_;
  // Services served here (any thread, under services_mu_).
  struct served_service {
    std::uint64_t id = 0;
    RequestHandler handler;
  };
  mutable std::mutex services_mu_;
  std::map<std::string, served_service, std::less<>> services_;
  std::uint64_t next_service_id_ = 1;
  std::atomic<std::uint64_t> round_robin_{0};
  // Flow control and flush: published by the I/O thread, waited on by publishers.
  std::mutex flow_mu_;
  std::condition_variable flow_cv_;
  std::atomic<bool> window_full_{false};
  std::atomic<bool> all_acknowledged_{true};
  std::atomic<std::size_t> unacknowledged_{0};
  std::atomic<std::size_t> history_events_{0};
  std::atomic<std::size_t> history_bytes_{0};

  // --- I/O thread only ---
  std::unique_ptr<transport::zmq_transport> transport_;
  std::unique_ptr<discovery::beacon_socket> beacon_;
  discovery::peer_table table_;
  std::map<wire::node_id_bytes, peer_session> sessions_;
  std::map<wire::node_id_bytes, std::uint64_t> early_ready_;  ///< sentinels seen before HELLO
  struct pending_request {
    wire::node_id_bytes peer{};
    std::string service;
    clock::time_point deadline{};
    completion done;
    bool on_handler_thread = false;
  };
  std::map<std::uint64_t, pending_request> pending_requests_;
  std::uint64_t next_request_id_ = 1;
  std::unique_ptr<inbound_streams> inbound_;
  std::unique_ptr<outbound_streams> outbound_;
  std::map<std::string, topic_state, std::less<>> topics_;
  std::deque<pending_send> pending_;
  struct draining_sub {
    clock::time_point until;
    std::string endpoint;
    wire::node_id_bytes id{};
  };
  std::vector<draining_sub> draining_;
  /// NACKs of this node's own group work, for its publisher side: carried out after
  /// the subscriber side's round, never inside it (answers go back into it).
  std::vector<wire::nack_msg> own_nacks_;
  std::vector<outbox_batch> drained_;
  bool stalled_ = false;
  bool lossy_episode_ = false;
  bool peer_left_during_stall_ = false;
  clock::time_point stall_since_{};
  bool receive_paused_ = false;
  bool leaving_ = false;  ///< stopping: the SUB socket is no longer read
  std::uint64_t sub_generation_ = 0;
  std::string sentinel_;
  wire::bytes beacon_buf_;
  clock::time_point next_beacon_{};
  clock::time_point next_tick_{};
  clock::time_point next_interval_{};
  clock::time_point next_reliability_tick_{};

  std::unique_ptr<dispatcher> dispatcher_;
  std::thread io_thread_;
  bool inline_handlers_ = false;  ///< handlers run on the thread that turns the loop
  int loop_depth_ = 0;            ///< loop_once() nesting on the loop's thread
};

}  // namespace meshbus::detail
