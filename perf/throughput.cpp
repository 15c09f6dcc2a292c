// throughput, both halves: the publishers (raw ZeroMQ PUB and a meshbus Node) driven
// around the child process by run_throughput(), and the subscribers of the child process,
// which count what arrives and report when the last event came. --mode typed publishes a
// typed event whose encoding is the payload size.
#include "throughput.hpp"

#include <algorithm>
#include <cstdio>
#include <span>

#include "meshbus/typed.hpp"

namespace meshbus_perf {
namespace {

/// The typed event of --mode typed, a MessagePack map of its three fields. `padding`
/// (the measured marker, then zeros) brings the encoding to the payload size.
struct perf_sample {
  static constexpr std::string_view event_name = "perf.sample";
  static constexpr std::uint32_t event_version = 1;
  static constexpr std::string_view event_topic = data_topic;
  std::uint64_t sequence = 0;
  std::int64_t sent_ns = 0;  ///< the publisher's CLOCK_MONOTONIC at publish()
  std::string padding;
  MSGPACK_DEFINE_MAP(sequence, sent_ns, padding)
};

/// MessagePack packs an integer in the fewest bytes it fits: from 2^32 on, 9. So
/// sequence numbers start there and every event encodes to the same size (so does
/// sent_ns, CLOCK_MONOTONIC being past 2^32 ns, 4.3 s after boot).
constexpr std::uint64_t first_sample_sequence = std::uint64_t{1} << 32;

/// A sample with `padding` bytes of padding (at least 1, the marker).
perf_sample make_sample(std::size_t padding) {
  perf_sample sample;
  sample.sequence = first_sample_sequence;
  sample.sent_ns = monotonic_ns();
  sample.padding = marked_payload(padding, measured_marker);
  return sample;
}

std::size_t encoded_sample_size(std::size_t padding) {
  return meshbus::encode_event(make_sample(padding)).size();
}

/// The padding whose sample encodes nearest to `size` bytes (at least
/// min_typed_size(); ties: the smaller). The encoding grows with the padding by one
/// byte per byte, and by a few more where the string header grows.
std::size_t sample_padding(std::size_t size) {
  const auto min_size = min_typed_size();
  if (size <= min_size) return 1;
  std::size_t padding = size - min_size + 1;  // too long by what the string header adds
  while (padding > 1 && encoded_sample_size(padding) > size) --padding;
  const auto below = encoded_sample_size(padding);
  const auto above = encoded_sample_size(padding + 1);
  return below < size && above - size < size - below ? padding + 1 : padding;
}

// ---------------------------------------------------------------------------
// the publisher side

/// One transport's publishing half. run_throughput() drives it around the shared
/// process and pipe plumbing.
class publisher {
 public:
  virtual ~publisher() = default;
  /// "raw" or "meshbus": the subscriber process takes the same name.
  virtual const char* transport() const noexcept = 0;
  /// How the subscriber reaches us (appended to its arguments).
  virtual std::vector<std::string> subscriber_args() const = 0;
  /// From "the subscriber is set up" to "nothing sent from now on can miss it".
  virtual void await_subscriber(perf_child& sub) = 0;
  /// Sends spec.count measured events of spec.size bytes; throws run_error.
  virtual void publish_measured(const run_spec& spec) = 0;
  /// After the send loop: waits for what the transport promises (meshbus: flush()).
  virtual void finish() {}
  /// Counters worth showing with --verbose, as "key=value ..." (may be empty).
  virtual std::string details() const { return {}; }
};

class raw_publisher final : public publisher {
 public:
  explicit raw_publisher(std::size_t size) : socket_(context_, zmq::socket_type::pub), size_(size) {
    socket_.set(zmq::sockopt::xpub_nodrop, 1);
    // A blocked send gives up after this long (the subscriber died): the run fails.
    socket_.set(zmq::sockopt::sndtimeo, 30'000);
    socket_.set(zmq::sockopt::linger, 0);
    socket_.bind("tcp://127.0.0.1:*");
    endpoint_ = socket_.get(zmq::sockopt::last_endpoint);
  }

  const char* transport() const noexcept override { return "raw"; }
  std::vector<std::string> subscriber_args() const override { return {"--endpoint", endpoint_}; }

  void await_subscriber(perf_child& sub) override {
    // Slow joiner: PUB drops what it sends before the subscription arrives, so send
    // marked warm-up messages until the subscriber says it got one.
    const auto warmup = marked_payload(size_, warmup_marker);
    const auto deadline = std::chrono::steady_clock::now() + setup_timeout;
    for (;;) {
      zmq::message_t msg(warmup.data(), warmup.size());
      (void)socket_.send(msg, zmq::send_flags::dontwait);
      std::string line;
      switch (sub.poll_line(line, 1ms)) {
        case meshbus::support::line_reader::status::line: (void)perf_child::rest_of(line, "warm"); return;
        case meshbus::support::line_reader::status::timeout:
          if (std::chrono::steady_clock::now() >= deadline) {
            throw run_error("the raw subscriber saw no warm-up message within 10 s");
          }
          break;
        case meshbus::support::line_reader::status::closed: throw run_error("the subscriber process ended during the warm-up");
      }
    }
  }

  void publish_measured(const run_spec& spec) override {
    const auto payload = marked_payload(spec.size, measured_marker);
    for (std::uint64_t i = 0; i < spec.count; ++i) {
      zmq::message_t msg(payload.data(), payload.size());
      if (!socket_.send(msg, zmq::send_flags::none)) {
        throw run_error("a raw ZeroMQ send stayed blocked for 30 s after " + std::to_string(i) + " events");
      }
    }
  }

 private:
  zmq::context_t context_{1};
  zmq::socket_t socket_;
  std::size_t size_;  ///< of the warm-up messages
  std::string endpoint_;
};

meshbus::Options publisher_options(const std::string& cluster, const run_spec& spec, const scratch_dir& dir) {
  auto o = node_options(cluster, "publisher", spec.handler_threads);
  o.data_dir = dir.path();  // empty unless --mode durable; Durability::always, the default
  return o;
}

class meshbus_publisher final : public publisher {
 public:
  meshbus_publisher(std::string cluster, const run_spec& spec)
      : cluster_(std::move(cluster)), mode_(spec.mode), data_dir_(spec.mode == run_mode::durable),
        node_(publisher_options(cluster_, spec, data_dir_)) {
    if (mode_ != run_mode::typed) return;
    // Set up before t0: finding the padding takes a few encodings.
    sample_ = make_sample(sample_padding(spec.size));
    if (const auto encoded = meshbus::encode_event(sample_).size(); encoded != spec.size) {
      throw run_error("a typed event encodes to " + std::to_string(encoded) + " bytes, not " +
                      std::to_string(spec.size));
    }
  }

