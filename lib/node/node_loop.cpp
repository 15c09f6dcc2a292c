// The node's I/O loop and peer protocol; see node_loop.hpp for the threading model.
// Invariants: only the I/O thread (or the poll_once caller) touches transport_,
// beacon_, table_, sessions_, streams_, topics_ and pending_; every inbound frame is
// decoded with bounds and dropped-and-counted when not ok; no send blocks.
#include "lib/node/node_loop.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "discovery/interfaces.hpp"
#include "lib/node/options.hpp"
#include "lib/wire/beacon.hpp"
#include "lib/wire/envelope.hpp"
#include "lib/wire/topic.hpp"

namespace meshbus::detail {
namespace {

constexpr std::size_t max_inputs_per_round = 512;

std::uint64_t unix_ns() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
}

std::uint64_t unix_us() { return unix_ns() / 1000; }

NodeId to_node_id(const wire::node_id_bytes& b) {
  NodeId id;
  id.bytes = b;
  return id;
}

std::string short_id(const wire::node_id_bytes& b) { return to_node_id(b).short_string(); }

// "\xFF" "mb" 0x01, subscriber id, generation (big-endian): sorts after every
// UTF-8 topic prefix, so it reaches a publisher after the subscriber's real ones.
std::string make_sentinel(const wire::node_id_bytes& self, std::uint64_t generation) {
  std::string s("\xFFmb\x01", 4);
  s.append(reinterpret_cast<const char*>(self.data()), self.size());
  for (int i = 7; i >= 0; --i) s.push_back(static_cast<char>((generation >> (8 * i)) & 0xff));
  return s;
}

bool parse_sentinel(const zmq::message_t& msg, wire::node_id_bytes& who, std::uint64_t& generation) {
  if (msg.size() != 1 + 4 + 16 + 8) return false;
  const auto* p = static_cast<const std::uint8_t*>(msg.data());
  if (p[0] != 1 || std::memcmp(p + 1, "\xFFmb\x01", 4) != 0) return false;
  std::memcpy(who.data(), p + 5, 16);
  generation = 0;
  for (int i = 0; i < 8; ++i) generation = (generation << 8) | p[21 + i];
  return true;
}

std::size_t stream_hash(const wire::node_id_bytes& publisher, std::string_view topic) {
  std::size_t h = std::hash<std::string_view>{}(topic);
  for (const auto b : publisher) h = h * 131 + b;
  return h;
}

// Small frames are copied (one allocation, buffer reused at once); large ones are
// handed to ZeroMQ as they are and their buffer returns to the pool once sent.
constexpr std::size_t zero_copy_threshold = 8192;

struct pooled_frame {
  wire::bytes buffer;
  std::shared_ptr<frame_pool> pool;
};

void release_pooled_frame(void*, void* hint) noexcept {
  auto* f = static_cast<pooled_frame*>(hint);
  f->pool->give_back(std::move(f->buffer));
  delete f;
}

zmq::message_t to_message(wire::bytes&& frame, const std::shared_ptr<frame_pool>& pool) {
  if (frame.size() < zero_copy_threshold) {
    zmq::message_t msg(frame.data(), frame.size());
    pool->give_back(std::move(frame));
    return msg;
  }
  auto* f = new pooled_frame{std::move(frame), pool};
  return zmq::message_t(f->buffer.data(), f->buffer.size(), &release_pooled_frame, f);
}

std::string describe_field_error(std::string_view field, std::size_t size, std::size_t max) {
  return fmt::format("PublishOptions::{} is {} bytes; at most {} are allowed", field, size, max);
}

}  // namespace

// ---------------------------------------------------------------------------
// construction and teardown

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
  id_ = opts_.node_id ? *opts_.node_id : random_node_id();
  id_bytes_ = id_.bytes;
  epoch_ = unix_us();
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
      opts_.background_thread ? opts_.handler_threads : 0, opts_.receive_queue_bytes, counters_,
      [this](std::string_view topic, std::string_view what) {
        report(fault::handler_exception,
               fmt::format("a handler threw{}{}: {}", topic.empty() ? "" : " for topic ", topic, what));
      },
      [this] { wake(); });

  // Generation 1: the sentinel lets every publisher confirm it has our (empty) set.
  subscriptions_changed();
  const auto now = clock::now();
  next_beacon_ = now;
  next_tick_ = now;
  next_interval_ = now;
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

// ---------------------------------------------------------------------------
// API

