// Request/reply; see requests.hpp. Handlers see the request as an Event (topic =
// service). A request served by this node itself takes no network, but the same
// path through a handler thread - or, from inside a handler, this very thread: a
// handler waiting for its own node's reply would otherwise wait for a thread it
// occupies itself.
#include "lib/node/requests.hpp"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <thread>

#include <fmt/format.h>

#include "lib/wire/topic.hpp"

namespace meshbus::detail {
namespace {

std::exception_ptr failure(errc code, const std::string& why) { return std::make_exception_ptr(error(code, why)); }

// The error a non-ok reply stands for (null for ok).
std::exception_ptr failure_of(const wire::reply_msg& m, std::string_view service, std::string_view where) {
  switch (m.status) {
    case wire::reply_status::ok: return nullptr;
    case wire::reply_status::no_service: return failure(errc::no_service, m.message);
    case wire::reply_status::rejected:
      return failure(errc::request_rejected, fmt::format("'{}' on {} rejected the request: {}", service, where, m.message));
    case wire::reply_status::handler_failed: break;
  }
  return failure(errc::remote_failure, fmt::format("'{}' on {} failed: {}", service, where, m.message));
}

std::size_t requester_hash(const wire::node_id_bytes& id) {
  std::size_t h = 0;
  for (const auto b : id) h = h * 131 + b;
  return h;
}

void check_service_name(std::string_view service) {
  if (auto err = wire::topic_error(service); !err.empty()) {
    throw error(errc::invalid_topic, "service names follow topic syntax: " + err);
  }
}

}  // namespace

requests::requests(node_context& ctx, control_sender& control, dispatcher& handlers, mesh_view& view,
                   std::function<bool(const wire::node_id_bytes&)> connected, std::function<void()> services_changed)
    : ctx_(ctx),
      control_(control),
      handlers_(handlers),
      view_(view),
      connected_(std::move(connected)),
      services_changed_(std::move(services_changed)) {}

// --- API threads ---------------------------------------------------------------

std::future<Reply> requests::request(std::string_view service, wire::byte_view payload,
                                     const RequestOptions& options) {
  auto promise = std::make_shared<std::promise<Reply>>();
  auto result = promise->get_future();
  start(
      service, payload, options,
      [promise](std::optional<Reply> reply, std::exception_ptr failed) {
        if (failed) {
          promise->set_exception(failed);
        } else {
          promise->set_value(std::move(*reply));
        }
      },
      false);
  return result;
}

void requests::request_async(std::string_view service, wire::byte_view payload, ReplyCallback done,
                             const RequestOptions& options) {
  if (!done) throw error(errc::invalid_argument, "request_async() needs a callback");
  start(service, payload, options, std::move(done), true);
}

void requests::request_on_io_thread(std::string_view service, wire::byte_view payload, ReplyCallback done,
                                    const RequestOptions& options) {
  if (!done) throw error(errc::invalid_argument, "request() needs a completion");
  start(service, payload, options, std::move(done), false);
}

void requests::start(std::string_view service, wire::byte_view payload, const RequestOptions& options,
                     completion done, bool on_handler_thread) {
  if (stopping_.load(std::memory_order_acquire)) {
    throw error(errc::stopped, fmt::format("request('{}') after stop(): create a new Node", service.substr(0, 64)));
  }
  check_service_name(service);
  auto finish = [this, done, on_handler_thread](std::optional<Reply> reply, std::exception_ptr failed) {
    if (failed) bump(ctx_.counters.requests_failed);
    if (on_handler_thread) {
      handlers_.post([done, reply = std::move(reply), failed]() mutable { done(std::move(reply), failed); });
    } else {
      done(std::move(reply), failed);
    }
  };
  bump(ctx_.counters.requests_sent);
  const auto candidates = instances(service);
  if (candidates.empty()) {
    finish(std::nullopt, failure(errc::no_service, fmt::format("no live instance serves '{}'", service)));
    return;
  }
  const auto& target = candidates[round_robin_.fetch_add(1, std::memory_order_relaxed) % candidates.size()];
  auto m = make_request(service, payload, options);
  if (target == ctx_.self.id) {
    serve_here(std::move(m), finish);
    return;
  }
  send(target.bytes, std::move(m), finish, clock::now() + options.timeout);
}

wire::request_msg requests::make_request(std::string_view service, wire::byte_view payload,
                                         const RequestOptions& options) const {
  wire::request_msg m;
  m.service = std::string(service);
  m.timeout_ms = static_cast<std::uint64_t>(std::max<std::int64_t>(options.timeout.count(), 0));
  m.type_name = std::string(options.type_name);
  m.type_version = options.type_version;
  m.payload.assign(reinterpret_cast<const char*>(payload.data()), payload.size());
  m.correlation_id = std::string(options.correlation_id);
  if (const Event* cause = current_event; cause != nullptr) {  // the same flow as the handled event
    m.causation_id = cause->id();
    if (m.correlation_id.empty()) {
      m.correlation_id = cause->correlation_id().empty() ? m.causation_id : std::string(cause->correlation_id());
    }
  }
  return m;
}

void requests::serve_here(wire::request_msg m, const completion& finish) {
  auto run = [this, m = std::move(m), finish]() mutable {
    auto reply = run_service(ctx_.self.bytes, m);
    if (auto failed = failure_of(reply, m.service, "this node")) {
      finish(std::nullopt, failed);
    } else {
      Reply r(std::move(reply.payload), std::move(reply.type_name), reply.type_version);
      r.responder = ctx_.self.id;
      finish(std::move(r), nullptr);
    }
  };
  if (current_event != nullptr) {
    run();
  } else {
    handlers_.post(requester_hash(ctx_.self.bytes), std::move(run));
  }
}

void requests::send(const wire::node_id_bytes& peer, wire::request_msg m, const completion& finish,
                    clock::time_point deadline) {
  ctx_.loop.run_on_loop([this, peer, m = std::move(m), finish, deadline]() mutable {
    const auto id = next_request_id_++;
    m.id = id;
    if (!connected_(peer)) {
      finish(std::nullopt, failure(errc::peer_gone, fmt::format("the instance of '{}' left", m.service)));
      return;
    }
    pending_.emplace(id, pending_request{peer, m.service, deadline, finish});
    control_.send(peer, m);
  });
}

// A service's own thread: its requests run here in arrival order, so handlers that
// wait for the service (on this node or through others) cannot hold it up.
class requests::service_worker {
 public:
  static constexpr std::size_t capacity = 65536;  // then: refused, "queue full"

