// latency, both halves: the pingers (raw ZeroMQ PUB/SUB pairs and a meshbus Node whose pong
// handler sends the next ping) driven around the child process by run_latency(), and the
// echoers of the child process, which record the one-way time and send each ping back.
#include "latency.hpp"

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <span>

namespace meshbus_perf {

std::int64_t stamp_ping(void* payload, std::uint64_t index) noexcept {
  auto* bytes = static_cast<unsigned char*>(payload);
  std::memcpy(bytes, &index, sizeof index);
  const auto now = monotonic_ns();
  std::memcpy(bytes + sizeof index, &now, sizeof now);
  return now;
}

std::optional<ping_header> read_ping(const void* payload, std::size_t size) noexcept {
  if (size < min_latency_size) return std::nullopt;
  ping_header h;
  const auto* bytes = static_cast<const unsigned char*>(payload);
  std::memcpy(&h.index, bytes, sizeof h.index);
  std::memcpy(&h.sent_ns, bytes + sizeof h.index, sizeof h.sent_ns);
  return h;
}

std::string latency_summary::to_fields() const {
  return std::to_string(samples) + " " + std::to_string(p50) + " " + std::to_string(p99) + " " +
         std::to_string(p999) + " " + std::to_string(max) + " " + std::to_string(mean);
}

latency_summary latency_summary::from_fields(const std::vector<std::string_view>& fields, std::size_t first) {
  latency_summary s;
  s.samples = static_cast<std::uint64_t>(parse_field(fields, first));
  s.p50 = parse_field(fields, first + 1);
  s.p99 = parse_field(fields, first + 2);
  s.p999 = parse_field(fields, first + 3);
  s.max = parse_field(fields, first + 4);
  s.mean = parse_field(fields, first + 5);
  return s;
}

latency_summary summarize(std::vector<std::int64_t> ns) {
  latency_summary s;
  s.samples = ns.size();
  if (ns.empty()) return s;
  std::sort(ns.begin(), ns.end());
  auto rank = [&](double p) {
    const auto at = static_cast<std::size_t>(std::ceil(p * static_cast<double>(ns.size())));
    return ns[std::clamp<std::size_t>(at, 1, ns.size()) - 1];
  };
  s.p50 = rank(0.50);
  s.p99 = rank(0.99);
  s.p999 = rank(0.999);
  s.max = ns.back();
  double total = 0;
  for (const auto v : ns) total += static_cast<double>(v);
  s.mean = std::llround(total / static_cast<double>(ns.size()));
  return s;
}

std::vector<std::int64_t> raw_round_trips(zmq::socket_ref out, zmq::socket_ref in, std::size_t size,
                                          const run_spec& spec, const char* what, std::uint64_t& stray) {
  std::vector<std::int64_t> rtt_ns(spec.count);
  zmq::message_t reply;
  for (std::uint64_t i = 0; i < spec.warmup + spec.count; ++i) {
    zmq::message_t ping(size);
    const auto sent = stamp_ping(ping.data(), i);
    if (!out.send(ping, zmq::send_flags::none)) throw run_error("a raw ZeroMQ send failed");
    for (;;) {  // late probes may still come back: wait for this ping's echo
      if (!in.recv(reply, zmq::recv_flags::none)) {
        throw run_error("no echo of raw " + std::string(what) + " " + std::to_string(i) + " within 10 s");
      }
      const auto h = read_ping(reply.data(), reply.size());
      if (h && h->index == i) break;
      ++stray;
    }
    const auto now = monotonic_ns();
    if (i >= spec.warmup) rtt_ns[i - spec.warmup] = now - sent;
  }
  return rtt_ns;
}

namespace {

class raw_pinger final : public pinger {
 public:
  explicit raw_pinger(std::size_t size)
      : ping_(context_, zmq::socket_type::pub), pong_(context_, zmq::socket_type::sub), size_(size) {
    ping_.set(zmq::sockopt::linger, 0);
    ping_.bind("tcp://127.0.0.1:*");
    endpoint_ = ping_.get(zmq::sockopt::last_endpoint);
    pong_.set(zmq::sockopt::linger, 0);
    pong_.set(zmq::sockopt::rcvtimeo, static_cast<int>(milliseconds(echo_timeout).count()));
    pong_.set(zmq::sockopt::subscribe, "");
  }

