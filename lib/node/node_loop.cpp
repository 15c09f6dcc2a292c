// The node's construction, its loop and timers, and the routing between its parts;
// see node_loop.hpp for the threading model. Invariants: only the loop's thread
// touches the transport, the beacon socket and the parts' I/O-thread state; no send
// blocks; every wait in the API has a deadline; the loop sleeps until the earliest
// deadline a part reports.
#include "lib/node/node_loop.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include <fmt/format.h>

#include "lib/wire/beacon.hpp"
#include "lib/wire/dead_letter.hpp"
#include "lib/wire/topic.hpp"
#include "lib/node/prometheus.hpp"
#include "lib/wire/report.hpp"
#include "lib/wire/trace.hpp"

namespace meshbus::detail {
namespace {

/// The node whose I/O loop this thread runs (background mode), if any.
thread_local const node_impl* loop_owner = nullptr;

// While anything is in flight, NACK retries, acks, redeliveries and heartbeats are
// looked at this often; an idle node sleeps until a part's next deadline.
constexpr auto busy_tick_interval = std::chrono::milliseconds(2);

std::unique_ptr<store::log_store> open_store(const Options& opts) {
  if (opts.data_dir.empty()) return nullptr;
  store::store_options so;
  so.dir = opts.data_dir;
  switch (opts.durability) {
    case Durability::always: so.policy = store::durability::always; break;
    case Durability::interval: so.policy = store::durability::interval; break;
    case Durability::none: so.policy = store::durability::none; break;
  }
  so.sync_interval = opts.sync_interval;
  so.map_bytes = opts.store_max_bytes;
  if (opts.node_id) so.node_id = opts.node_id->bytes;
  try {
    return store::log_store::open(so);
  } catch (const store::store_error& e) {
    throw error(errc::storage, e.what());
  }
}

// With a durable log, the node is who the log says: the same id, and the same epoch
// while the log vouches for everything the last run sent.
node_identity identity_of(const Options& opts, const store::log_store* log) {
  node_identity self;
  if (log != nullptr) {
    self.id.bytes = log->who().node_id;
    self.epoch = log->who().epoch;
  } else {
    self.id = opts.node_id ? *opts.node_id : random_node_id();
    self.epoch = unix_ns() / 1000;  // microseconds: a restart always gets a larger epoch
  }
  self.bytes = self.id.bytes;
  self.cluster_hash = wire::fnv1a64(opts.cluster);
  return self;
}

transport::transport_config transport_config_of(const Options& opts, const node_identity& self,
                                                 const std::string& bind_address) {
  transport::transport_config tc;
  tc.self = self.bytes;
  tc.bind_address = bind_address;
  tc.router_port = opts.router_port;
  tc.pub_port = opts.pub_port;
  tc.max_message_bytes = static_cast<std::int64_t>(opts.max_message_bytes);
  tc.data_hwm = opts.zmq_hwm;
  tc.control_hwm = std::max(opts.zmq_hwm, 10000);  // control messages are small
  tc.linger_ms = static_cast<int>(opts.linger.count());
  return tc;
}

}  // namespace

std::uint64_t unix_ns() {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
}

unique_fd::~unique_fd() { reset(-1); }

void unique_fd::reset(int fd) noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

node_impl::node_impl(const Options& given)
    : config_(resolve_options(given)),
      opts_(config_.options),
      store_(open_store(opts_)),
      self_(identity_of(opts_, store_.get())),
      interfaces_(discovery::select_interfaces(opts_.interface)),
      log_(node_logger(opts_.logger, opts_.log_level ? std::optional(to_spdlog(*opts_.log_level)) : std::nullopt)),
      faults_(self_.id.short_string(), opts_.on_error, *log_),
      ctx_{opts_, self_, counters_, faults_, static_cast<loop_access&>(*this), *log_, store_.get()} {
  inline_handlers_ = !opts_.background_thread || opts_.handler_threads == 0;
  transport_ = transport::open_transport(transport_config_of(opts_, self_, interfaces_.bind_address));
  if (const auto faults = transport_->faults(); !faults.empty()) {
    ctx_.log.warn("node {}: MESHBUS_FAULTS is set: injecting faults into what this node receives ({})",
                  self_.id.short_string(), faults);
  }
  beacon_ = std::make_unique<discovery::beacon_socket>(interfaces_, opts_.beacon_port);
  wake_fd_.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (wake_fd_.get() < 0) throw error(errc::network, "eventfd() failed: cannot create the wake-up channel");

  control_ = std::make_unique<control_sender>(ctx_, *transport_);
  dispatcher_ = std::make_unique<dispatcher>(
      inline_handlers_ ? 0 : opts_.handler_threads, opts_.receive_queue_bytes, counters_,
      [this](std::string_view topic, std::string_view what) {
        faults_.report(fault::handler_exception,
                       fmt::format("a handler threw{}{}: {}", topic.empty() ? "" : " for topic ", topic, what));
      },
      [this](const Event& e, const subscription_entry& sub, std::string_view reason, unsigned attempts) {
        dead_letters_->dead_letter(e, sub, reason, attempts);
      },
      [this] { wake(); });
  view_ = std::make_unique<mesh_view>(ctx_, *dispatcher_);
  requests_ = std::make_unique<requests>(
      ctx_, *control_, *dispatcher_, *view_, [this](const wire::node_id_bytes& id) { return sessions_->has(id); },
      [this] { post_command([this] { sessions_->subscriptions_changed(); }); });
  publisher_ = std::make_unique<publisher_side>(ctx_, *transport_, *control_, *dispatcher_, subs_,
                                                static_cast<own_subscriber&>(*this));
  subscriber_ = std::make_unique<subscriber_side>(ctx_, *transport_, *control_, *dispatcher_, subs_,
                                                  static_cast<own_publisher&>(*this));
  dead_letters_ = std::make_unique<dead_letter_office>(
      ctx_, *dispatcher_, subs_, [this](std::string_view topic, wire::byte_view payload, const PublishOptions& po) {
        return publisher_->publish(topic, payload, &po, true);
      });
  traces_ = std::make_unique<trace_responder>(
      ctx_,
      [this](std::string_view topic, wire::byte_view payload, const PublishOptions& po) {
        return publisher_->publish(topic, payload, &po, true);
      },
      [this] { return publisher_->share_history(); });
  status_ = std::make_unique<status_office>(ctx_, *control_, [this] { return build_report(); });
  // Early: a bad address throws before anything is published or any thread runs but
  // the handlers'. A scrape
  // is answered by the loop (in poll mode: within poll_once()), waited for at most 5 s.
  if (!opts_.metrics_address.empty()) {
    metrics_ = std::make_unique<metrics_server>(
        opts_.metrics_address,
        [this] {
          return prometheus_text(on_loop<NodeReport>([this] { return status_->report(clock::now()); }, true,
                                                     std::chrono::seconds(5)));
        },
        counters_);
    ctx_.log.info("node {}: metrics at http://{}:{}/metrics", self_.id.short_string(),
                  opts_.metrics_address.rfind(':') == 0 || opts_.metrics_address.find(':') == std::string::npos
                      ? std::string("127.0.0.1")
                      : opts_.metrics_address.substr(0, opts_.metrics_address.rfind(':')),
                  metrics_->port());
  }
  if (store_) {
    state_ = std::make_unique<durable_state>(
        ctx_, *store_, [this](std::string_view topic, std::string_view payload, const PublishOptions& po) {
          return publisher_->publish(
              topic, wire::byte_view(reinterpret_cast<const std::uint8_t*>(payload.data()), payload.size()), &po,
              !topic.empty() && topic.front() == '$');
        });
  }
  if (state_) durable_ = std::make_unique<durable_positions>(ctx_, *store_, *state_);
  sessions_ = std::make_unique<peer_sessions>(ctx_, *transport_, *control_, *view_, subs_,
                                              static_cast<session_events&>(*this), std::move(config_.seeds));

  // Generation 1: the sentinel lets every publisher confirm it has our (empty) set.
  sessions_->subscriptions_changed();
  // Every node answers dead-letter replay requests addressed to it (meshbus dlq replay).
  subscribe(wire::dead_letter_replay_topic, [this](const Event& e) { dead_letters_->answer_replay_request(e); },
            SubscribeOptions{});
  // And every node answers trace requests (meshbus trace) with what it holds of the flow.
  subscribe(wire::trace_request_topic, [this](const Event& e) { traces_->answer(e); }, SubscribeOptions{});
  const auto now = clock::now();
  next_beacon_ = now;
  next_reliability_tick_ = now;
  ctx_.log.info("node {} '{}' (cluster '{}') on {}: ROUTER {}, PUB {}, beacon UDP {}", self_.id.short_string(),
                opts_.name, opts_.cluster, interfaces_.bind_address, router_port(), pub_port(), opts_.beacon_port);
  if (state_) state_->publish_leftovers();
  if (store_) {
    const auto& who = store_->who();
    ctx_.log.info("node {}: durable log {} ({}), {}", self_.id.short_string(), store_->path(),
                  store::to_string(store_->options().policy),
                  who.new_node ? "new" : who.new_epoch ? "new epoch" : "continuing its epoch");
    if (!who.new_node && who.new_epoch) {
      ctx_.log.warn("node {}: starting a new epoch: {}", self_.id.short_string(), who.new_epoch_reason);
    }
  }
  if (opts_.background_thread) io_thread_ = std::thread([this] { run(); });
}

node_impl::~node_impl() {
  try {
    stop();
  } catch (...) {
    // stop() does not throw in practice; a destructor must not.
  }
  // Handler threads may still call into the parts: they end first.
  dispatcher_.reset();
  sessions_.reset();
  transport_.reset();
}

// ---------------------------------------------------------------------------
// API threads

durable_state& node_impl::state() const {
  if (!state_) {
    throw error(errc::storage,
                "the node has no durable log: set Options::data_dir (or MESHBUS_DATA_DIR, --data-dir) to store key/values "
                "and use transactions");
  }
  return *state_;
}

Subscription node_impl::subscribe(std::string_view text, TransactionalHandler handler,
                                   const SubscribeOptions& options) {
  if (!handler) throw error(errc::invalid_argument, "subscribe() needs a handler");
  if (options.durable_name.empty()) {
    throw error(errc::invalid_argument,
                "a handler that takes a Transaction needs a durable subscription: set SubscribeOptions::durable_name");
  }
  check_durable(options);  // before the handler refers to durable_
  auto* positions = durable_.get();
  return subscribe(text, [positions, name = options.durable_name, h = std::move(handler)](const Event& e) {
    positions->transact(name, e, h);
  }, options, true);
}

void node_impl::check_durable(const SubscribeOptions& o) const {
  if (o.durable_name.empty()) return;
  if (!durable_) {
    throw error(errc::storage, fmt::format("durable subscription '{}' needs a durable log: set Options::data_dir (or "
                                           "MESHBUS_DATA_DIR, --data-dir)",
                                           o.durable_name));
  }
  if (o.durable_name.size() > 200 || o.durable_name.find('\0') != std::string::npos) {
    throw error(errc::invalid_argument, "SubscribeOptions::durable_name must have at most 200 bytes and no NUL");
  }
  if (!o.group.empty()) {
    throw error(errc::invalid_argument,
                fmt::format("durable subscription '{}' cannot be in service group '{}': a group's work is handed on "
                            "to other members, positions are per node",
                            o.durable_name, o.group));
  }
  if (o.delivery == Delivery::best_effort) {
    throw error(errc::invalid_argument,
                fmt::format("durable subscription '{}' must be reliable or acknowledged: best_effort skips what it "
                            "misses, so there is no position to keep",
                            o.durable_name));
  }
  if (subs_.has_durable(o.durable_name)) {
    throw error(errc::invalid_argument,
                fmt::format("this node already has a durable subscription named '{}': each needs its own name",
                            o.durable_name));
  }
}

Subscription node_impl::subscribe(std::string_view text, Handler handler, const SubscribeOptions& options,
                                  bool transactional) {
  if (stopped_.load(std::memory_order_acquire)) {
    throw error(errc::stopped, "subscribe() after stop(): create a new Node to subscribe again");
  }
  if (!handler) throw error(errc::invalid_argument, "subscribe() needs a handler");
  wire::pattern p;
  std::string err;
  if (!wire::pattern::compile(text, p, err)) throw error(errc::invalid_topic, err);
  SubscribeOptions effective = options;
  if (!effective.group.empty()) {
    if (auto gerr = wire::topic_error(effective.group); !gerr.empty()) {
      throw error(errc::invalid_argument, "SubscribeOptions::group names follow topic syntax: " + gerr);
    }
    effective.delivery = Delivery::acknowledged;  // a group hands unacknowledged work on
  }
  if (!transactional) check_durable(effective);
  // A durable subscription acknowledges what it handled (and committed): its publisher
  // keeps the rest, so a restart finds it there however long the publisher runs on.
  if (!effective.durable_name.empty()) effective.delivery = Delivery::acknowledged;
  if (effective.delivery == Delivery::acknowledged && effective.max_deliver == 0) {
    throw error(errc::invalid_argument, "SubscribeOptions::max_deliver must be at least 1");
  }
  // A group member gets its work by assignment (ROUTER), not from the PUB socket.
  auto prefix = effective.group.empty() ? std::optional<std::string>(p.zmq_prefix()) : std::nullopt;
  auto entry = subs_.add(std::move(p), std::move(handler), effective,
                         effective.durable_name.empty() ? nullptr : durable_.get(), transactional);
  if (!entry) {
    throw error(
        errc::invalid_argument,
        fmt::format("this node already subscribes '{}' in group '{}': a group's subscriptions on one node "
                    "must have different patterns (handle both kinds in one handler, or unsubscribe first)",
                    text, effective.group));
  }
  post_command([this, prefix = std::move(prefix), entry] {
    if (prefix) transport_->subscribe(*prefix);
    sessions_->subscriptions_changed();
    entry->generation.store(sessions_->generation(), std::memory_order_release);
  });
  return Subscription{entry->id};
}

void node_impl::unsubscribe(Subscription s) {
  auto entry = subs_.remove(s.id);
  if (!entry || stopped_.load(std::memory_order_acquire)) return;
  const bool grouped = !entry->options.group.empty();
  post_command([this, prefix = entry->pattern.zmq_prefix(), grouped] {
    if (!grouped) transport_->unsubscribe(prefix);
    sessions_->subscriptions_changed();
  });
}

bool node_impl::wait_for_subscribers(std::string_view topic, std::size_t count, std::chrono::milliseconds timeout) {
  if (auto err = wire::topic_error(topic, true); !err.empty()) throw error(errc::invalid_topic, err);
  return view_->wait_for_subscribers(topic, count, timeout);
}

std::size_t node_impl::poll_once(std::chrono::milliseconds timeout) {
  if (opts_.background_thread) {
    throw error(errc::invalid_argument, "poll_once() is for nodes created with Options::background_thread = false");
  }
  if (stopped_.load(std::memory_order_acquire)) return dispatcher_->run_inline();
  return loop_once(timeout);
}

void node_impl::stop() {
  if (opts_.background_thread && drives_loop_here()) {
    // From a handler running on the I/O thread: the loop stops after this round; the
    // rest (joining, the final cleanup) happens in the destructor or a later stop().
    stop_requested_.store(true, std::memory_order_release);
    publisher_->set_stopping();
    requests_->set_stopping();
    traces_->set_stopping();
    return;
  }
  std::lock_guard lock(stop_mu_);
  if (stopped_.load(std::memory_order_acquire)) return;
  if (metrics_) metrics_->stop();  // no scrape waits for a loop that is ending
  stop_requested_.store(true, std::memory_order_release);
  publisher_->set_stopping();
  requests_->set_stopping();
  traces_->stop();  // while the loop still runs: the scanner may be waiting for it
  publisher_->wake_waiters();
  sessions_->seeds().stop();
  if (io_thread_.joinable()) {
    wake();
    io_thread_.join();
  } else {
    shutdown_io();
  }
  publisher_->close();
  dispatcher_->stop();
  requests_->stop_workers();
  stopped_.store(true, std::memory_order_release);
  view_->clear();
}

template <class T>
T node_impl::on_loop(std::function<T()> f, bool outside, std::chrono::milliseconds timeout) {
  if ((!outside && drives_loop_here()) || stopped_.load(std::memory_order_acquire)) return f();
  // Shared: after a timeout the command may still run.
  auto done = std::make_shared<std::promise<T>>();
  auto result = done->get_future();
  post_command([done, f = std::move(f)] { done->set_value(f()); });
  const auto deadline =
      timeout == std::chrono::milliseconds::max() ? clock::time_point::max() : clock::now() + timeout;
  while (result.wait_for(std::chrono::milliseconds(50)) != std::future_status::ready) {
    const bool ending = stopped_.load(std::memory_order_acquire) || (outside && stop_requested_.load());
    if (ending && result.wait_for(std::chrono::milliseconds(0)) != std::future_status::ready) {
      throw error(errc::stopped, "the node stopped before it could answer: create a new Node");
    }
    if (clock::now() >= deadline) {
      throw error(errc::timeout, fmt::format("the node's loop did not answer within {} ms", timeout.count()));
    }
  }
  return result.get();
}

NodeReport node_impl::report() {
  return on_loop<NodeReport>([this] { return status_->report(clock::now()); });
}

MeshReport node_impl::reports(std::chrono::milliseconds timeout) {
  if (timeout.count() < 0) throw error(errc::invalid_argument, "reports() needs a timeout of 0 ms or more");
  timeout = std::min<std::chrono::milliseconds>(timeout, std::chrono::hours(1));
  auto asked = on_loop<std::future<MeshReport>>(
      [this, timeout] { return status_->ask(view_->peers(), timeout, clock::now()); });
  if (drives_loop_here()) {
    // This thread turns the loop: the replies come in through it.
    while (asked.wait_for(std::chrono::milliseconds(0)) != std::future_status::ready) {
      loop_once(std::chrono::milliseconds(1));
    }
  }
  return asked.get();
}

NodeReport node_impl::build_report() const {
  NodeReport r;
  r.id = self_.id;
  r.name = opts_.name;
  r.cluster = opts_.cluster;
  r.epoch = self_.epoch;
  r.address = interfaces_.bind_address;
  r.router_port = transport_->router_port();
  r.pub_port = transport_->pub_port();
  r.stats = stats();
  const auto now = clock::now();
  for (const auto& p : view_->peers()) {
    PeerReport pr;
    pr.id = p.id;
    pr.name = p.name;
    pr.address = p.address;
    pr.state = p.state;
    pr.last_heard_ms = p.last_heard == clock::time_point{} || p.last_heard > now
                           ? 0
                           : static_cast<std::uint64_t>(
                                 std::chrono::duration_cast<std::chrono::milliseconds>(now - p.last_heard).count());
    r.peers.push_back(std::move(pr));
  }
  for (const auto& [topic, seq] : publisher_->positions()) r.published.push_back({self_.id, topic, seq, 0});
  for (const auto& s : subscriber_->received()) r.received.push_back({to_node_id(s.publisher), s.topic, s.last_seq, 0});
  r.lagging = publisher_->lagging(wire::max_report_entries);
  for (const auto& p : subs_.patterns()) {
    r.subscriptions.push_back(p.group.empty() ? p.pattern : p.pattern + " (group " + p.group + ")");
  }
  r.services = requests_->service_names();
  r.delivery_latency = dispatcher_->delivery_latency();
  r.handler_time = dispatcher_->handler_time();
  return r;
}

Stats node_impl::stats() const {
  Stats s;
  copy_counters(counters_, s);
  view_->count(s.peers_alive, s.peers_suspect);
  publisher_->fill(s);
  s.receive_queue_bytes = dispatcher_->queued_bytes();
  s.dead_letters_held = dead_letters_->held();
  return s;
}

// ---------------------------------------------------------------------------
// loop_access

void node_impl::wake() noexcept {
  const std::uint64_t one = 1;
  [[maybe_unused]] const auto n = ::write(wake_fd_.get(), &one, sizeof one);
}

void node_impl::post_command(std::function<void()> cmd) {
  {
    std::lock_guard lock(cmd_mu_);
    commands_.push_back(std::move(cmd));
  }
  wake();
}

void node_impl::run_on_loop(std::function<void()> cmd) {
  // On the I/O thread (an inline handler, a completion): now, saving the wake-up
  // and a poll round; a request or a reply goes out without waiting for the loop.
  if (loop_owner == this) {
    cmd();
    return;
  }
  post_command(std::move(cmd));
}

bool node_impl::drives_loop_here() const noexcept { return !opts_.background_thread || loop_owner == this; }

void node_impl::run_commands() {
  std::vector<std::function<void()>> cmds;
  {
    std::lock_guard lock(cmd_mu_);
    cmds.swap(commands_);
  }
  if (!cmds.empty()) tick_soon_ = true;  // subscriptions may have changed: windows to make
  for (auto& c : cmds) c();
}

// ---------------------------------------------------------------------------
// the loop

void node_impl::run() {
  loop_owner = this;
  while (!stop_requested_.load(std::memory_order_acquire)) loop_once(std::chrono::milliseconds(1000));
  shutdown_io();
}

std::size_t node_impl::loop_once(std::chrono::milliseconds max_wait) {
  // Handlers that run on this thread may wait (publish on a full queue, flush...),
  // turning the loop from inside a handler: such nested rounds do I/O only, so that
  // no handler overtakes the one that is waiting and streams stay in order.
  ++loop_depth_;
  struct depth_guard {
    int& depth;
    ~depth_guard() { --depth; }
  } guard{loop_depth_};
  auto now = clock::now();
  notice_pause(now);
  run_timers(now);
  run_commands();
  publisher_->pump(now);

  const bool paused = dispatcher_->full() || leaving_;
  if (paused && !receive_paused_ && !leaving_) bump(counters_.receive_pauses);
  receive_paused_ = paused;

  // Only what poll flagged is read (each read of an idle ZeroMQ socket costs system
  // calls), data first; back-pressure leaves data in ZeroMQ's queues.
  const int fds[] = {wake_fd_.get(), beacon_->fd()};
  bool fd_ready[] = {false, false};
  const auto wait = wait_before_poll(now, max_wait, !paused);
  last_wait_ = wait;
  const auto ready = transport_->wait(wait, !paused, fds, fd_ready);
  if (fd_ready[0]) {
    std::uint64_t v = 0;
    [[maybe_unused]] const auto r = ::read(wake_fd_.get(), &v, sizeof v);
  }
  now = clock::now();
  std::size_t n = 0;
  if (!paused && ready.data) n += subscriber_->read(max_inputs_per_round);
  if (ready.directed) n += process_router(now);
  if (ready.subscriptions) n += process_xpub();
  if (fd_ready[1]) n += process_beacons(now);
  run_commands();
  if (inline_handlers_ && loop_depth_ == 1) n += dispatcher_->run_inline();
  publisher_->pump(now);
  return n;
}

// A round that begins more than a second later than the last one meant to wait: this
// node was stopped (SIGSTOP, a suspended VM) or its thread was held up (a long inline
// handler, poll_once() not called). What it did not hear meanwhile is not its peers'
// silence: they are not declared gone for this node's own absence.
void node_impl::notice_pause(clock::time_point now) {
  constexpr auto slack = std::chrono::seconds(1);
  if (last_round_ != clock::time_point{} && now - last_round_ > last_wait_ + slack) {
    bump(counters_.pauses_noticed);
    sessions_->credit_pause(now - last_round_ - last_wait_, now);
  }
  last_round_ = now;
  last_wait_ = {};
}

// Until the earliest deadline, rounded up: rounding down would make the last
// fraction of a millisecond before a timer a zero-timeout poll, spinning the loop.
std::chrono::milliseconds node_impl::wait_before_poll(clock::time_point now, std::chrono::milliseconds max_wait,
                                                      bool want_data) const {
  const auto due = std::min(next_due(), transport_->next_release(want_data));
  auto wait = due <= now ? std::chrono::milliseconds(0) : std::chrono::ceil<std::chrono::milliseconds>(due - now);
  // ZeroMQ refused a batch at its high-water mark: try again soon.
  if (publisher_->refused()) wait = std::min(wait, std::chrono::milliseconds(1));
  return std::min(wait, max_wait);
}

// The earliest deadline of any part. While something is in flight (data queued or
// refused by ZeroMQ, unacknowledged, waiting for handlers, an ack that moved, a
// command just run), every few ms: acks and retries then depend on progress that no
// deadline reports. An idle node wakes only for beacons, heartbeats and timeouts.
clock::time_point node_impl::next_due() const {
  const auto next = std::min(next_beacon_, sessions_->next_due());
  const bool busy = tick_soon_ || !own_nacks_.empty() || publisher_->busy() || dispatcher_->queued_bytes() != 0 ||
                    subscriber_->busy();
  if (busy) return std::min(next, next_reliability_tick_);
  // What these report is done by reliability_tick(), which runs at most every few ms:
  // a deadline already past waits for it rather than spinning the loop.
  const auto parts = std::min({requests_->next_due(), status_->next_due(), publisher_->next_due(),
                               subscriber_->next_due(clock::now())});
  return std::min(next, std::max(parts, next_reliability_tick_));
}

void node_impl::run_timers(clock::time_point now) {
  if (now >= next_beacon_) {
    beacon_->send(wire::encode_beacon(sessions_->beacon(0)));
    next_beacon_ = now + opts_.beacon_interval;
  }
  sessions_->tick(now);
  // Woken for a part's deadline, or busy: at most every few ms.
  if (now >= next_reliability_tick_) {
    reliability_tick(now);
    next_reliability_tick_ = now + busy_tick_interval;
  }
}

void node_impl::reliability_tick(clock::time_point now) {
  tick_soon_ = false;
  requests_->expire(now);
  status_->expire(now);
  subscriber_->tick(now);
  if (!own_nacks_.empty()) {
    std::vector<wire::nack_msg> nacks;
    nacks.swap(own_nacks_);
    for (const auto& m : nacks) publisher_->on_nack(self_.bytes, m, now);
  }
  publisher_->tick(now);
}

void node_impl::shutdown_io() {
  // Within the linger: hand over what was published and wait for it to be
  // acknowledged; take no new group work and let the handlers finish what they have,
  // so that the acks say exactly what this node handled.
  subscriber_->stop_taking_group_work();
  leaving_ = true;  // and no new data from the SUB socket
  const auto deadline = clock::now() + opts_.linger;
  while (clock::now() < deadline) {
    loop_once(std::chrono::milliseconds(1));
    const bool handlers_idle = dispatcher_->queued_bytes() == 0;
    if (publisher_->drained() && publisher_->all_acknowledged() && handlers_idle) break;
  }
  subscriber_->flush_acks(clock::now());
  if (!publisher_->drained()) {
    ctx_.log.warn("node {}: stop() gave up after {} ms with {} bytes not handed to ZeroMQ", self_.id.short_string(),
                  opts_.linger.count(), publisher_->queued_bytes());
  } else if (!publisher_->all_acknowledged()) {
    ctx_.log.info("node {}: stopped after {} ms with {} events not yet acknowledged by subscribers",
                  self_.id.short_string(), opts_.linger.count(), publisher_->unacknowledged());
  }
  requests_->fail(nullptr, errc::stopped, "the node stopped before a reply came");
  status_->finish_all();
  // Goodbye: by beacon for everyone, and directly to every peer.
  beacon_->send(wire::encode_beacon(sessions_->beacon(wire::beacon::flag_goodbye)));
  sessions_->say_goodbye();
  publisher_->abandon_pending();
}

// ---------------------------------------------------------------------------
// input: beacons, the ROUTER, the XPUB

std::size_t node_impl::process_beacons(clock::time_point now) {
  std::size_t n = 0;
  std::uint32_t source = 0;
  for (; n < max_inputs_per_round; ++n) {
    const auto r = beacon_->receive(beacon_buf_, source);
    if (r == discovery::beacon_socket::receive_result::none) break;
    if (r == discovery::beacon_socket::receive_result::foreign) {
      bump(counters_.foreign_network_beacons);
      continue;
    }
    wire::beacon b;
    const auto status = wire::decode_beacon(beacon_buf_, b);
    if (status == wire::decode_status::malformed) {
      bump(counters_.malformed_beacons);
      faults_.report(fault::malformed_beacon,
                     fmt::format("dropped a malformed beacon from {}", discovery::ipv4_to_string(source)));
      continue;
    }
    if (status == wire::decode_status::unsupported_version) {
      bump(counters_.unsupported_beacons);
      faults_.report(fault::unsupported_beacon, fmt::format("dropped a beacon of another protocol version from {}",
                                                            discovery::ipv4_to_string(source)));
      continue;
    }
    if (b.node_id == self_.bytes) continue;  // our own, looped back
    if (b.cluster_hash != self_.cluster_hash) {
      bump(counters_.foreign_cluster_beacons);
      continue;
    }
    sessions_->on_beacon(b, source, now);
  }
  return n;
}

std::size_t node_impl::process_router(clock::time_point now) {
  std::size_t n = 0;
  transport::directed_message m;
  for (; n < max_inputs_per_round; ++n) {
    if (!transport_->receive_directed(m)) break;
    const auto& from = m.from;
    if (m.bad_identity) {
      bump(counters_.unknown_senders);
      faults_.report(fault::unknown_sender, "dropped a message to the ROUTER without a valid meshbus sender id");
      continue;
    }
    wire::control_msg msg;
    auto status = wire::decode_control(m.first.bytes_view(), msg);
    // Only repairs and assignments have a second frame (the data frame they carry).
    if (status == wire::decode_status::ok && m.has_second != wire::has_data_frame(msg)) {
      status = wire::decode_status::malformed;
    }
    if (status == wire::decode_status::malformed) {
      bump(counters_.malformed_messages);
      faults_.report(fault::malformed_control, fmt::format("dropped a malformed control message from {}", m.peer_ip));
      continue;
    }
    if (status == wire::decode_status::unsupported_version) {
      bump(counters_.unsupported_messages);
      faults_.report(fault::unsupported_control,
                     fmt::format("dropped a control message of another protocol version from {}", m.peer_ip));
      continue;
    }
    if (const auto* repair = std::get_if<wire::repair_msg>(&msg)) {
      if (!sessions_->has(from) || subscriber_->stale(from, repair->epoch)) {
        bump(counters_.rejected_sequences);  // from a stranger, or an earlier life of the sender
        continue;
      }
      subscriber_->on_frame(std::move(m.second), &from);
      continue;
    }
    if (const auto* assignment = std::get_if<wire::assign_msg>(&msg)) {
      if (!sessions_->has(from) || subscriber_->stale(from, assignment->epoch)) {
        bump(counters_.rejected_sequences);
        continue;
      }
      subscriber_->on_assignment(from, *assignment, std::move(m.second));
      continue;
    }
    on_control(from, msg, m.peer_ip, now);
  }
  return n;
}

void node_impl::on_control(const wire::node_id_bytes& from, wire::control_msg& msg, const std::string& ip,
                           clock::time_point now) {
  if (auto* hello = std::get_if<wire::hello_msg>(&msg)) {
    sessions_->on_hello(from, *hello, ip, now);
  } else if (const auto* ping = std::get_if<wire::ping_msg>(&msg)) {
    sessions_->on_ping(from, *ping, ip, now);
  } else if (const auto* bye = std::get_if<wire::goodbye_msg>(&msg)) {
    subscriber_->on_publisher_end(from, *bye);  // where its streams ended
    sessions_->on_goodbye(from, now);
    // It comes after the peer's last acks on this connection: the group work it did
    // not acknowledge can go to the others now.
    if (!sessions_->has(from)) publisher_->release_group_work(from, now);
  } else {
    on_session_control(from, msg, now);
  }
}

// The rest needs an established session.
void node_impl::on_session_control(const wire::node_id_bytes& from, wire::control_msg& msg, clock::time_point now) {
  auto* s = sessions_->established(from, now);
  if (s == nullptr) {
    // Except the last group acks of a peer that said goodbye: its goodbye beacon may
    // overtake them, and what they acknowledge must not be handed on.
    const auto* ack = std::get_if<wire::ack_msg>(&msg);
    if (ack != nullptr && sessions_->draining(from)) {
      publisher_->on_late_group_acks(from, *ack, now);
      return;
    }
    bump(counters_.unknown_senders);
    return;
  }
  if (auto* subs = std::get_if<wire::subscriptions_msg>(&msg)) {
    sessions_->on_subscriptions(*s, *subs);
  } else if (const auto* ready = std::get_if<wire::ready_msg>(&msg)) {
    sessions_->on_ready(*s, *ready);
    subscriber_->on_ready(from, s->epoch, *ready, now);
  } else if (const auto* nack = std::get_if<wire::nack_msg>(&msg)) {
    publisher_->on_nack(from, *nack, now);
  } else if (const auto* ack = std::get_if<wire::ack_msg>(&msg)) {
    publisher_->on_ack(from, *ack, now);
  } else if (const auto* loss = std::get_if<wire::loss_msg>(&msg)) {
    subscriber_->on_loss(from, *loss, now);
  } else if (auto* request = std::get_if<wire::request_msg>(&msg)) {
    requests_->on_request(from, std::move(*request));
  } else if (auto* reply = std::get_if<wire::reply_msg>(&msg)) {
    requests_->on_reply(from, std::move(*reply));
  } else if (const auto* status_request = std::get_if<wire::status_request_msg>(&msg)) {
    status_->on_request(from, *status_request, now);
  } else if (auto* status_reply = std::get_if<wire::status_reply_msg>(&msg)) {
    status_->on_reply(from, std::move(*status_reply));
  }
}

std::size_t node_impl::process_xpub() {
  std::size_t n = 0;
  for (; n < max_inputs_per_round; ++n) {
    transport::frame msg;
    if (!transport_->receive_subscription(msg)) break;
    sessions_->on_xpub_subscription(msg.bytes_view());
  }
  return n;
}

// ---------------------------------------------------------------------------
// one part's output, another part's input

void node_impl::session_opened(const wire::node_id_bytes& id, bool resumed, clock::time_point now) {
  // Group work an earlier session still held after its goodbye goes to the others;
  // a peer back from absence keeps its own (it goes on with it).
  if (!resumed) publisher_->release_group_work(id, now);
}

void node_impl::session_closed(const wire::node_id_bytes& id, session_end why, clock::time_point now) {
  requests_->fail(&id, errc::peer_gone, "the instance left before it replied");
  switch (why) {
    case session_end::goodbye:
      // It chose to leave: forgotten, nothing to report. Its group work moves to the
      // others once its last acks are in (release_group_work); its streams live on
      // until it is drained.
      publisher_->forget_subscriber(id, true, false, now);
      break;
    case session_end::expired:
      // Maybe a partition or a pause: both directions wait for it to come back.
      publisher_->subscriber_absent(id, now);
      subscriber_->on_publisher_absent(id);
      break;
    case session_end::restarted:
      session_forgotten(id, now);
      break;
  }
}

void node_impl::session_forgotten(const wire::node_id_bytes& id, clock::time_point now) {
  publisher_->forget_subscriber(id, false, true, now);  // what it never acknowledged is reported
  subscriber_->on_publisher_gone(id, now);
}

void node_impl::session_drained(const wire::node_id_bytes& id, clock::time_point now) {
  subscriber_->on_publisher_gone(id, now);
  publisher_->release_group_work(id, now);  // its GOODBYE never came
}

void node_impl::subscriber_changed(const wire::node_id_bytes& id, const std::string& name,
                                   const std::vector<wire::pattern_spec>& patterns, bool ready,
                                   clock::time_point now) {
  publisher_->set_subscriber(id, name, patterns, ready, now);
}

void node_impl::own_assignment(const wire::assign_msg& m, transport::frame&& frame) {
  subscriber_->on_assignment(self_.bytes, m, std::move(frame));
}

void node_impl::own_loss(const wire::loss_msg& m) { subscriber_->on_loss(self_.bytes, m, clock::now()); }

// NACKs at the next tick, since their answers go back into the subscriber side.
void node_impl::own_nack(const wire::nack_msg& m) { own_nacks_.push_back(m); }

void node_impl::own_ack(const wire::ack_msg& m) { publisher_->on_ack(self_.bytes, m, clock::now()); }

}  // namespace meshbus::detail