  service_worker() : thread_([this] { run(); }) {}
  ~service_worker() { stop(); }
  service_worker(const service_worker&) = delete;
  service_worker& operator=(const service_worker&) = delete;

  /// False when full or stopped (the caller answers the request as failed).
  bool post(std::function<void()> job) {
    {
      std::lock_guard lock(mu_);
      if (stopped_ || jobs_.size() >= capacity) return false;
      jobs_.push_back(std::move(job));
    }
    cv_.notify_one();
    return true;
  }

  void stop() {
    {
      std::lock_guard lock(mu_);
      stopped_ = true;
    }
    cv_.notify_all();
    if (!thread_.joinable()) return;
    if (thread_.get_id() == std::this_thread::get_id()) {
      thread_.detach();  // unserved from its own request: it ends after this job
    } else {
      thread_.join();
    }
  }

 private:
  void run() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return stopped_ || !jobs_.empty(); });
        if (stopped_) return;  // what is left is answered by no one: the requesters time out
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      job();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stopped_ = false;
  std::thread thread_;
};

void requests::stop_workers() {
  std::vector<std::shared_ptr<service_worker>> workers;
  {
    std::lock_guard lock(services_mu_);
    for (auto& [name, s] : services_) {
      if (s.worker) workers.push_back(s.worker);
    }
  }
  for (auto& w : workers) w->stop();
}

Service requests::serve(std::string_view service, RequestHandler handler, const ServeOptions& options) {
  if (stopping_.load(std::memory_order_acquire)) throw error(errc::stopped, "serve() after stop()");
  if (!handler) throw error(errc::invalid_argument, "serve() needs a handler");
  check_service_name(service);
  Service s;
  {
    std::lock_guard lock(services_mu_);
    if (services_.count(service) != 0) {
      throw error(errc::invalid_argument,
                  fmt::format("'{}' is already served by this node; unserve() it first", service));
    }
    s.id = next_service_id_++;
    services_.emplace(std::string(service), served_service{s.id, std::move(handler),
                                                           options.own_thread ? std::make_shared<service_worker>()
                                                                              : nullptr});
  }
  services_changed_();
  return s;
}

void requests::unserve(Service s) {
  std::shared_ptr<service_worker> worker;
  {
    std::lock_guard lock(services_mu_);
    const auto it =
        std::find_if(services_.begin(), services_.end(), [&](const auto& kv) { return kv.second.id == s.id; });
    if (it == services_.end()) return;
    worker = std::move(it->second.worker);
    services_.erase(it);
  }
  if (worker) worker->stop();
  if (!stopping_.load(std::memory_order_acquire)) services_changed_();
}

std::vector<std::string> requests::service_names() const {
  std::lock_guard lock(services_mu_);
  std::vector<std::string> names;
  for (const auto& [name, s] : services_) names.push_back(name);
  return names;
}

std::vector<NodeId> requests::instances(std::string_view service) const {
  std::vector<NodeId> out;
  {
    std::lock_guard lock(services_mu_);
    if (services_.count(service) != 0) out.push_back(ctx_.self.id);
  }
  auto remote = view_.instances(service);
  out.insert(out.end(), remote.begin(), remote.end());
  return out;
}

// --- handler threads ---------------------------------------------------------------