PublishResult node_impl::publish(std::string_view topic, wire::byte_view payload,
                                 const PublishOptions* po) {
  if (stopped_.load(std::memory_order_acquire) || stop_requested_.load(std::memory_order_acquire)) {
    throw error(errc::stopped, fmt::format("publish('{}') after stop(): create a new Node to publish again",
                                           topic.substr(0, 64)));
  }
  // Publishers mostly repeat a few topics: remember the last valid one per thread.
  thread_local std::string last_valid_topic;
  if (topic != last_valid_topic) {
    if (auto err = wire::topic_error(topic); !err.empty()) throw error(errc::invalid_topic, err);
    last_valid_topic.assign(topic);
  }
  if (payload.size() + topic.size() + 512 > opts_.max_message_bytes) {
    throw error(errc::message_too_large,
                fmt::format("event of {} bytes on '{}' exceeds Options::max_message_bytes ({}); raise "
                            "it on every node or split the payload",
                            payload.size(), topic, opts_.max_message_bytes));
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
  // Without a background thread nobody else drains the outbox: make room here.
  auto result = outbox_->push(topic, payload, fp, opts_.background_thread ? wait : std::chrono::milliseconds(0));
  if (result == outbox::push_result::full && !opts_.background_thread && wait.count() > 0) {
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

Subscription node_impl::subscribe(std::string_view text, Handler handler) {
  if (stopped_.load(std::memory_order_acquire)) {
    throw error(errc::stopped, "subscribe() after stop(): create a new Node to subscribe again");
  }
  if (!handler) throw error(errc::invalid_argument, "subscribe() needs a handler");
  wire::pattern p;
  std::string err;
  if (!wire::pattern::compile(text, p, err)) throw error(errc::invalid_topic, err);
  auto prefix = p.zmq_prefix();
  auto entry = subs_.add(std::move(p), std::move(handler));
  post_command([this, prefix = std::move(prefix)] {
    transport_->subscribe(prefix);
    subscriptions_changed();
  });
  return Subscription{entry->id};
}

void node_impl::unsubscribe(Subscription s) {
  auto entry = subs_.remove(s.id);
  if (!entry || stopped_.load(std::memory_order_acquire)) return;
  post_command([this, prefix = entry->pattern.zmq_prefix()] {
    transport_->unsubscribe(prefix);
    subscriptions_changed();
  });
}

void node_impl::set_peer_handler(PeerHandler h) {
  std::lock_guard lock(peer_handler_mu_);
  peer_handler_ = std::move(h);
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
  if (!opts_.background_thread) {
    // Nobody else runs the loop: run it here while waiting.
    for (;;) {
      {
        std::lock_guard lock(view_mu_);
        if (satisfied()) return true;
      }
      if (clock::now() >= deadline) return false;
      poll_once(std::chrono::milliseconds(5));
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
  if (!opts_.background_thread) {
    const auto deadline = clock::now() + timeout;
    while (outbox_->bytes() != 0) {
      if (clock::now() >= deadline) return false;
      poll_once(std::chrono::milliseconds(1));
    }
    return true;
  }
  return outbox_->wait_released(timeout);
}

std::size_t node_impl::poll_once(std::chrono::milliseconds timeout) {
  if (opts_.background_thread) {
    throw error(errc::invalid_argument,
                "poll_once() is for nodes created with Options::background_thread = false");
  }
  if (stopped_.load(std::memory_order_acquire)) return dispatcher_->run_inline();
  auto n = loop_once(timeout);
  n += dispatcher_->run_inline();
  return n;
}

void node_impl::stop() {
  std::lock_guard lock(stop_mu_);
  if (stopped_.load(std::memory_order_acquire)) return;
  stop_requested_.store(true, std::memory_order_release);
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
  s.events_missing = read(c.events_missing);
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
  return s;
}

std::vector<PeerInfo> node_impl::peers() const {
  std::lock_guard lock(view_mu_);
  std::vector<PeerInfo> out;
  out.reserve(peer_view_.size());
  for (const auto& [id, p] : peer_view_) out.push_back(p);
  return out;
}

// ---------------------------------------------------------------------------
// loop

void node_impl::run() {
  while (!stop_requested_.load(std::memory_order_acquire)) loop_once(std::chrono::milliseconds(1000));
  shutdown_io();
}

clock::time_point node_impl::next_timer() const {
  return std::min({next_beacon_, next_tick_, next_interval_});
}

std::size_t node_impl::loop_once(std::chrono::milliseconds max_wait) {
  auto now = clock::now();
  run_timers(now);
  run_commands();
  pump_outbox(now);

  auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next_timer() - now);
  wait = std::clamp(wait, std::chrono::milliseconds(0), max_wait);
  if (!pending_.empty()) wait = std::min(wait, std::chrono::milliseconds(1));

  const bool paused = dispatcher_->full();
  if (paused && !receive_paused_) bump(counters_.receive_pauses);
  receive_paused_ = paused;

  zmq::pollitem_t items[5] = {
      {nullptr, wake_fd_.get(), ZMQ_POLLIN, 0},
      {transport_->router().handle(), 0, ZMQ_POLLIN, 0},
      {transport_->xpub().handle(), 0, ZMQ_POLLIN, 0},
      {nullptr, beacon_->fd(), ZMQ_POLLIN, 0},
      {transport_->sub().handle(), 0, ZMQ_POLLIN, 0},
  };
  const int count = paused ? 4 : 5;
  try {
    zmq::poll(items, static_cast<std::size_t>(count), wait);
  } catch (const zmq::error_t& e) {
    if (e.num() != EINTR) throw;
  }
  if ((items[0].revents & ZMQ_POLLIN) != 0) {
    std::uint64_t v = 0;
    [[maybe_unused]] const auto r = ::read(wake_fd_.get(), &v, sizeof v);
  }
  now = clock::now();
  std::size_t n = 0;
  n += process_router(now);
  n += process_xpub();
  n += process_beacons(now);
  if (!paused) n += process_sub();
  run_commands();
  pump_outbox(now);
  return n;
}

void node_impl::shutdown_io() {
  // Hand over what was published, bounded by the linger time.
  const auto deadline = clock::now() + opts_.linger;
  while (clock::now() < deadline) {
    run_commands();
    pump_outbox(clock::now());
    if (pending_.empty() && outbox_->empty()) break;
    zmq::pollitem_t none[1] = {{nullptr, wake_fd_.get(), ZMQ_POLLIN, 0}};
    zmq::poll(none, 1, std::chrono::milliseconds(1));
  }
  if (!pending_.empty() || !outbox_->empty()) {
    logger().warn("node {}: stop() gave up after {} ms with {} bytes not handed to ZeroMQ",
                  id_.short_string(), opts_.linger.count(), outbox_->bytes());
  }
  // Goodbye: by beacon for everyone, and directly to every peer.
  beacon_->send(make_beacon(wire::beacon::flag_goodbye));
  for (auto& [id, s] : sessions_) send_control(id, wire::goodbye_msg{});
  pending_.clear();
}

// ---------------------------------------------------------------------------
// timers

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
}

void node_impl::on_interval(clock::time_point now) {
  const auto gossip = gossip_list();
  for (auto& [id, s] : sessions_) {
    if (!s.hello_received) {
      if (now - s.last_hello_sent >= opts_.beacon_interval) send_hello(s, now);
      continue;
    }
    send_control(id, wire::ping_msg{epoch_, router_port_, pub_port_, gossip});
  }
  send_seed_hellos(now);
  send_heartbeats(now);
}

void node_impl::send_seed_hellos(clock::time_point now) {
  for (auto& seed : seeds_) {
    if (seed.identified && table_.find(*seed.identified) != nullptr) continue;
    seed.identified.reset();
    if (seed.resolved == 0) discovery::resolve_ipv4(seed.address.host, seed.resolved);
    transport_->open_seed(seed.endpoint);
    const auto bytes = wire::encode_control(make_hello());
    zmq::message_t msg(bytes.data(), bytes.size());
    if (transport_->send_to_seed(seed.endpoint, msg) != transport::send_status::ok) {
      // Not connected yet (ZMQ_IMMEDIATE): the next interval tries again.
      logger().debug("node {}: seed {} not reachable yet", id_.short_string(), seed.endpoint);
    }
  }
  (void)now;
}

void node_impl::send_heartbeats(clock::time_point now) {
  if (!pending_.empty()) return;  // a heartbeat must not overtake queued data
  const auto recent = opts_.beacon_interval * 30;
  for (auto& [topic, st] : topics_) {
    if (st.last_seq == 0 || now - st.last_sent < opts_.beacon_interval || now - st.last_sent > recent) {
      continue;
    }
    wire::heartbeat hb;
    hb.publisher = id_bytes_;
    hb.epoch = epoch_;
    hb.last_seq = st.last_seq;
    hb.timestamp_ns = unix_ns();
    const auto bytes = wire::encode_heartbeat(topic, hb);
    zmq::message_t msg(bytes.data(), bytes.size());
    if (transport_->publish(msg) == transport::send_status::ok) {
      bump(counters_.heartbeats_sent);
    } else {
      bump(counters_.control_send_failures);
      break;
    }
  }
}

// ---------------------------------------------------------------------------
// outbound data

void node_impl::pump_outbox(clock::time_point now) {
  send_pending(now);
  if (!pending_.empty()) return;
  drained_.clear();
  outbox_->drain(drained_);
  if (drained_.empty()) return;
  const auto ts = unix_ns();
  for (auto& b : drained_) {
    wire::finish_batch(b.frame, b.marks, b.count, ts);
    const auto frame_size = b.frame.size();
    pending_send p{to_message(std::move(b.frame), outbox_->pool()), frame_size, std::move(b.topic),
                   b.first_seq + b.count - 1};
    if (opts_.local_delivery) {
      if (auto subs = subs_.match(p.topic)) {
        delivery d;
        d.frame.copy(p.msg);
        d.subscriptions = std::move(subs);
        d.publisher = id_;
        d.epoch = epoch_;
        d.first_seq = b.first_seq;
        d.timestamp_ns = ts;
        d.count = b.count;
        d.topic_size = static_cast<std::uint32_t>(p.topic.size());
        d.events_offset = b.marks.count_at + 4;
        dispatcher_->post(stream_hash(id_bytes_, p.topic), std::move(d));
      }
    }
    pending_.push_back(std::move(p));
  }
  send_pending(now);
}

void node_impl::send_pending(clock::time_point now) {
  while (!pending_.empty()) {
    auto& p = pending_.front();
    const auto size = p.msg.size();
    auto r = transport_->publish(p.msg);
    bool lossy = false;
    if (r == transport::send_status::ok) {
      stalled_ = false;
      lossy_episode_ = false;
      peer_left_during_stall_ = false;
    } else {
      if (!stalled_) {
        stalled_ = true;
        stall_since_ = now;
        bump(counters_.send_stalls);  // back-pressure is normal operation, not a fault
        logger().debug("node {}: a subscriber's queue is full; publishing waits for it", id_.short_string());
      }
      // A subscriber that has taken nothing for a whole peer expiry, or that left
      // meanwhile, is not allowed to hold everyone else up.
      if (lossy_episode_ || peer_left_during_stall_ || now - stall_since_ >= opts_.peer_expiry) {
        lossy_episode_ = true;
        r = transport_->publish_lossy(p.msg);
        lossy = r == transport::send_status::ok;
        if (lossy) {
          bump(counters_.sent_past_gone);
          report(fault::sent_past_gone,
                 "a subscriber took nothing for a whole peer expiry: data it cannot take is "
                 "dropped for it alone and counted in Stats::sent_past_gone");
        }
      }
      if (r != transport::send_status::ok) return;
    }
    bump(counters_.batches_sent);
    bump(counters_.bytes_sent, size);
    auto& t = topics_[p.topic];
    t.last_seq = p.last_seq;
    t.last_sent = now;
    outbox_->release(p.bytes);
    pending_.pop_front();
  }
}

// ---------------------------------------------------------------------------
// inbound: beacons

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
      report(fault::malformed_beacon,
             fmt::format("dropped a malformed beacon from {}", discovery::ipv4_to_string(source)));
      continue;
    }
    if (status == wire::decode_status::unsupported_version) {
      bump(counters_.unsupported_beacons);
      report(fault::unsupported_beacon,
             fmt::format("dropped a beacon of another protocol version from {}",
                         discovery::ipv4_to_string(source)));
      continue;
    }
    if (b.node_id == id_bytes_) continue;  // our own, looped back
    if (b.cluster_hash != cluster_hash_) {
      bump(counters_.foreign_cluster_beacons);
      continue;
    }
    if (b.goodbye()) {
      if (auto t = table_.goodbye(b.node_id, now)) apply_transition(*t, now);
      continue;
    }
    const discovery::peer_endpoint ep{discovery::ipv4_to_string(source), b.router_port, b.pub_port};
    if (auto t = table_.heard(b.node_id, b.epoch, ep, discovery::peer_source::beacon, now)) {
      apply_transition(*t, now);
    }
    touch_view(b.node_id, now);
  }
  return n;
}

