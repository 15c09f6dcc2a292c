// The node's construction, public API, I/O loop and timers; see node_loop.hpp for the
// threading model. Invariants: only the I/O thread (or the poll_once caller) touches
// transport_, beacon_, table_, sessions_, inbound_, outbound_, topics_ and pending_;
// no send blocks; every wait in the API has a deadline.
#include "lib/node/node_loop.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

#include "discovery/interfaces.hpp"
#include "lib/node/options.hpp"
#include "lib/wire/beacon.hpp"
#include "lib/wire/dead_letter.hpp"
#include "lib/wire/envelope.hpp"
#include "lib/wire/topic.hpp"

namespace meshbus::detail {
namespace {

/// The node whose I/O loop this thread runs (background mode), if any.
thread_local const node_impl* loop_owner = nullptr;

// NACK retries, acks, redeliveries and heartbeats are looked at this often.
constexpr auto reliability_tick_interval = std::chrono::milliseconds(2);

std::string describe_field_error(std::string_view field, std::size_t size, std::size_t max) {
  return fmt::format("PublishOptions::{} is {} bytes; at most {} are allowed", field, size, max);
}

}  // namespace

unique_fd::~unique_fd() { reset(-1); }

void unique_fd::reset(int fd) noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

node_impl::node_impl(const Options& given)
    : table_(discovery::peer_timing{}) {
  auto resolved = resolve_options(given);
  opts_ = std::move(resolved.options);
  for (auto& s : resolved.seeds) {
    seed_state st;
    st.endpoint = s.endpoint();
    st.address = std::move(s);
    seeds_.push_back(std::move(st));
  }
  inline_handlers_ = !opts_.background_thread || opts_.handler_threads == 0;
  id_ = opts_.node_id ? *opts_.node_id : random_node_id();
  id_bytes_ = id_.bytes;
  epoch_ = unix_ns() / 1000;  // microseconds: a restart always gets a larger epoch
  cluster_hash_ = wire::fnv1a64(opts_.cluster);
  table_ = discovery::peer_table(discovery::peer_timing{
      opts_.beacon_interval * opts_.suspect_after_missed, opts_.peer_expiry});
  interfaces_ = discovery::select_interfaces(opts_.interface);

  transport::transport_config tc;
  tc.self = id_bytes_;
  tc.bind_address = interfaces_.bind_address;
  tc.router_port = opts_.router_port;
  tc.pub_port = opts_.pub_port;
  tc.max_message_bytes = static_cast<std::int64_t>(opts_.max_message_bytes);
  tc.data_hwm = opts_.zmq_hwm;
  tc.control_hwm = std::max(opts_.zmq_hwm, 10000);  // control messages are small
  tc.linger_ms = static_cast<int>(opts_.linger.count());
  // Test only (docs/testing.md): faults on everything this node receives.
  if (const char* faults = std::getenv("MESHBUS_FAULTS"); faults != nullptr && *faults != '\0') {
    tc.faults = transport::fault_plan::parse(faults);
    logger().warn("node {}: MESHBUS_FAULTS is set: injecting faults into what this node receives ({})",
                  id_.short_string(), faults);
  }
  transport_ = std::make_unique<transport::zmq_transport>(tc);
  router_port_ = transport_->router_port();
  pub_port_ = transport_->pub_port();
  beacon_ = std::make_unique<discovery::beacon_socket>(interfaces_, opts_.beacon_port);

  wake_fd_.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (wake_fd_.get() < 0) throw error(errc::network, "eventfd() failed: cannot create the wake-up channel");

  outbox::limits lim;
  lim.max_bytes = opts_.send_queue_bytes;
  lim.max_batch_bytes = opts_.max_batch_bytes;
  outbox_ = std::make_unique<outbox>(id_bytes_, epoch_, lim, [this] { wake(); });

  dispatcher_ = std::make_unique<dispatcher>(
      inline_handlers_ ? 0 : opts_.handler_threads, opts_.receive_queue_bytes, counters_,
      [this](std::string_view topic, std::string_view what) {
        report(fault::handler_exception,
               fmt::format("a handler threw{}{}: {}", topic.empty() ? "" : " for topic ", topic, what));
      },
      [this](const Event& e, const subscription_entry& sub, std::string_view reason, unsigned attempts) {
        dead_letter(e, sub, reason, attempts);
      },
      [this] { wake(); });
  dead_letters_.set_capacity(opts_.dead_letter_capacity);

  inbound_config ic;
  inbound_ = std::make_unique<inbound_streams>(ic, subs_, static_cast<inbound_sink&>(*this), counters_);
  reliability::tracker_config tcfg;
  tcfg.window = opts_.window_events;
  tcfg.redelivery_timeout = opts_.redelivery_timeout;
  reliability::group_config gcfg;
  gcfg.window = opts_.window_events;
  gcfg.redelivery_timeout = opts_.redelivery_timeout;
  outbound_ = std::make_unique<outbound_streams>(
      reliability::history_limits{opts_.history_events, opts_.history_bytes}, tcfg, gcfg, epoch_,
      static_cast<outbound_sink&>(*this), counters_);

  // Generation 1: the sentinel lets every publisher confirm it has our (empty) set.
  subscriptions_changed();
  // Every node answers dead-letter replay requests addressed to it (meshbus dlq replay).
  subscribe(wire::dead_letter_replay_topic, [this](const Event& e) { answer_replay_request(e); }, SubscribeOptions{});
  const auto now = clock::now();
  next_beacon_ = now;
  next_tick_ = now;
  next_interval_ = now;
  next_reliability_tick_ = now;
  logger().info("node {} '{}' (cluster '{}') on {}: ROUTER {}, PUB {}, beacon UDP {}", id_.short_string(),
                opts_.name, opts_.cluster, interfaces_.bind_address, router_port_, pub_port_,
                opts_.beacon_port);
  if (opts_.background_thread) io_thread_ = std::thread([this] { run(); });
}

node_impl::~node_impl() {
  try {
    stop();
  } catch (...) {
    // stop() does not throw in practice; a destructor must not.
  }
  dispatcher_.reset();
  transport_.reset();
}

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

void node_impl::run_commands() {
  std::vector<std::function<void()>> cmds;
  {
    std::lock_guard lock(cmd_mu_);
    cmds.swap(commands_);
  }
  for (auto& c : cmds) c();
}

void node_impl::report(fault f, const std::string& message) {
  if (!faults_.first(f)) return;
  logger().warn("node {}: {} (further occurrences are only counted in stats())", id_.short_string(),
                message);
  if (opts_.on_error) {
    try {
      opts_.on_error(make_error_code(code_of(f)), message);
    } catch (...) {
      // The error handler must not throw; if it does, the node ignores it.
    }
  }
}

PublishResult node_impl::publish(std::string_view topic, wire::byte_view payload,
                                 const PublishOptions* po) {
  return publish_checked(topic, payload, po, false);
}

PublishResult node_impl::publish_reserved(std::string_view topic, wire::byte_view payload,
                                          const PublishOptions* po) {
  return publish_checked(topic, payload, po, true);
}

PublishResult node_impl::publish_checked(std::string_view topic, wire::byte_view payload,
                                         const PublishOptions* po, bool reserved) {
  if (stopped_.load(std::memory_order_acquire) || stop_requested_.load(std::memory_order_acquire)) {
    throw error(errc::stopped, fmt::format("publish('{}') after stop(): create a new Node to publish again",
                                           topic.substr(0, 64)));
  }
  // Publishers mostly repeat a few topics: remember the last valid one per thread.
  thread_local std::string last_valid_topic;
  if (topic != last_valid_topic) {
    if (auto err = wire::topic_error(topic, reserved); !err.empty()) throw error(errc::invalid_topic, err);
    if (!reserved) last_valid_topic.assign(topic);
  }
  if (payload.size() + topic.size() + 512 > opts_.max_message_bytes) {
    throw error(errc::message_too_large,
                fmt::format("event of {} bytes on '{}' exceeds Options::max_message_bytes ({}); raise "
                            "it on every node or split the payload",
                            payload.size(), topic, opts_.max_message_bytes));
  }
  // Inside a handler, what is published belongs to the same flow: it inherits the
  // handled event's correlation id (or takes its id as one) and names it as its cause.
  PublishOptions inherited;
  std::string correlation_buffer;
  std::string causation_buffer;
  if (const Event* cause = current_event; cause != nullptr) {
    const bool has_correlation = po != nullptr && !po->correlation_id.empty();
    const bool has_causation = po != nullptr && !po->causation_id.empty();
    if (!has_correlation || !has_causation) {
      if (po != nullptr) inherited = *po;
      causation_buffer = cause->id();
      correlation_buffer = cause->correlation_id().empty() ? causation_buffer : std::string(cause->correlation_id());
      if (!has_correlation) inherited.correlation_id = correlation_buffer;
      if (!has_causation) inherited.causation_id = causation_buffer;
      po = &inherited;
    }
  }
  wire::event_fields fields;
  std::vector<wire::header_view> headers;
  const wire::event_fields* fp = nullptr;
  if (po != nullptr) {
    auto check = [](std::string_view name, std::string_view v) {
      if (v.size() > wire::max_short_field) {
        throw error(errc::invalid_argument, describe_field_error(name, v.size(), wire::max_short_field));
      }
    };
    check("event_id", po->event_id);
    check("type_name", po->type_name);
    check("correlation_id", po->correlation_id);
    check("causation_id", po->causation_id);
    check("content_type", po->content_type);
    if (po->headers.size() > wire::max_headers) {
      throw error(errc::invalid_argument,
                  fmt::format("{} headers given; at most {} are allowed", po->headers.size(), wire::max_headers));
    }
    if (po->timestamp) {
      fields.flags |= wire::event_flag::timestamp;
      fields.timestamp_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                po->timestamp->time_since_epoch())
                                .count();
    }
    if (!po->event_id.empty()) fields.flags |= wire::event_flag::event_id;
    if (!po->type_name.empty()) fields.flags |= wire::event_flag::type;
    if (!po->correlation_id.empty()) fields.flags |= wire::event_flag::correlation_id;
    if (!po->causation_id.empty()) fields.flags |= wire::event_flag::causation_id;
    if (!po->content_type.empty()) fields.flags |= wire::event_flag::content_type;
    fields.event_id = po->event_id;
    fields.type_name = po->type_name;
    fields.type_version = po->type_version;
    fields.correlation_id = po->correlation_id;
    fields.causation_id = po->causation_id;
    fields.content_type = po->content_type;
    if (!po->headers.empty()) {
      fields.flags |= wire::event_flag::headers;
      headers.reserve(po->headers.size());
      for (const auto& h : po->headers) {
        check("headers name", h.name);
        if (h.value.size() > wire::max_header_value) {
          throw error(errc::invalid_argument,
                      describe_field_error("headers value", h.value.size(), wire::max_header_value));
        }
        headers.push_back({h.name, h.value});
      }
      fields.headers = headers;
    }
    if (fields.flags != 0) fp = &fields;
  }
  // Blocking is safe on a handler thread too: the I/O thread never waits for handlers.
  const auto wait = opts_.send_policy == SendPolicy::block ? opts_.send_timeout : std::chrono::milliseconds(0);
  // Flow control: a subscriber's window of unacknowledged events is full.
  if (window_full_.load(std::memory_order_acquire) && !reserved) {
    bump(counters_.window_waits);
    const auto deadline = clock::now() + wait;
    auto open = [&] { return !window_full_.load(std::memory_order_acquire) || stop_requested_.load(); };
    if (!drives_loop_here()) {
      std::unique_lock lock(flow_mu_);
      flow_cv_.wait_until(lock, deadline, open);
    } else {
      while (!open() && clock::now() < deadline) loop_once(std::chrono::milliseconds(1));
    }
    if (!open()) {
      bump(counters_.publish_would_block);
      return PublishResult::would_block;
    }
  }
  // Without a background thread nobody else drains the outbox: make room here.
  // On the thread that drives the loop, nobody else drains the outbox: make room here.
  const bool here = drives_loop_here();
  auto result = outbox_->push(topic, payload, fp, here ? std::chrono::milliseconds(0) : wait);
  if (result == outbox::push_result::full && here && wait.count() > 0) {
    const auto deadline = clock::now() + wait;
    while (result == outbox::push_result::full && clock::now() < deadline) {
      loop_once(std::chrono::milliseconds(1));
      result = outbox_->push(topic, payload, fp, std::chrono::milliseconds(0));
    }
  }
  switch (result) {
    case outbox::push_result::ok:
      return PublishResult::ok;
    case outbox::push_result::full:
      bump(counters_.publish_would_block);
      return PublishResult::would_block;
    case outbox::push_result::closed:
      break;
  }
  throw error(errc::stopped, "publish() after stop(): create a new Node to publish again");
}