  const char* transport() const noexcept override { return "meshbus"; }
  std::vector<std::string> subscriber_args() const override { return {"--cluster", cluster_}; }

  void await_subscriber(perf_child&) override {
    if (!node_.wait_for_subscribers(data_topic, 1, setup_timeout)) {
      throw run_error(
          "the subscriber's subscription was not in effect within 10 s (beacon discovery on "
          "loopback, HELLO, READY)");
    }
  }

  void publish_measured(const run_spec& spec) override {
    if (mode_ == run_mode::typed) {
      publish_typed(spec);
      return;
    }
    const auto payload = marked_payload(spec.size, measured_marker);
    const auto view = std::as_bytes(std::span(payload.data(), payload.size()));
    for (std::uint64_t i = 0; i < spec.count; ++i) {
      publish_one(i, [&] { return node_.publish(data_topic, view); });
    }
  }

  void finish() override {
    if (node_.flush(60s)) return;
    throw run_error(mode_ == run_mode::best_effort
                        ? "flush() did not hand everything to ZeroMQ within 60 s"
                        : "flush(): the subscriber did not acknowledge everything within 60 s");
  }

  /// Events the node's durable log has written (--mode durable).
  std::uint64_t events_written() const { return node_.stats().store_events_written; }

  std::string details() const override {
    const auto s = node_.stats();
    const double per_batch =
        s.batches_sent != 0 ? static_cast<double>(s.events_published) / static_cast<double>(s.batches_sent)
                            : 0.0;
    char text[96];
    std::snprintf(text, sizeof text, "events_per_batch=%.1f would_block=%llu ", per_batch,
                  static_cast<unsigned long long>(would_block_));
    std::string store;
    if (s.store_commits != 0) {
      char st[160];
      std::snprintf(st, sizeof st, "store_commits=%llu events_per_commit=%.1f ",
                    static_cast<unsigned long long>(s.store_commits),
                    static_cast<double>(s.store_events_written) / static_cast<double>(s.store_commits));
      store = st;
    }
    return text + store + node_counters(s);
  }

 private:
  // --mode typed: publish(event) encodes each event, in the measured loop.
  void publish_typed(const run_spec& spec) {
    for (std::uint64_t i = 0; i < spec.count; ++i) {
      sample_.sequence = first_sample_sequence + i;
      sample_.sent_ns = monotonic_ns();
      publish_one(i, [&] { return node_.publish(sample_); });
    }
  }