// ---------------------------------------------------------------------------
// inbound: directed control messages

std::size_t node_impl::process_router(clock::time_point now) {
  std::size_t n = 0;
  wire::node_id_bytes from{};
  std::string ip;
  bool bad_identity = false;
  for (; n < max_inputs_per_round; ++n) {
    zmq::message_t frame;
    if (!transport_->receive_directed(from, frame, ip, bad_identity)) break;
    if (bad_identity) {
      bump(counters_.unknown_senders);
      report(fault::unknown_sender, "dropped a message to the ROUTER without a valid meshbus sender id");
      continue;
    }
    wire::control_msg msg;
    const auto status = wire::decode_control(
        wire::byte_view(static_cast<const std::uint8_t*>(frame.data()), frame.size()), msg);
    if (status == wire::decode_status::malformed) {
      bump(counters_.malformed_messages);
      report(fault::malformed_control, fmt::format("dropped a malformed control message from {}", ip));
      continue;
    }
    if (status == wire::decode_status::unsupported_version) {
      bump(counters_.unsupported_messages);
      report(fault::unsupported_control,
             fmt::format("dropped a control message of another protocol version from {}", ip));
      continue;
    }
    handle_control(from, msg, ip, now);
  }
  return n;
}

void node_impl::handle_control(const wire::node_id_bytes& from, wire::control_msg& msg,
                               const std::string& ip, clock::time_point now) {
  if (auto* hello = std::get_if<wire::hello_msg>(&msg)) {
    handle_hello(from, *hello, ip, now);
    return;
  }
  if (auto* ping = std::get_if<wire::ping_msg>(&msg)) {
    const auto* known = table_.find(from);
    discovery::peer_endpoint ep{ip.empty() && known != nullptr ? known->endpoint.host : ip,
                                ping->router_port, ping->pub_port};
    if (auto t = table_.heard(from, ping->epoch, ep, discovery::peer_source::hello, now)) {
      apply_transition(*t, now);
    }
    touch_view(from, now);
    merge_gossip(ping->peers, now);
    return;
  }
  if (std::holds_alternative<wire::goodbye_msg>(msg)) {
    if (auto t = table_.goodbye(from, now)) apply_transition(*t, now);
    return;
  }
  // The rest needs an established session.
  auto it = sessions_.find(from);
  if (it == sessions_.end()) {
    bump(counters_.unknown_senders);
    return;
  }
  auto& s = it->second;
  if (const auto* known = table_.find(from)) {
    (void)table_.heard(from, known->epoch, known->endpoint, discovery::peer_source::hello, now);
  }
  if (auto* subs = std::get_if<wire::subscriptions_msg>(&msg)) {
    if (subs->generation >= s.patterns_generation) {
      s.patterns_generation = subs->generation;
      s.patterns = std::move(subs->patterns);
      update_subscriber_view(s);
    }
  } else if (auto* ready = std::get_if<wire::ready_msg>(&msg)) {
    s.confirmed_generation = std::max(s.confirmed_generation, ready->generation);
  }
}