Subscription node_impl::subscribe(std::string_view text, Handler handler, const SubscribeOptions& options) {
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
  if (effective.delivery == Delivery::acknowledged && effective.max_deliver == 0) {
    throw error(errc::invalid_argument, "SubscribeOptions::max_deliver must be at least 1");
  }
  // A group member gets its work by assignment (ROUTER), not from the PUB socket.
  auto prefix = effective.group.empty() ? std::optional<std::string>(p.zmq_prefix()) : std::nullopt;
  auto entry = subs_.add(std::move(p), std::move(handler), effective);
  if (!entry) {
    throw error(
        errc::invalid_argument,
        fmt::format("this node already subscribes '{}' in group '{}': a group's subscriptions on one node "
                    "must have different patterns (handle both kinds in one handler, or unsubscribe first)",
                    text, effective.group));
  }
  post_command([this, prefix = std::move(prefix), entry] {
    if (prefix) transport_->subscribe(*prefix);
    subscriptions_changed();
    entry->generation.store(sub_generation_, std::memory_order_release);
  });
  return Subscription{entry->id};
}

void node_impl::unsubscribe(Subscription s) {
  auto entry = subs_.remove(s.id);
  if (!entry || stopped_.load(std::memory_order_acquire)) return;
  const bool grouped = !entry->options.group.empty();
  post_command([this, prefix = entry->pattern.zmq_prefix(), grouped] {
    if (!grouped) transport_->unsubscribe(prefix);
    subscriptions_changed();
  });
}