  const char* transport() const noexcept override { return "raw"; }
  std::vector<std::string> echoer_args() const override { return {"--endpoint", endpoint_}; }

  void connect(perf_child&, const std::string& ready_text) override {
    pong_.connect(ready_text);
    // Slow joiner, both ways: probe until one comes back.
    const auto deadline = std::chrono::steady_clock::now() + setup_timeout;
    zmq::message_t reply;
    for (;;) {
      zmq::message_t probe(size_);
      (void)stamp_ping(probe.data(), probe_index);
      (void)ping_.send(probe, zmq::send_flags::dontwait);
      zmq::pollitem_t item{pong_.handle(), 0, ZMQ_POLLIN, 0};
      if (zmq::poll(&item, 1, 1ms) > 0 && pong_.recv(reply, zmq::recv_flags::dontwait)) return;
      if (std::chrono::steady_clock::now() >= deadline) {
        throw run_error("no raw ZeroMQ probe came back within 10 s");
      }
    }
  }

  std::vector<std::int64_t> ping_pong(const run_spec& spec) override {
    return raw_round_trips(ping_, pong_, size_, spec, "ping", stray_);
  }

  std::string details() const override { return "stray_echoes=" + std::to_string(stray_); }

 private:
  zmq::context_t context_{1};
  zmq::socket_t ping_;
  zmq::socket_t pong_;
  std::size_t size_;
  std::string endpoint_;
  std::uint64_t stray_ = 0;
};

class meshbus_pinger final : public pinger {
 public:
  meshbus_pinger(std::string cluster, const run_spec& spec)
      : cluster_(std::move(cluster)), size_(spec.size), handler_buffer_(spec.size, '\0'),
        node_(node_options(cluster_, "pinger", spec.handler_threads)) {
    (void)node_.subscribe(pong_topic, [this](const meshbus::Event& ev) { on_pong(ev); },
                          subscribe_options(spec.mode));
  }

  const char* transport() const noexcept override { return "meshbus"; }
  std::vector<std::string> echoer_args() const override { return {"--cluster", cluster_}; }

  void connect(perf_child&, const std::string&) override {
    // The echoer said "ready" once our pong subscription was in effect at its node.
    if (!node_.wait_for_subscribers(ping_topic, 1, setup_timeout)) {
      throw run_error("the echoer's subscription was not in effect within 10 s");
    }
  }

  std::vector<std::int64_t> ping_pong(const run_spec& spec) override {
    // The handler sees these through the ping it answers (publish() and delivery
    // both pass through locks).
    warmup_ = spec.warmup;
    end_ = spec.warmup + spec.count;
    rtt_ns_.assign(spec.count, 0);
    next_.store(0, std::memory_order_release);
    std::string first(size_, '\0');
    (void)stamp_ping(first.data(), 0);
    if (!send(first)) throw run_error("publish() of the first ping returned would_block");

    // The pong handler sends every further ping; watch it make progress.
    std::unique_lock lock(mu_);
    auto seen = next_.load(std::memory_order_acquire);
    auto last_progress = std::chrono::steady_clock::now();
    while (!finished_) {
      cv_.wait_for(lock, 100ms);
      const auto n = next_.load(std::memory_order_acquire);
      if (n != seen) {
        seen = n;
        last_progress = std::chrono::steady_clock::now();
      } else if (!finished_ && std::chrono::steady_clock::now() - last_progress >= echo_timeout) {
        throw run_error("no echo of meshbus ping " + std::to_string(n) + " within 10 s");
      }
    }
    if (!failure_.empty()) throw run_error(failure_);
    return std::move(rtt_ns_);  // the handler touches it no more: every ping was answered
  }