void node_impl::handle_hello(const wire::node_id_bytes& from, wire::hello_msg& m,
                             const std::string& ip, clock::time_point now) {
  if (m.cluster != opts_.cluster) {
    bump(counters_.foreign_cluster_beacons);
    return;
  }
  if (m.node_id != from) {
    bump(counters_.malformed_messages);
    report(fault::malformed_control, fmt::format("dropped a HELLO from {} whose node id does not match its sender", ip));
    return;
  }
  const auto* known = table_.find(from);
  const discovery::peer_endpoint ep{ip.empty() && known != nullptr ? known->endpoint.host : ip,
                                    m.router_port, m.pub_port};
  if (auto t = table_.heard(from, m.epoch, ep, discovery::peer_source::hello, now)) {
    apply_transition(*t, now);
  }
  auto it = sessions_.find(from);
  if (it == sessions_.end()) return;  // refused (goodbye tombstone)
  auto& s = it->second;
  s.hello_received = true;
  s.epoch = m.epoch;  // a peer first learned by gossip had no epoch yet
  s.name = m.name;
  s.metadata.clear();
  for (auto& [k, v] : m.metadata) s.metadata[k] = v;
  if (m.sub_generation >= s.patterns_generation) {
    s.patterns_generation = m.sub_generation;
    s.patterns = std::move(m.patterns);
  }
  if (!s.hello_sent) send_hello(s, now);
  if (!s.announced) {
    s.announced = true;
    s.joined_at = now;
    bump(counters_.peers_joined);
    {
      std::lock_guard lock(view_mu_);
      peer_view_[from] = info_of(s);
    }
    update_subscriber_view(s);
    announce(PeerEvent::Kind::joined, s);
    logger().info("node {}: peer {} '{}' joined at {}", id_.short_string(), short_id(from), s.name,
                  s.endpoint.host);
  } else {
    update_subscriber_view(s);
  }
  merge_gossip(m.peers, now);
  // A seed answering: from now on it is an ordinary peer.
  std::uint32_t ip4 = 0;
  if (discovery::parse_ipv4(ip, ip4)) {
    for (auto& seed : seeds_) {
      if (!seed.identified && seed.resolved == ip4 && seed.address.port == m.router_port) {
        seed.identified = from;
        transport_->close_seed(seed.endpoint);
      }
    }
  }
}