  /// Publishes event `index` with `publish` (send_policy block: would_block only
  /// after Options::send_timeout, 10 s, without space); gives up after 3 refusals.
  template <typename publish_call>
  void publish_one(std::uint64_t index, publish_call publish) {
    unsigned refusals = 0;
    while (publish() == meshbus::PublishResult::would_block) {
      ++would_block_;
      if (++refusals == 3) {
        throw run_error("publish() returned would_block for 30 s after " + std::to_string(index) + " events");
      }
    }
  }

  std::string cluster_;
  run_mode mode_;
  scratch_dir data_dir_;  ///< before node_: the node closes its log before the directory goes
  meshbus::Node node_;
  perf_sample sample_;  ///< --mode typed: the event, its padding sized to spec.size
  std::uint64_t would_block_ = 0;
};

/// One measured throughput run: start the subscriber, let the transport connect,
/// take t0, publish, collect the subscriber's result.
throughput_outcome run_throughput(publisher& pub, const run_spec& spec) {
  const auto sub = start_child(subscriber_command, pub.transport(), spec, pub.subscriber_args());
  (void)sub->expect("ready", setup_timeout);
  pub.await_subscriber(*sub);

  sub->send("go");
  const auto cpu0 = process_cpu_ms();
  const auto t0 = monotonic_ns();
  pub.publish_measured(spec);
  const auto sent = monotonic_ns();
  pub.finish();
  const auto finished = monotonic_ns();
  const auto cpu = cpu_field(cpu0);

  // "result <received> <bad> <t_first_ns> <t_last_ns> [key=value...]"
  const auto result = sub->expect("result", report_timeout);
  const auto fields = split(result, ' ');
  throughput_outcome out;
  out.received = static_cast<std::uint64_t>(parse_field(fields, 0));
  const auto bad = parse_field(fields, 1);
  const auto t_first = parse_field(fields, 2);
  const auto t_last = parse_field(fields, 3);
  const int status = sub->wait_exit(exit_timeout);
  if (bad != 0) throw run_error(std::to_string(bad) + " events arrived with a wrong size or marker");
  if (out.received == 0) throw run_error("the subscriber received nothing");
  if (t_last <= t0) throw run_error("the subscriber's clock reading precedes t0");
  out.seconds = seconds_between(t0, std::max(t_last, finished));
  out.send_seconds = seconds_between(t0, sent);
  out.flush_seconds = seconds_between(sent, finished);
  out.first_seconds = seconds_between(t0, t_first);
  out.details = "publisher: " + joined(pub.details(), cpu);
  append_child_details(out.details, fields, 4, "subscriber", status);
  return out;
}

// ---------------------------------------------------------------------------
// the subscriber side (the child process)

/// What the receiving thread counts; the watcher reads it. One writer per counter
/// (the raw receive thread, or the meshbus handler thread), so no read-modify-write.
class receive_tally {
 public:
  receive_tally(std::uint64_t expected, std::size_t size) : expected_(expected), size_(size) {}