wire::reply_msg requests::run_service(const wire::node_id_bytes& requester, const wire::request_msg& m) {
  wire::reply_msg reply;
  reply.id = m.id;
  RequestHandler handler;
  {
    std::lock_guard lock(services_mu_);
    if (const auto it = services_.find(m.service); it != services_.end()) handler = it->second.handler;
  }
  if (!handler) {
    reply.status = wire::reply_status::no_service;
    reply.message = fmt::format("'{}' is not served by node {}", m.service, ctx_.self.id.short_string());
    return reply;
  }
  const NodeId from = to_node_id(requester);
  const std::string request_id = fmt::format("{}-r{}", from.to_string(), m.id);
  Event::fields f;
  f.topic = m.service;
  f.payload = std::as_bytes(std::span(m.payload.data(), m.payload.size()));
  f.publisher = &from;
  f.sequence = m.id;
  f.timestamp_ns = static_cast<std::int64_t>(unix_ns());
  f.explicit_id = request_id;
  f.type_name = m.type_name;
  f.type_version = m.type_version;
  f.correlation_id = m.correlation_id;
  f.causation_id = m.causation_id;
  const Event request(f);
  try {
    const handling marker(request);
    auto r = handler(request);
    reply.payload = std::move(r.payload);
    reply.type_name = std::move(r.type_name);
    reply.type_version = r.type_version;
    bump(ctx_.counters.requests_served);
  } catch (const poison_event& e) {
    reply.status = wire::reply_status::rejected;
    reply.message = e.what();
  } catch (const std::exception& e) {
    reply.status = wire::reply_status::handler_failed;
    reply.message = e.what();
    ctx_.faults.report(fault::handler_exception,
                       fmt::format("the handler of service '{}' threw: {}", m.service, e.what()));
  } catch (...) {
    reply.status = wire::reply_status::handler_failed;
    reply.message = "unknown exception";
  }
  if (reply.message.size() > wire::max_header_value) reply.message.resize(wire::max_header_value);
  return reply;
}

// --- I/O thread ---------------------------------------------------------------

void requests::on_request(const wire::node_id_bytes& from, wire::request_msg&& m) {
  std::shared_ptr<service_worker> worker;
  {
    std::lock_guard lock(services_mu_);
    if (const auto it = services_.find(m.service); it != services_.end()) worker = it->second.worker;
  }
  if (!worker) {
    handlers_.post(requester_hash(from), [this, from, m = std::move(m)] {
      auto reply = run_service(from, m);
      ctx_.loop.run_on_loop([this, from, reply = std::move(reply)] { control_.send(from, reply); });
    });
    return;
  }
  const auto id = m.id;
  const auto service = m.service;
  auto job = [this, from, m = std::move(m)] {
    auto reply = run_service(from, m);
    ctx_.loop.run_on_loop([this, from, reply = std::move(reply)] { control_.send(from, reply); });
  };
  if (!worker->post(std::move(job))) {
    bump(ctx_.counters.requests_refused);
    wire::reply_msg reply;
    reply.id = id;
    reply.status = wire::reply_status::handler_failed;
    reply.message = fmt::format("'{}' on node {} has {} requests waiting: queue full", service,
                                ctx_.self.id.short_string(), service_worker::capacity);
    control_.send(from, reply);
  }
}

void requests::on_reply(const wire::node_id_bytes& from, wire::reply_msg&& m) {
  const auto it = pending_.find(m.id);
  if (it == pending_.end() || it->second.peer != from) {
    bump(ctx_.counters.late_replies);  // timed out already, or not ours
    return;
  }
  auto p = std::move(it->second);
  pending_.erase(it);
  if (auto failed = failure_of(m, p.service, "node " + short_id(from))) {
    p.done(std::nullopt, failed);
  } else {
    Reply r(std::move(m.payload), std::move(m.type_name), m.type_version);
    r.responder = to_node_id(from);
    p.done(std::move(r), nullptr);
  }
}

void requests::fail(const wire::node_id_bytes* peer, errc code, const std::string& why) {
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (peer != nullptr && it->second.peer != *peer) {
      ++it;
      continue;
    }
    auto done = std::move(it->second.done);
    const auto service = it->second.service;
    it = pending_.erase(it);
    done(std::nullopt, failure(code, fmt::format("'{}': {}", service, why)));
  }
}

void requests::expire(clock::time_point now) {
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (it->second.deadline > now) {
      ++it;
      continue;
    }
    auto done = std::move(it->second.done);
    const auto service = it->second.service;
    it = pending_.erase(it);
    done(std::nullopt, failure(errc::timeout, fmt::format("no reply from '{}' in time", service)));
  }
}

clock::time_point requests::next_due() const {
  auto next = clock::time_point::max();
  for (const auto& [id, p] : pending_) next = std::min(next, p.deadline);
  return next;
}

}  // namespace meshbus::detail