// ---------------------------------------------------------------------------
// inbound: data and subscriptions

std::size_t node_impl::process_sub() {
  std::size_t n = 0;
  for (; n < max_inputs_per_round && !dispatcher_->full(); ++n) {
    zmq::message_t msg;
    if (!transport_->receive_data(msg)) break;
    handle_data(std::move(msg));
  }
  return n;
}

void node_impl::handle_data(zmq::message_t&& msg) {
  const wire::byte_view frame(static_cast<const std::uint8_t*>(msg.data()), msg.size());
  std::string_view topic;
  wire::data_kind kind{};
  std::size_t body = 0;
  auto status = wire::decode_data_prefix(frame, topic, kind, body);
  if (status == wire::decode_status::ok) {
    if (kind == wire::data_kind::heartbeat) {
      wire::heartbeat hb;
      status = wire::decode_heartbeat(frame, body, hb);
      if (status == wire::decode_status::ok) {
        auto it = streams_.find(hb.publisher);
        if (it == streams_.end() || it->second.epoch != hb.epoch) return;
        auto st = it->second.topics.find(topic);
        if (st == it->second.topics.end()) return;
        if (const auto missing = reliability::accept_heartbeat(st->second, hb.last_seq)) {
          bump(counters_.gaps);
          bump(counters_.events_missing, missing);
          report(fault::sequence_gap, fmt::format("{} events missing at the tail of '{}' from {}",
                                                  missing, topic, short_id(hb.publisher)));
        }
        return;
      }
    } else {
      wire::batch_header h;
      status = wire::decode_batch(frame, body, h);
      if (status == wire::decode_status::ok) {
        bump(counters_.batches_received);
        bump(counters_.events_received, h.count);
        bump(counters_.bytes_received, msg.size());
        if (h.publisher == id_bytes_) return;
        auto subs = subs_.match(topic);
        if (!subs) {
          bump(counters_.events_unmatched, h.count);
          return;
        }
        auto& ps = streams_[h.publisher];
        if (ps.epoch != h.epoch) {
          if (h.epoch < ps.epoch) {  // a stale epoch of a restarted publisher
            bump(counters_.duplicates_dropped, h.count);
            return;
          }
          ps.epoch = h.epoch;
          ps.topics.clear();
        }
        auto st = ps.topics.find(topic);
        if (st == ps.topics.end()) st = ps.topics.emplace(std::string(topic), reliability::stream_position{}).first;
        const auto verdict = reliability::accept_batch(st->second, h.first_seq, h.count);
        if (verdict.missing != 0) {
          bump(counters_.gaps);
          bump(counters_.events_missing, verdict.missing);
          report(fault::sequence_gap, fmt::format("{} events missing before seq {} of '{}' from {}",
                                                  verdict.missing, h.first_seq, topic, short_id(h.publisher)));
        }
        if (verdict.duplicates != 0) bump(counters_.duplicates_dropped, verdict.duplicates);
        if (verdict.duplicates >= h.count) return;
        delivery d;
        d.subscriptions = std::move(subs);
        d.publisher = to_node_id(h.publisher);
        d.epoch = h.epoch;
        d.first_seq = h.first_seq;
        d.timestamp_ns = h.timestamp_ns;
        d.count = h.count;
        d.skip = verdict.duplicates;
        d.topic_size = static_cast<std::uint32_t>(topic.size());
        d.events_offset = h.events_offset;
        const auto hash = stream_hash(h.publisher, topic);
        d.frame = std::move(msg);
        dispatcher_->post(hash, std::move(d));
        return;
      }
    }
  }
  if (status == wire::decode_status::unsupported_version) {
    bump(counters_.unsupported_messages);
    report(fault::unsupported_data, "dropped a data frame of another protocol version");
  } else {
    bump(counters_.malformed_messages);
    report(fault::malformed_data, "dropped a malformed data frame");
  }
}

