// node_impl: the I/O loop behind meshbus::Node.
//
// One I/O thread (or the poll_once() caller) owns every socket: the ZeroMQ transport
// and the UDP beacon socket. API threads reach it through the command queue and an
// eventfd that wakes the loop (events go through the publisher side's outbox). The
// loop never blocks on a peer: sends use DONTWAIT, refusals are counted and retried
// by timers. Handlers run in the dispatcher, never here (unless handler_threads = 0).
//
// The loop only loops: it reads the sockets poll flagged, decodes what arrives on the
// ROUTER and routes it to the part that owns the concept, runs each part's timers and
// sleeps until the earliest deadline any part reports. The parts (each one file pair,
// see docs/architecture.md): peer_sessions (discovery, HELLO/READY/GOODBYE,
// liveness), seed_list, mesh_view (what API threads read), publisher_side,
// subscriber_side, requests, dead_letter_office, trace_responder. Where one part's output is another
// part's input (a session closing, this node's own group work), node_impl passes it
// on: it implements the small interfaces session_events, own_subscriber and
// own_publisher.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "discovery/beacon_socket.hpp"
#include "discovery/interfaces.hpp"
#include "lib/node/control_sender.hpp"
#include "lib/node/dead_letter_office.hpp"
#include "lib/node/dispatcher.hpp"
#include "lib/node/durable_positions.hpp"
#include "lib/node/durable_state.hpp"
#include "lib/node/mesh_view.hpp"
#include "lib/node/options.hpp"
#include "lib/node/node_context.hpp"
#include "lib/node/peer_sessions.hpp"
#include "lib/node/publisher_side.hpp"
#include "lib/node/requests.hpp"
#include "lib/node/subscriber_side.hpp"
#include "lib/node/subscriptions.hpp"
#include "lib/node/metrics_server.hpp"
#include "lib/node/status_office.hpp"
#include "lib/node/trace_responder.hpp"
#include "lib/store/log_store.hpp"
#include "lib/transport/transport.hpp"
#include "meshbus/node.hpp"