  std::string details() const override {
    return "stray_echoes=" + std::to_string(stray_.load()) + " " + node_counters(node_.stats());
  }

 private:
  bool send(std::string& payload) {
    return node_.publish(ping_topic, std::as_bytes(std::span(payload.data(), payload.size()))) ==
           meshbus::PublishResult::ok;
  }

  // Handler thread: an echo came back; take the round trip and send the next ping.
  void on_pong(const meshbus::Event& ev) {
    const auto now = monotonic_ns();
    const auto payload = ev.payload();
    const auto h = read_ping(payload.data(), payload.size());
    const auto expected = next_.load(std::memory_order_acquire);
    if (!h || h->index != expected || expected >= end_) {
      stray_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    if (expected >= warmup_) rtt_ns_[expected - warmup_] = now - h->sent_ns;
    const auto next = expected + 1;
    next_.store(next, std::memory_order_release);
    if (next < end_) {
      (void)stamp_ping(handler_buffer_.data(), next);
      if (send(handler_buffer_)) return;
      finish("publish() of a ping returned would_block");
      return;
    }
    finish({});
  }

  void finish(std::string failure) {
    {
      std::lock_guard lock(mu_);
      finished_ = true;
      failure_ = std::move(failure);
    }
    cv_.notify_all();
  }

  std::string cluster_;
  std::size_t size_;
  std::string handler_buffer_;  ///< handler thread only
  // Set before the first ping, read by the handler.
  std::uint64_t warmup_ = 0;
  std::uint64_t end_ = 0;
  std::vector<std::int64_t> rtt_ns_;    ///< handler thread, until every ping was answered
  std::atomic<std::uint64_t> next_{0};  ///< the ping whose echo is awaited
  std::atomic<std::uint64_t> stray_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool finished_ = false;  ///< under mu_
  std::string failure_;    ///< under mu_
  // Last: destroyed (stopped, handler thread joined) before what its handler uses.
  meshbus::Node node_;
};

/// One measured latency run: start the echoer (the replier), connect both ways,
/// ping-pong, collect the echoer's one-way statistics (the replier has none).
latency_outcome run_latency(pinger& p, const run_spec& spec) {
  const bool request = spec.mode == run_mode::request;
  const auto child =
      start_child(request ? replier_command : echoer_command, p.transport(), spec, p.echoer_args());
  p.connect(*child, child->expect("ready", setup_timeout));
  const auto cpu0 = process_cpu_ms();
  const auto t0 = monotonic_ns();
  auto rtt = p.ping_pong(spec);
  const auto cpu = cpu_field(cpu0) + " wall_ms=" + std::to_string((monotonic_ns() - t0) / 1'000'000);
  child->send("done");

  // echoer: "result <samples> <p50> <p99> <p999> <max> <mean> [key=value...]" (one-way, ns);
  // replier: "result [key=value...]"
  const auto result = child->expect("result", report_timeout);
  const auto fields = split(result, ' ');
  latency_outcome out;
  std::size_t counters_from = 0;
  if (!request) {
    out.one_way = latency_summary::from_fields(fields, 0);
    counters_from = 6;
  }
  const int status = child->wait_exit(exit_timeout);
  if (out.one_way && out.one_way->samples != spec.count) {
    throw run_error("the echoer timed " + std::to_string(out.one_way->samples) + " of " +
                    std::to_string(spec.count) + " pings");
  }
  out.round_trip = summarize(std::move(rtt));
  out.details = (request ? "requester: " : "pinger: ") + joined(p.details(), cpu);
  append_child_details(out.details, fields, counters_from, request ? "replier" : "echoer", status);
  return out;
}

// ---------------------------------------------------------------------------
// the echoer side (the child process)

/// One-way latencies of the measured pings, in the order of their sequence numbers.
/// One writer (the echoing thread); read after it stopped (join, or Node::stop()).
class one_way_log {
 public:
  explicit one_way_log(const run_spec& spec) : first_(spec.warmup), samples_(spec.count, -1) {}