std::size_t node_impl::process_xpub() {
  std::size_t n = 0;
  for (; n < max_inputs_per_round; ++n) {
    zmq::message_t msg;
    if (!transport_->receive_subscription(msg)) break;
    wire::node_id_bytes who{};
    std::uint64_t generation = 0;
    if (!parse_sentinel(msg, who, generation)) continue;  // ordinary (un)subscriptions
    auto it = sessions_.find(who);
    if (it == sessions_.end()) {
      early_ready_[who] = std::max(early_ready_[who], generation);
      continue;
    }
    auto& s = it->second;
    s.ready_generation = std::max(s.ready_generation, generation);
    s.ready_seen = true;
    update_subscriber_view(s);
    send_ready(s);
  }
  return n;
}

void node_impl::send_ready(peer_session& s) {
  wire::ready_msg r;
  r.generation = s.ready_generation;
  std::vector<wire::pattern> compiled;
  for (const auto& text : s.patterns) {
    wire::pattern p;
    std::string err;
    if (wire::pattern::compile(text, p, err)) compiled.push_back(std::move(p));
  }
  for (const auto& [topic, st] : topics_) {
    if (r.positions.size() >= wire::max_positions) break;
    if (std::any_of(compiled.begin(), compiled.end(), [&](const auto& p) { return p.matches(topic); })) {
      r.positions.emplace_back(topic, st.last_seq);
    }
  }
  send_control(s.id, r);
}

