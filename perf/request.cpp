// latency --mode request, both halves: request/reply one request at a time, timed here
// only. Raw ZeroMQ: a DEALER here, a ROUTER in the child that sends each request back to
// its sender; meshbus: request("perf.echo") here (or request_async with --request-api
// callback), serve("perf.echo") in the child.
#include <functional>
#include <future>
#include <span>

#include "latency.hpp"

namespace meshbus_perf {
namespace {

/// --mode request, raw ZeroMQ: a DEALER connected to the replier's ROUTER, which sends
/// every request back to its sender.
class raw_requester final : public pinger {
 public:
  explicit raw_requester(std::size_t size) : dealer_(context_, zmq::socket_type::dealer), size_(size) {
    dealer_.set(zmq::sockopt::linger, 0);
    dealer_.set(zmq::sockopt::rcvtimeo, static_cast<int>(milliseconds(echo_timeout).count()));
  }

  const char* transport() const noexcept override { return "raw"; }
  std::vector<std::string> echoer_args() const override { return {}; }

  void connect(perf_child&, const std::string& ready_text) override {
    dealer_.connect(ready_text);
    // A DEALER queues what it sends until the connection is up: one probe will do.
    zmq::message_t probe(size_);
    (void)stamp_ping(probe.data(), probe_index);
    if (!dealer_.send(probe, zmq::send_flags::none)) throw run_error("a raw ZeroMQ send failed");
    zmq::pollitem_t item{dealer_.handle(), 0, ZMQ_POLLIN, 0};
    zmq::message_t reply;
    if (zmq::poll(&item, 1, setup_timeout) == 0 || !dealer_.recv(reply, zmq::recv_flags::dontwait)) {
      throw run_error("no raw ZeroMQ probe came back within 10 s");
    }
  }

  std::vector<std::int64_t> ping_pong(const run_spec& spec) override {
    return raw_round_trips(dealer_, dealer_, size_, spec, "request", stray_);
  }

  std::string details() const override { return "stray_replies=" + std::to_string(stray_); }

 private:
  zmq::context_t context_{1};
  zmq::socket_t dealer_;
  std::size_t size_;
  std::uint64_t stray_ = 0;
};

/// --mode request, meshbus: request("perf.echo").get() on the calling thread for each
/// request; the replier's handler returns a copy of it.
class meshbus_requester final : public pinger {
 public:
  meshbus_requester(std::string cluster, const run_spec& spec)
      : cluster_(std::move(cluster)),
        size_(spec.size),
        node_(node_options(cluster_, "requester", spec.handler_threads)) {}

  const char* transport() const noexcept override { return "meshbus"; }
  std::vector<std::string> echoer_args() const override { return {"--cluster", cluster_}; }

  void connect(perf_child&, const std::string&) override {
    // The replier said "ready" once it served the service; this node learns of it
    // by discovery, HELLO and subscription updates. Nothing to wait on but the list.
    const auto deadline = std::chrono::steady_clock::now() + setup_timeout;
    while (node_.instances(echo_service).empty()) {
      if (std::chrono::steady_clock::now() >= deadline) {
        throw run_error("the replier's service was not among instances() within 10 s");
      }
      std::this_thread::sleep_for(1ms);
    }
  }

  std::vector<std::int64_t> ping_pong(const run_spec& spec) override {
    if (spec.api == request_api::callback) return chained(spec);
    std::vector<std::int64_t> rtt_ns(spec.count);
    std::string payload(size_, '\0');
    const auto view = std::as_bytes(std::span(payload.data(), payload.size()));
    meshbus::RequestOptions options;
    options.timeout = echo_timeout;
    for (std::uint64_t i = 0; i < spec.warmup + spec.count; ++i) {
      const auto sent = stamp_ping(payload.data(), i);
      meshbus::Reply reply;
      try {
        reply = node_.request(echo_service, view, options).get();
      } catch (const std::exception& e) {
        throw run_error("meshbus request " + std::to_string(i) + " failed: " + e.what());
      }
      const auto now = monotonic_ns();
      check_reply(reply, i);
      if (i >= spec.warmup) rtt_ns[i - spec.warmup] = now - sent;
    }
    return rtt_ns;
  }

  std::string details() const override {
    const auto s = node_.stats();
    return request_counters(s) + " " + node_counters(s);
  }