void node_impl::set_peer_handler(PeerHandler h) {
  std::lock_guard lock(handler_mu_);
  peer_handler_ = std::move(h);
}

void node_impl::set_loss_handler(LossHandler h) {
  std::lock_guard lock(handler_mu_);
  loss_handler_ = std::move(h);
}

bool node_impl::wait_for_subscribers(std::string_view topic, std::size_t count,
                                     std::chrono::milliseconds timeout) {
  if (auto err = wire::topic_error(topic, true); !err.empty()) throw error(errc::invalid_topic, err);
  const auto deadline = clock::now() + timeout;
  auto satisfied = [&] {
    std::size_t n = 0;
    for (const auto& [id, v] : subscriber_view_) {
      if (!v.ready) continue;
      if (std::any_of(v.patterns.begin(), v.patterns.end(),
                      [&](const wire::pattern& p) { return p.matches(topic); })) {
        ++n;
      }
    }
    return n >= count;
  };
  return wait_for_view(satisfied, deadline);
}

bool node_impl::wait_for_view(const std::function<bool()>& satisfied, clock::time_point deadline) {
  if (drives_loop_here()) {
    // Nobody else runs the loop: run it here while waiting.
    for (;;) {
      {
        std::lock_guard lock(view_mu_);
        if (satisfied()) return true;
      }
      if (clock::now() >= deadline) return false;
      loop_once(std::chrono::milliseconds(5));
    }
  }
  std::unique_lock lock(view_mu_);
  return view_cv_.wait_until(lock, deadline, satisfied);
}