// ---------------------------------------------------------------------------
// peers

void node_impl::apply_transition(const discovery::peer_transition& t, clock::time_point now) {
  switch (t.change) {
    case discovery::peer_change::joined:
      open_session(t, now);
      break;
    case discovery::peer_change::restarted: {
      close_session(t.id);
      open_session(t, now);
      break;
    }
    case discovery::peer_change::suspect: {
      bump(counters_.peers_suspected);
      auto it = sessions_.find(t.id);
      if (it != sessions_.end() && it->second.announced) {
        {
          std::lock_guard lock(view_mu_);
          if (auto v = peer_view_.find(t.id); v != peer_view_.end()) v->second.state = PeerState::suspect;
        }
        announce(PeerEvent::Kind::suspect, it->second);
        logger().info("node {}: peer {} '{}' is suspect", id_.short_string(), short_id(t.id), it->second.name);
      }
      break;
    }
    case discovery::peer_change::alive_again: {
      auto it = sessions_.find(t.id);
      if (it != sessions_.end() && it->second.announced) {
        {
          std::lock_guard lock(view_mu_);
          if (auto v = peer_view_.find(t.id); v != peer_view_.end()) v->second.state = PeerState::alive;
        }
        announce(PeerEvent::Kind::alive_again, it->second);
      }
      break;
    }
    case discovery::peer_change::left:
      // A goodbye (not an expiry) leaves data in flight worth reading.
      close_session(t.id, t.goodbye);
      break;
  }
}

node_impl::peer_session& node_impl::open_session(const discovery::peer_transition& t,
                                                 clock::time_point now) {
  auto& s = sessions_[t.id];
  s = peer_session{};
  s.id = t.id;
  s.epoch = t.epoch;
  s.endpoint = t.endpoint;
  if (auto e = early_ready_.find(t.id); e != early_ready_.end()) {
    s.ready_generation = e->second;
    s.ready_seen = true;
    early_ready_.erase(e);
  }
  transport_->connect_peer(t.id, t.endpoint.host, t.endpoint.router_port, t.endpoint.pub_port);
  send_hello(s, now);
  return s;
}

void node_impl::close_session(const wire::node_id_bytes& id, bool draining) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  {
    // peers() no longer lists the peer by the time the application hears "left".
    std::lock_guard lock(view_mu_);
    peer_view_.erase(id);
    subscriber_view_.erase(id);
  }
  if (it->second.announced) {
    bump(counters_.peers_left);
    announce(PeerEvent::Kind::left, it->second);
    logger().info("node {}: peer {} '{}' left", id_.short_string(), short_id(id), it->second.name);
  }
  if (stalled_) peer_left_during_stall_ = true;
  if (draining) {
    draining_.push_back({clock::now() + std::max(opts_.linger, 2 * opts_.beacon_interval),
                         transport_->pub_endpoint_of(id), id});
    transport_->disconnect_peer(id, true);
  } else {
    transport_->disconnect_peer(id);
    streams_.erase(id);
  }
  sessions_.erase(it);
  view_cv_.notify_all();
}

void node_impl::retire_drained(clock::time_point now) {
  for (auto it = draining_.begin(); it != draining_.end();) {
    if (now < it->until) {
      ++it;
      continue;
    }
    transport_->release_sub(it->endpoint);  // a no-op if a new peer took it over
    if (sessions_.count(it->id) == 0) streams_.erase(it->id);
    it = draining_.erase(it);
  }
}

wire::hello_msg node_impl::make_hello() const {
  wire::hello_msg h;
  h.node_id = id_bytes_;
  h.epoch = epoch_;
  h.cluster = opts_.cluster;
  h.name = opts_.name;
  h.router_port = router_port_;
  h.pub_port = pub_port_;
  h.metadata.assign(opts_.metadata.begin(), opts_.metadata.end());
  h.sub_generation = sub_generation_;
  h.patterns = subs_.patterns();
  h.peers = gossip_list();
  return h;
}