  /// Receiving thread: one event arrived.
  void record(std::size_t size, char marker) noexcept {
    if (size != size_ || marker != measured_marker) {
      bad_.store(bad_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
      return;
    }
    const auto n = received_.load(std::memory_order_relaxed) + 1;
    if (n == 1) first_ns_.store(monotonic_ns(), std::memory_order_relaxed);
    if (n == expected_) last_ns_.store(monotonic_ns(), std::memory_order_relaxed);
    received_.store(n, std::memory_order_release);
  }

  std::uint64_t expected() const noexcept { return expected_; }
  std::uint64_t received() const noexcept { return received_.load(std::memory_order_acquire); }
  std::uint64_t bad() const noexcept { return bad_.load(std::memory_order_relaxed); }
  std::int64_t first_ns() const noexcept { return first_ns_.load(std::memory_order_relaxed); }
  /// When the last of `expected` arrived (valid once received() == expected()).
  std::int64_t last_ns() const noexcept { return last_ns_.load(std::memory_order_relaxed); }

 private:
  const std::uint64_t expected_;
  const std::size_t size_;
  std::atomic<std::uint64_t> received_{0};
  std::atomic<std::uint64_t> bad_{0};
  std::atomic<std::int64_t> first_ns_{0};
  std::atomic<std::int64_t> last_ns_{0};
};

/// Waits for "go" on stdin, then until every event arrived or none came for
/// idle_timeout. Returns the result line (without transport counters). When events
/// are missing, t_last is when the watcher (checking every millisecond) last saw
/// the count rise: at most about a millisecond late.
std::string watch_until_done(const receive_tally& tally) {
  if (!await_driver("go", go_timeout)) throw std::runtime_error("no 'go' from the publisher");
  auto seen = tally.received();
  auto last_progress = monotonic_ns();
  std::int64_t t_last = 0;
  for (;;) {
    std::this_thread::sleep_for(1ms);
    const auto n = tally.received();
    const auto now = monotonic_ns();
    if (n >= tally.expected()) {
      seen = n;
      t_last = tally.last_ns();
      break;
    }
    if (n != seen) {
      seen = n;
      last_progress = now;
    } else if (now - last_progress >= std::chrono::nanoseconds(idle_timeout).count()) {
      t_last = last_progress;
      break;
    }
  }
  return std::to_string(seen) + " " + std::to_string(tally.bad()) + " " + std::to_string(tally.first_ns()) +
         " " + std::to_string(t_last);
}

}  // namespace

throughput_side measure_throughput(transport t, const run_spec& spec) {
  auto run = [&](publisher& pub) { return run_throughput(pub, spec); };
  if (t == transport::raw) {
    return run_transport<throughput_outcome>([&] { return std::make_unique<raw_publisher>(spec.size); }, run);
  }
  return run_transport<throughput_outcome>(
      [&] { return std::make_unique<meshbus_publisher>(next_cluster(), spec); }, run);
}

throughput_side measure_log_append(const run_spec& spec) {
  if (spec.mode != run_mode::durable) throw std::logic_error("measure_log_append() is for --mode durable");
  return run_transport<throughput_outcome>(
      [&] { return std::make_unique<meshbus_publisher>(next_cluster(), spec); },
      [&](meshbus_publisher& pub) {
        const auto cpu0 = process_cpu_ms();
        const auto t0 = monotonic_ns();
        pub.publish_measured(spec);
        const auto sent = monotonic_ns();
        pub.finish();  // with nobody subscribed: until the log has written (and synced) everything
        const auto finished = monotonic_ns();
        const auto cpu = cpu_field(cpu0);
        throughput_outcome out;
        out.received = pub.events_written();
        if (out.received != spec.count) {
          throw run_error("the durable log wrote " + std::to_string(out.received) + " of " +
                          std::to_string(spec.count) + " events");
        }
        out.seconds = seconds_between(t0, finished);
        out.send_seconds = seconds_between(t0, sent);
        out.flush_seconds = seconds_between(sent, finished);
        out.details = joined(pub.details(), cpu);
        return out;
      });
}

std::size_t typed_size_near(std::size_t size) {
  return encoded_sample_size(sample_padding(size));
}

std::size_t min_typed_size() {
  return encoded_sample_size(1);
}

std::string raw_subscribe(const child_config& c) {
  receive_tally tally(c.spec.count, c.spec.size);
  zmq::context_t context(1);
  zmq::socket_t socket(context, zmq::socket_type::sub);
  socket.set(zmq::sockopt::rcvtimeo, 100);
  socket.set(zmq::sockopt::linger, 0);
  socket.set(zmq::sockopt::subscribe, "");
  socket.connect(c.endpoint);
  if (!write_line(1, "ready")) return {};
  return with_receiver(
      [&](const std::atomic<bool>& stop) {
        bool warm_reported = false;
        zmq::message_t msg;
        while (!stop.load(std::memory_order_relaxed)) {
          if (!socket.recv(msg, zmq::recv_flags::none)) continue;  // receive timeout: check stop
          const char marker = msg.size() != 0 ? *static_cast<const char*>(msg.data()) : '\0';
          if (marker == warmup_marker) {
            if (!warm_reported) warm_reported = write_line(1, "warm");
            continue;
          }
          tally.record(msg.size(), marker);
        }
      },
      [&] { return watch_until_done(tally); });
}

std::string meshbus_subscribe(const child_config& c) {
  receive_tally tally(c.spec.count, c.spec.size);
  meshbus::Node node(node_options(c.cluster, "subscriber", c.spec.handler_threads));
  if (c.spec.mode == run_mode::typed) {
    // subscribe<T>() decodes each event before the handler; the padding starts with the marker.
    (void)node.subscribe<perf_sample>(
        [&tally](const perf_sample& sample, const meshbus::Event& ev) {
          tally.record(ev.payload().size(), sample.padding.empty() ? '\0' : sample.padding[0]);
        },
        subscribe_options(c.spec.mode));
  } else {
    (void)node.subscribe(
        data_topic,
        [&tally](const meshbus::Event& ev) {
          const auto payload = ev.payload();
          tally.record(payload.size(), payload.empty() ? '\0' : static_cast<char>(payload[0]));
        },
        subscribe_options(c.spec.mode));
  }
  if (!write_line(1, "ready")) return {};
  auto result = watch_until_done(tally);
  const auto s = node.stats();
  node.stop();
  return result + " " + node_counters(s);
}

}  // namespace meshbus_perf