bool node_impl::wait_for_peers(std::size_t count, std::chrono::milliseconds timeout) {
  const auto deadline = clock::now() + timeout;
  auto satisfied = [&] { return peer_view_.size() >= count; };
  return wait_for_view(satisfied, deadline);
}

bool node_impl::flush(std::chrono::milliseconds timeout) {
  const auto deadline = clock::now() + timeout;
  // Everything handed to ZeroMQ, then acknowledged by every tracked subscriber.
  auto done = [&] { return outbox_->bytes() == 0 && all_acknowledged_.load(std::memory_order_acquire); };
  if (drives_loop_here()) {
    while (!done()) {
      if (clock::now() >= deadline) return false;
      loop_once(std::chrono::milliseconds(1));
    }
    return true;
  }
  if (!outbox_->wait_released(timeout)) return false;
  std::unique_lock lock(flow_mu_);
  return flow_cv_.wait_until(lock, deadline, done);
}

std::size_t node_impl::poll_once(std::chrono::milliseconds timeout) {
  if (opts_.background_thread) {
    throw error(errc::invalid_argument,
                "poll_once() is for nodes created with Options::background_thread = false");
  }
  if (stopped_.load(std::memory_order_acquire)) return dispatcher_->run_inline();
  return loop_once(timeout);
}