namespace meshbus::detail {

inline constexpr std::size_t max_inputs_per_round = 512;

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

class node_impl final : private loop_access,
                        private session_events,
                        private own_subscriber,
                        private own_publisher {
 public:
  explicit node_impl(const Options& given);
  ~node_impl() override;
  node_impl(const node_impl&) = delete;
  node_impl& operator=(const node_impl&) = delete;

  // --- API, any thread ---
  PublishResult publish(std::string_view topic, wire::byte_view payload, const PublishOptions* po) {
    return publisher_->publish(topic, payload, po, false);
  }
  Subscription subscribe(std::string_view pattern, Handler handler, const SubscribeOptions& options,
                         bool transactional = false);
  Subscription subscribe(std::string_view pattern, TransactionalHandler handler, const SubscribeOptions& options);
  /// Throws unless a durable subscription of these options can be made.
  void check_durable(const SubscribeOptions& o) const;
  void unsubscribe(Subscription s);
  void set_peer_handler(PeerHandler h) { view_->set_peer_handler(std::move(h)); }
  void set_loss_handler(LossHandler h) { subscriber_->set_loss_handler(std::move(h)); }
  std::vector<DeadLetter> dead_letters() const { return dead_letters_->list(); }
  durable_state& state() const;
  const node_context& ctx() const noexcept { return ctx_; }
  bool replay_dead_letter(std::uint64_t id) { return dead_letters_->replay(id); }
  PublishResult request_dead_letter_replay(const NodeId& node, std::uint64_t id) {
    return dead_letters_->request_replay(node, id);
  }
  PublishResult request_trace(std::string_view correlation_id, std::string_view reply_topic,
                              std::uint64_t request_id) {
    return traces_->request(correlation_id, reply_topic, request_id);
  }
  std::future<Reply> request(std::string_view service, wire::byte_view payload, const RequestOptions& options) {
    return requests_->request(service, payload, options);
  }
  void request_async(std::string_view service, wire::byte_view payload, ReplyCallback done,
                     const RequestOptions& options) {
    requests_->request_async(service, payload, std::move(done), options);
  }
  void request_on_io_thread(std::string_view service, wire::byte_view payload, ReplyCallback done,
                            const RequestOptions& options) {
    requests_->request_on_io_thread(service, payload, std::move(done), options);
  }
  Service serve(std::string_view service, RequestHandler handler, const ServeOptions& options) {
    return requests_->serve(service, std::move(handler), options);
  }
  void unserve(Service service) { requests_->unserve(service); }
  std::vector<NodeId> instances(std::string_view service) const { return requests_->instances(service); }
  bool wait_for_subscribers(std::string_view topic, std::size_t count, std::chrono::milliseconds timeout);
  bool wait_for_peers(std::size_t count, std::chrono::milliseconds timeout) {
    return view_->wait_for_peers(count, timeout);
  }
  FlushResult flush(std::chrono::milliseconds timeout) { return publisher_->flush(timeout); }
  std::size_t poll_once(std::chrono::milliseconds timeout);
  void stop();
  bool stopped() const noexcept { return stopped_.load(std::memory_order_acquire); }
  Stats stats() const;
  std::vector<PeerInfo> peers() const { return view_->peers(); }
  NodeReport report();
  MeshReport reports(std::chrono::milliseconds timeout);
  std::vector<SeedInfo> seeds() const { return sessions_->seeds().state(); }

  const NodeId& id() const noexcept { return self_.id; }
  std::uint64_t epoch() const noexcept { return self_.epoch; }
  const std::string& name() const noexcept { return opts_.name; }
  const std::string& cluster() const noexcept { return opts_.cluster; }
  const std::string& bind_address() const noexcept { return interfaces_.bind_address; }
  std::uint16_t router_port() const noexcept { return transport_->router_port(); }
  std::uint16_t pub_port() const noexcept { return transport_->pub_port(); }
  std::uint16_t beacon_port() const noexcept { return opts_.beacon_port; }
  std::uint16_t metrics_port() const noexcept { return metrics_ ? metrics_->port() : 0; }
  void set_log_level(LogLevel level) { log_->set_level(to_spdlog(level)); }

 private:
  // loop
  void run();
  std::size_t loop_once(std::chrono::milliseconds max_wait);
  void notice_pause(clock::time_point now);
  std::chrono::milliseconds wait_before_poll(clock::time_point now, std::chrono::milliseconds max_wait,
                                             bool want_data) const;
  void run_commands();
  void run_timers(clock::time_point now);
  void reliability_tick(clock::time_point now);
  clock::time_point next_due() const;
  void shutdown_io();
  std::size_t process_beacons(clock::time_point now);
  std::size_t process_router(clock::time_point now);
  std::size_t process_xpub();
  void on_control(const wire::node_id_bytes& from, wire::control_msg& msg, const std::string& ip,
                  clock::time_point now);
  void on_session_control(const wire::node_id_bytes& from, wire::control_msg& msg, clock::time_point now);
  /// This node's report from its parts, rates not filled in (I/O thread).
  NodeReport build_report() const;
  /// Runs `f` on the loop and waits for its result (any thread; on the thread that
  /// drives the loop, at once, unless `outside`: a thread of the node's own that never
  /// turns it). Throws error(stopped) when the node stops first, error(timeout) after
  /// `timeout`.
  template <class T>
  T on_loop(std::function<T()> f, bool outside = false,
            std::chrono::milliseconds timeout = std::chrono::milliseconds::max());

  // loop_access
  bool drives_loop_here() const noexcept override;
  std::size_t turn(std::chrono::milliseconds max_wait) override { return loop_once(max_wait); }
  void run_on_loop(std::function<void()> cmd) override;
  void post_command(std::function<void()> cmd) override;
  void wake() noexcept override;
  // session_events
  void session_opened(const wire::node_id_bytes& id, bool resumed, clock::time_point now) override;
  void session_closed(const wire::node_id_bytes& id, session_end why, clock::time_point now) override;
  void session_forgotten(const wire::node_id_bytes& id, clock::time_point now) override;
  void session_drained(const wire::node_id_bytes& id, clock::time_point now) override;
  void subscriber_changed(const wire::node_id_bytes& id, const std::string& name,
                          const std::vector<wire::pattern_spec>& patterns, bool ready,
                          clock::time_point now) override;
  std::vector<std::pair<std::string, std::uint64_t>> positions() override { return publisher_->positions(); }
  std::vector<std::string> service_names() override { return requests_->service_names(); }
  // own_subscriber, own_publisher
  void own_assignment(const wire::assign_msg& m, transport::frame&& frame) override;
  void own_loss(const wire::loss_msg& m) override;
  void own_nack(const wire::nack_msg& m) override;
  void own_ack(const wire::ack_msg& m) override;

  // --- configuration (immutable after construction) ---
  resolved_options config_;
  const Options& opts_;  ///< config_.options
  std::unique_ptr<store::log_store> store_;  ///< Options::data_dir; outlives every part
  node_identity self_;
  discovery::interface_selection interfaces_;

  // --- shared with API threads ---
  node_counters counters_;
  std::shared_ptr<spdlog::logger> log_;
  fault_reporter faults_;
  node_context ctx_;
  unique_fd wake_fd_;
  std::mutex cmd_mu_;
  std::vector<std::function<void()>> commands_;
  subscription_registry subs_;
  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> stopped_{false};
  std::mutex stop_mu_;

  // --- the parts (declaration order is construction order) ---
  std::unique_ptr<transport::transport> transport_;
  std::unique_ptr<discovery::beacon_socket> beacon_;
  std::unique_ptr<control_sender> control_;
  std::unique_ptr<dispatcher> dispatcher_;
  std::unique_ptr<mesh_view> view_;
  std::unique_ptr<requests> requests_;
  std::unique_ptr<publisher_side> publisher_;
  std::unique_ptr<subscriber_side> subscriber_;
  std::unique_ptr<dead_letter_office> dead_letters_;
  std::unique_ptr<trace_responder> traces_;
  std::unique_ptr<status_office> status_;
  std::unique_ptr<durable_state> state_;  ///< with a durable log only
  std::unique_ptr<durable_positions> durable_;  ///< with a durable log only
  std::unique_ptr<peer_sessions> sessions_;
  std::unique_ptr<metrics_server> metrics_;  ///< Options::metrics_address; started last, stopped first

  // --- I/O thread only ---
  /// NACKs of this node's own group work, for its publisher side: carried out after
  /// the subscriber side's round, never inside it (answers go back into it).
  std::vector<wire::nack_msg> own_nacks_;
  bool receive_paused_ = false;
  bool tick_soon_ = false;  ///< a command ran: tick the reliability parts soon
  bool leaving_ = false;  ///< stopping: the SUB socket is no longer read
  wire::bytes beacon_buf_;
  clock::time_point next_beacon_{};
  clock::time_point next_reliability_tick_{};
  std::thread io_thread_;
  bool inline_handlers_ = false;  ///< handlers run on the thread that turns the loop
  int loop_depth_ = 0;            ///< loop_once() nesting on the loop's thread
  // When the last round began and how long it meant to wait: a round that begins
  // much later than that means this node was not running (see credit_pause).
  clock::time_point last_round_{};
  clock::duration last_wait_{};
};

}  // namespace meshbus::detail