wire::bytes node_impl::make_beacon(std::uint8_t flags) const {
  wire::beacon b;
  b.flags = flags;
  b.node_id = id_bytes_;
  b.epoch = epoch_;
  b.cluster_hash = cluster_hash_;
  b.router_port = router_port_;
  b.pub_port = pub_port_;
  return wire::encode_beacon(b);
}

void node_impl::send_hello(peer_session& s, clock::time_point now) {
  send_control(s.id, make_hello());
  s.hello_sent = true;
  s.last_hello_sent = now;
}

void node_impl::send_control(const wire::node_id_bytes& id, const wire::control_msg& m) {
  const auto bytes = wire::encode_control(m);
  zmq::message_t msg(bytes.data(), bytes.size());
  if (transport_->send_to(id, msg) != transport::send_status::ok) {
    bump(counters_.control_send_failures);
    report(fault::control_send_failure,
           fmt::format("a control message to peer {} was refused (its queue is full)", short_id(id)));
  }
}

void node_impl::merge_gossip(const std::vector<wire::peer_address>& peers, clock::time_point now) {
  for (const auto& p : peers) {
    if (p.id == id_bytes_ || table_.find(p.id) != nullptr || p.router_port == 0 || p.pub_port == 0) continue;
    const discovery::peer_endpoint ep{p.host, p.router_port, p.pub_port};
    if (auto t = table_.heard(p.id, 0, ep, discovery::peer_source::gossip, now)) apply_transition(*t, now);
  }
}

std::vector<wire::peer_address> node_impl::gossip_list() const {
  std::vector<wire::peer_address> out;
  for (const auto& [id, s] : sessions_) {
    if (!s.hello_received || out.size() >= wire::max_gossip_peers) continue;
    const auto* e = table_.find(id);
    if (e == nullptr || e->state != discovery::peer_state::alive) continue;
    out.push_back({id, s.endpoint.host, s.endpoint.router_port, s.endpoint.pub_port});
  }
  return out;
}

PeerInfo node_impl::info_of(const peer_session& s) const {
  PeerInfo p;
  p.id = to_node_id(s.id);
  p.epoch = s.epoch;
  p.name = s.name;
  p.address = s.endpoint.host;
  p.router_port = s.endpoint.router_port;
  p.pub_port = s.endpoint.pub_port;
  const auto* e = table_.find(s.id);
  p.state = e != nullptr && e->state == discovery::peer_state::suspect ? PeerState::suspect : PeerState::alive;
  p.joined_at = s.joined_at;
  p.last_heard = e != nullptr ? e->last_heard : s.joined_at;
  p.metadata = s.metadata;
  p.subscriptions = s.patterns;
  return p;
}

void node_impl::touch_view(const wire::node_id_bytes& id, clock::time_point now) {
  std::lock_guard lock(view_mu_);
  if (auto v = peer_view_.find(id); v != peer_view_.end()) v->second.last_heard = now;
}

void node_impl::update_subscriber_view(const peer_session& s) {
  if (!s.announced) return;
  subscriber_view v;
  for (const auto& text : s.patterns) {
    wire::pattern p;
    std::string err;
    if (wire::pattern::compile(text, p, err)) v.patterns.push_back(std::move(p));
  }
  v.ready = s.ready_seen && s.ready_generation >= s.patterns_generation;
  {
    std::lock_guard lock(view_mu_);
    subscriber_view_[s.id] = std::move(v);
    if (auto pv = peer_view_.find(s.id); pv != peer_view_.end()) pv->second.subscriptions = s.patterns;
  }
  view_cv_.notify_all();
}

void node_impl::announce(PeerEvent::Kind kind, const peer_session& s) {
  PeerEvent ev{kind, info_of(s)};
  dispatcher_->post([this, ev = std::move(ev)] {
    PeerHandler h;
    {
      std::lock_guard lock(peer_handler_mu_);
      h = peer_handler_;
    }
    if (h) h(ev);
  });
  view_cv_.notify_all();
}

void node_impl::subscriptions_changed() {
  ++sub_generation_;
  auto next = make_sentinel(id_bytes_, sub_generation_);
  transport_->subscribe(next);
  if (!sentinel_.empty()) transport_->unsubscribe(sentinel_);
  sentinel_ = std::move(next);
  wire::subscriptions_msg m{sub_generation_, subs_.patterns()};
  for (auto& [id, s] : sessions_) {
    if (s.hello_sent) send_control(id, m);
  }
}

}  // namespace meshbus::detail