void node_impl::stop() {
  if (opts_.background_thread && drives_loop_here()) {
    // From a handler running on the I/O thread: the loop stops after this round; the
    // rest (joining, the final cleanup) happens in the destructor or a later stop().
    stop_requested_.store(true, std::memory_order_release);
    return;
  }
  std::lock_guard lock(stop_mu_);
  if (stopped_.load(std::memory_order_acquire)) return;
  stop_requested_.store(true, std::memory_order_release);
  {
    std::lock_guard flow_lock(flow_mu_);  // wakes publishers waiting for a window
    flow_cv_.notify_all();
  }
  if (io_thread_.joinable()) {
    wake();
    io_thread_.join();
  } else {
    shutdown_io();
  }
  outbox_->close();
  dispatcher_->stop();
  stopped_.store(true, std::memory_order_release);
  {
    std::lock_guard vlock(view_mu_);
    peer_view_.clear();
    subscriber_view_.clear();
  }
  view_cv_.notify_all();
}

Stats node_impl::stats() const {
  Stats s;
  const auto& c = counters_;
  s.events_published = outbox_->events_accepted();
  s.batches_sent = read(c.batches_sent);
  s.bytes_sent = read(c.bytes_sent);
  s.publish_would_block = read(c.publish_would_block);
  s.send_stalls = read(c.send_stalls);
  s.sent_past_gone = read(c.sent_past_gone);
  s.heartbeats_sent = read(c.heartbeats_sent);
  s.control_send_failures = read(c.control_send_failures);
  s.batches_received = read(c.batches_received);
  s.events_received = read(c.events_received);
  s.bytes_received = read(c.bytes_received);
  s.events_delivered = read(c.events_delivered);
  s.handler_errors = read(c.handler_errors);
  s.events_unmatched = read(c.events_unmatched);
  s.gaps = read(c.gaps);
  s.events_lost = read(c.events_lost);
  s.loss_notices = read(c.loss_notices);
  s.nacks_sent = read(c.nacks_sent);
  s.repairs_received = read(c.repairs_received);
  s.acks_sent = read(c.acks_sent);
  s.reorder_overflow = read(c.reorder_overflow);
  s.unknown_starts = read(c.unknown_starts);
  s.rejected_sequences = read(c.rejected_sequences);
  s.handler_retries = read(c.handler_retries);
  s.dead_letters = read(c.dead_letters);
  s.dead_letters_dropped = read(c.dead_letters_dropped);
  s.window_waits = read(c.window_waits);
  s.nacks_received = read(c.nacks_received);
  s.repairs_sent = read(c.repairs_sent);
  s.losses_sent = read(c.losses_sent);
  s.redeliveries = read(c.redeliveries);
  s.acks_received = read(c.acks_received);
  s.bad_acks = read(c.bad_acks);
  s.bad_nacks = read(c.bad_nacks);
  s.requests_sent = read(c.requests_sent);
  s.requests_failed = read(c.requests_failed);
  s.requests_served = read(c.requests_served);
  s.late_replies = read(c.late_replies);
  s.duplicates_dropped = read(c.duplicates_dropped);
  s.receive_pauses = read(c.receive_pauses);
  s.malformed_beacons = read(c.malformed_beacons);
  s.unsupported_beacons = read(c.unsupported_beacons);
  s.foreign_cluster_beacons = read(c.foreign_cluster_beacons);
  s.foreign_network_beacons = read(c.foreign_network_beacons);
  s.malformed_messages = read(c.malformed_messages);
  s.unsupported_messages = read(c.unsupported_messages);
  s.unknown_senders = read(c.unknown_senders);
  s.peers_joined = read(c.peers_joined);
  s.peers_left = read(c.peers_left);
  s.peers_suspected = read(c.peers_suspected);
  {
    std::lock_guard lock(view_mu_);
    for (const auto& [id, p] : peer_view_) {
      if (p.state == PeerState::alive) {
        ++s.peers_alive;
      } else {
        ++s.peers_suspect;
      }
    }
  }
  s.send_queue_bytes = outbox_->bytes();
  s.receive_queue_bytes = dispatcher_->queued_bytes();
  s.unacknowledged_events = unacknowledged_.load(std::memory_order_relaxed);
  s.history_events = history_events_.load(std::memory_order_relaxed);
  s.history_bytes = history_bytes_.load(std::memory_order_relaxed);
  return s;
}