  /// Echoing thread: a ping arrived at `now_ns`.
  void record(const void* payload, std::size_t size, std::int64_t now_ns) noexcept {
    const auto h = read_ping(payload, size);
    if (!h || h->index < first_ || h->index - first_ >= samples_.size()) return;  // probe or warm-up
    samples_[h->index - first_] = now_ns - h->sent_ns;
  }

  /// "samples p50 p99 p999 max mean" over the pings that arrived.
  std::string result() const {
    std::vector<std::int64_t> timed;
    timed.reserve(samples_.size());
    for (const auto v : samples_) {
      if (v >= 0) timed.push_back(v);
    }
    return summarize(std::move(timed)).to_fields();
  }

 private:
  const std::uint64_t first_;
  std::vector<std::int64_t> samples_;  ///< -1: not arrived
};

}  // namespace

latency_side measure_latency(transport t, const run_spec& spec) {
  const bool request = spec.mode == run_mode::request;
  auto run = [&](pinger& p) { return run_latency(p, spec); };
  if (t == transport::raw) {
    return run_transport<latency_outcome>(
        [&]() -> std::unique_ptr<pinger> {
          if (request) return make_raw_requester(spec);
          return std::make_unique<raw_pinger>(spec.size);
        },
        run);
  }
  return run_transport<latency_outcome>(
      [&]() -> std::unique_ptr<pinger> {
        if (request) return make_meshbus_requester(spec);
        return std::make_unique<meshbus_pinger>(next_cluster(), spec);
      },
      run);
}

std::string raw_echo(const child_config& c) {
  one_way_log log(c.spec);
  zmq::context_t context(1);
  zmq::socket_t ping(context, zmq::socket_type::sub);
  zmq::socket_t pong(context, zmq::socket_type::pub);
  ping.set(zmq::sockopt::rcvtimeo, 100);
  ping.set(zmq::sockopt::linger, 0);
  ping.set(zmq::sockopt::subscribe, "");
  ping.connect(c.endpoint);
  pong.set(zmq::sockopt::linger, 0);
  pong.bind("tcp://127.0.0.1:*");
  if (!write_line(1, "ready " + pong.get(zmq::sockopt::last_endpoint))) return {};
  std::uint64_t echoed = 0;
  const bool done = with_receiver(
      [&](const std::atomic<bool>& stop) {
        zmq::message_t msg;
        while (!stop.load(std::memory_order_relaxed)) {
          if (!ping.recv(msg, zmq::recv_flags::none)) continue;  // receive timeout: check stop
          log.record(msg.data(), msg.size(), monotonic_ns());
          if (!pong.send(msg, zmq::send_flags::none)) throw zmq::error_t();
          ++echoed;
        }
      },
      [] { return await_driver("done", report_timeout); });
  if (!done) return {};
  return log.result() + " echoed=" + std::to_string(echoed);
}

std::string meshbus_echo(const child_config& c) {
  one_way_log log(c.spec);
  meshbus::Node node(node_options(c.cluster, "echoer", c.spec.handler_threads));
  std::atomic<std::uint64_t> refused{0};
  (void)node.subscribe(
      ping_topic,
      [&](const meshbus::Event& ev) {
        const auto payload = ev.payload();
        log.record(payload.data(), payload.size(), monotonic_ns());
        if (node.publish(pong_topic, payload) != meshbus::PublishResult::ok) refused.fetch_add(1);
      },
      subscribe_options(c.spec.mode));
  // Ready once the pinger's pong subscription is in effect here: no echo can miss it.
  if (!node.wait_for_subscribers(pong_topic, 1, setup_timeout)) {
    throw std::runtime_error("the pinger's subscription was not in effect within 10 s");
  }
  if (!write_line(1, "ready")) return {};
  if (!await_driver("done", report_timeout)) return {};
  const auto s = node.stats();
  node.stop();  // joins the handler thread: every record() happened before
  return log.result() + " refused=" + std::to_string(refused.load()) + " " + node_counters(s);
}

}  // namespace meshbus_perf