 private:
  void check_reply(const meshbus::Reply& reply, std::uint64_t i) const {
    const auto h = read_ping(reply.payload.data(), reply.payload.size());
    if (!h || h->index != i || reply.payload.size() != size_) {
      throw run_error("the reply to meshbus request " + std::to_string(i) + " is not a copy of it");
    }
  }

  // --request-api callback: request_async(); its completion (on a handler thread, or
  // the I/O thread with --handler-threads 0) takes the time and sends the next one,
  // as the latency mode's pong handler does. This thread only waits for the end.
  std::vector<std::int64_t> chained(const run_spec& spec) {
    struct chain_state {
      std::vector<std::int64_t> rtt_ns;
      std::string payload;
      std::uint64_t i = 0;
      std::int64_t sent = 0;
      std::promise<std::string> done;  ///< empty: all answered; else the failure
    } st;
    st.rtt_ns.assign(spec.count, 0);
    st.payload.assign(size_, '\0');
    meshbus::RequestOptions options;
    options.timeout = echo_timeout;
    const auto total = spec.warmup + spec.count;
    std::function<void()> send_next;
    send_next = [&] {
      st.sent = stamp_ping(st.payload.data(), st.i);
      node_.request_async(
          echo_service, std::as_bytes(std::span(st.payload.data(), st.payload.size())),
          [&](std::optional<meshbus::Reply> reply, std::exception_ptr failed) {
            const auto now = monotonic_ns();
            try {
              if (failed) std::rethrow_exception(failed);
              check_reply(*reply, st.i);
            } catch (const std::exception& e) {
              st.done.set_value("meshbus request " + std::to_string(st.i) + " failed: " + e.what());
              return;
            }
            if (st.i >= spec.warmup) st.rtt_ns[st.i - spec.warmup] = now - st.sent;
            if (++st.i == total) {
              st.done.set_value({});
              return;
            }
            send_next();
          },
          options);
    };
    auto result = st.done.get_future();
    send_next();
    if (const auto failure = result.get(); !failure.empty()) throw run_error(failure);
    return std::move(st.rtt_ns);
  }

  std::string cluster_;
  std::size_t size_;
  meshbus::Node node_;
};

}  // namespace

std::unique_ptr<pinger> make_raw_requester(const run_spec& spec) {
  return std::make_unique<raw_requester>(spec.size);
}

std::unique_ptr<pinger> make_meshbus_requester(const run_spec& spec) {
  return std::make_unique<meshbus_requester>(next_cluster(), spec);
}

std::string raw_reply(const child_config&) {
  zmq::context_t context(1);
  zmq::socket_t router(context, zmq::socket_type::router);
  router.set(zmq::sockopt::rcvtimeo, 100);
  router.set(zmq::sockopt::linger, 0);
  router.bind("tcp://127.0.0.1:*");
  if (!write_line(1, "ready " + router.get(zmq::sockopt::last_endpoint))) return {};
  std::uint64_t answered = 0;
  const bool done = with_receiver(
      [&](const std::atomic<bool>& stop) {
        zmq::message_t sender;
        zmq::message_t request;
        while (!stop.load(std::memory_order_relaxed)) {
          if (!router.recv(sender, zmq::recv_flags::none)) continue;  // receive timeout: check stop
          // [sender identity, request]: a message arrives whole, so the second frame is here.
          if (!router.recv(request, zmq::recv_flags::none) ||
              !router.send(sender, zmq::send_flags::sndmore) ||
              !router.send(request, zmq::send_flags::none)) {
            throw zmq::error_t();
          }
          ++answered;
        }
      },
      [] { return await_driver("done", report_timeout); });
  if (!done) return {};
  return "answered=" + std::to_string(answered);
}

std::string meshbus_reply(const child_config& c) {
  meshbus::Node node(node_options(c.cluster, "replier", c.spec.handler_threads));
  (void)node.serve(echo_service, [](const meshbus::Event& request) {
    const auto payload = request.payload();
    return meshbus::Reply(std::string(reinterpret_cast<const char*>(payload.data()), payload.size()));
  });
  if (!write_line(1, "ready")) return {};
  if (!await_driver("done", report_timeout)) return {};
  const auto s = node.stats();
  node.stop();
  return request_counters(s) + " " + node_counters(s);
}

}  // namespace meshbus_perf