std::vector<PeerInfo> node_impl::peers() const {
  std::lock_guard lock(view_mu_);
  std::vector<PeerInfo> out;
  out.reserve(peer_view_.size());
  for (const auto& [id, p] : peer_view_) out.push_back(p);
  return out;
}

void node_impl::run() {
  loop_owner = this;
  while (!stop_requested_.load(std::memory_order_acquire)) loop_once(std::chrono::milliseconds(1000));
  shutdown_io();
}

clock::time_point node_impl::next_timer() const {
  return std::min({next_beacon_, next_tick_, next_interval_, next_reliability_tick_});
}

bool node_impl::drives_loop_here() const noexcept {
  return !opts_.background_thread || loop_owner == this;
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
  run_timers(now);
  run_commands();
  pump_outbox(now);

  // Rounded up: rounding down would make the last fraction of a millisecond before a
  // timer a zero-timeout poll, spinning the loop.
  const auto due = std::min(next_timer(), transport_->next_fault_release());
  auto wait = due <= now ? std::chrono::milliseconds(0) : std::chrono::ceil<std::chrono::milliseconds>(due - now);
  wait = std::min(wait, max_wait);
  if (!pending_.empty()) wait = std::min(wait, std::chrono::milliseconds(1));

  const bool paused = dispatcher_->full() || leaving_;
  if (paused && !receive_paused_ && !leaving_) bump(counters_.receive_pauses);
  receive_paused_ = paused;

  zmq::pollitem_t items[5] = {
      {nullptr, wake_fd_.get(), ZMQ_POLLIN, 0},
      {transport_->sub().handle(), 0, ZMQ_POLLIN, 0},
      {transport_->router().handle(), 0, ZMQ_POLLIN, 0},
      {transport_->xpub().handle(), 0, ZMQ_POLLIN, 0},
      {nullptr, beacon_->fd(), ZMQ_POLLIN, 0},
  };
  if (paused) items[1].events = 0;  // back-pressure: leave data in ZeroMQ's queues
  try {
    zmq::poll(items, std::size(items), wait);
  } catch (const zmq::error_t& e) {
    if (e.num() != EINTR) throw;
  }
  if ((items[0].revents & ZMQ_POLLIN) != 0) {
    std::uint64_t v = 0;
    [[maybe_unused]] const auto r = ::read(wake_fd_.get(), &v, sizeof v);
  }
  now = clock::now();
  // Only the sockets poll flagged (each read of an idle ZeroMQ socket costs system
  // calls), data first; and whatever the fault injector (tests) has due.
  const bool faults_due = transport_->next_fault_release() <= now;
  std::size_t n = 0;
  if (!paused && ((items[1].revents & ZMQ_POLLIN) != 0 || faults_due)) n += process_sub();
  if ((items[2].revents & ZMQ_POLLIN) != 0 || faults_due) n += process_router(now);
  if ((items[3].revents & ZMQ_POLLIN) != 0) n += process_xpub();
  if ((items[4].revents & ZMQ_POLLIN) != 0) n += process_beacons(now);
  run_commands();
  if (inline_handlers_ && loop_depth_ == 1) n += dispatcher_->run_inline();
  pump_outbox(now);
  return n;
}

void node_impl::shutdown_io() {
  // Within the linger: hand over what was published and wait for it to be
  // acknowledged; take no new group work and let the handlers finish what they have,
  // so that the acks say exactly what this node handled.
  inbound_->stop_taking_group_work();
  leaving_ = true;  // and no new data from the SUB socket
  const auto deadline = clock::now() + opts_.linger;
  while (clock::now() < deadline) {
    loop_once(std::chrono::milliseconds(1));
    const bool handlers_idle = dispatcher_->queued_bytes() == 0;
    if (pending_.empty() && outbox_->empty() && outbound_->all_acknowledged() && handlers_idle) break;
  }
  inbound_->flush_acks(clock::now());
  if (!pending_.empty() || !outbox_->empty()) {
    logger().warn("node {}: stop() gave up after {} ms with {} bytes not handed to ZeroMQ",
                  id_.short_string(), opts_.linger.count(), outbox_->bytes());
  } else if (!outbound_->all_acknowledged()) {
    logger().info("node {}: stopped after {} ms with {} events not yet acknowledged by subscribers",
                  id_.short_string(), opts_.linger.count(), outbound_->unacknowledged());
  }
  fail_requests(nullptr, errc::stopped, "the node stopped before a reply came");
  // Goodbye: by beacon for everyone, and directly to every peer.
  beacon_->send(make_beacon(wire::beacon::flag_goodbye));
  for (auto& [id, s] : sessions_) send_control(id, wire::goodbye_msg{});
  pending_.clear();
}

void node_impl::run_timers(clock::time_point now) {
  if (now >= next_beacon_) {
    beacon_->send(make_beacon(0));
    next_beacon_ = now + opts_.beacon_interval;
  }
  if (now >= next_tick_) {
    std::vector<discovery::peer_transition> changes;
    table_.tick(now, changes);
    for (const auto& t : changes) apply_transition(t, now);
    next_tick_ = now + std::max(std::chrono::milliseconds(10), opts_.beacon_interval / 4);
  }
  if (now >= next_interval_) {
    retire_drained(now);
    on_interval(now);
    next_interval_ = now + opts_.beacon_interval;
  }
  if (now >= next_reliability_tick_) {
    reliability_tick(now);
    next_reliability_tick_ = now + reliability_tick_interval;
  }
}

void node_impl::on_interval(clock::time_point now) {
  const auto gossip = gossip_list();
  for (auto& [id, s] : sessions_) {
    if (!s.hello_received) {
      if (now - s.last_hello_sent >= opts_.beacon_interval) send_hello(s, now);
      continue;
    }
    send_control(id, wire::ping_msg{epoch_, router_port_, pub_port_, gossip});
    // No READY for our subscriptions yet: it (or they) may have been lost. Until it
    // comes, what this peer publishes to us is held, not delivered; ask again.
    if (sub_generation_ > s.confirmed_generation && now - s.subscriptions_sent >= opts_.beacon_interval) {
      send_control(id, wire::subscriptions_msg{sub_generation_, subs_.patterns(), service_names()});
      s.subscriptions_sent = now;
    }
  }
  send_seed_hellos(now);
}

}  // namespace meshbus::detail
