// Answers trace requests; see trace_responder.hpp. The durable log is read first
// (it holds everything sent, write-ahead, within retention), then the history in
// memory, which adds what retention already took from the log (or everything, for a
// node without a log); an event found in both is sent once. Records are chunked by
// count and size; "done" goes last on the same topic, so it arrives after them. The
// looking and answering happen on a thread of their own, started with the first
// request, so a long log holds up no handler.
#include "lib/node/trace_responder.hpp"

#include <charconv>
#include <future>
#include <memory>
#include <set>
#include <tuple>

#include <fmt/format.h>

#include "lib/node/counters.hpp"
#include "lib/node/faults.hpp"
#include "lib/store/log_store.hpp"
#include "lib/wire/envelope.hpp"
#include "lib/wire/trace.hpp"

namespace meshbus::detail {
namespace {

wire::byte_view bytes_of(const wire::bytes& b) {
  return {b.data(), b.size()};
}

/// Which events belong to the flow `id`: its correlation id is `id`, or its event id
/// is (the flow's first event). A default id, "<publisher>-<epoch>-<sequence>", is
/// recognised without writing out every event's; it names the sequence-th event of
/// every topic the publisher sent on in that epoch, so it only counts for an event
/// without a correlation id of its own: the first event of a flow, whose id its
/// followers take as theirs.
class flow_matcher {
 public:
  explicit flow_matcher(std::string_view id) : id_(id) {
    // "<32 hex digits>-<epoch>-<sequence>"
    if (id.size() < 36 || id[32] != '-') return;
    for (std::size_t i = 0; i < 16; ++i) {
      std::uint8_t byte = 0;
      const auto [end, ec] = std::from_chars(id.data() + 2 * i, id.data() + 2 * i + 2, byte, 16);
      if (ec != std::errc{} || end != id.data() + 2 * i + 2) return;
      publisher_[i] = byte;
    }
    const auto rest = id.substr(33);
    const auto dash = rest.find('-');
    if (dash == std::string_view::npos) return;
    auto number = [](std::string_view text, std::uint64_t& out) {
      const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
      return !text.empty() && ec == std::errc{} && end == text.data() + text.size();
    };
    default_form_ = number(rest.substr(0, dash), epoch_) && number(rest.substr(dash + 1), sequence_);
  }

  bool matches(const wire::batch_header& h, std::uint64_t seq, const wire::event_fields& f) const {
    if (f.correlation_id == id_) return true;
    if (!f.event_id.empty()) return f.event_id == id_;
    return default_form_ && f.correlation_id.empty() && seq == sequence_ && h.epoch == epoch_ &&
           h.publisher == publisher_;
  }

 private:
  std::string_view id_;
  bool default_form_ = false;
  wire::node_id_bytes publisher_{};
  std::uint64_t epoch_ = 0;
  std::uint64_t sequence_ = 0;
};

std::string default_id(const wire::node_id_bytes& publisher, std::uint64_t epoch, std::uint64_t seq) {
  NodeId id;
  id.bytes = publisher;
  return fmt::format("{}-{}-{}", id.to_string(), epoch, seq);
}

/// What one request finds, bounded by max_trace_events; it stops looking when the
/// node stops.
struct findings {
  explicit findings(const std::atomic<bool>& stopping) : stopping_(stopping) {}

  const std::atomic<bool>& stopping_;
  std::vector<wire::trace_record> records;
  std::set<std::tuple<std::uint64_t, std::string, std::uint64_t>> seen;  ///< (epoch, topic, sequence)
  bool truncated = false;
  std::uint64_t damaged = 0;  ///< records of the log (or frames) that could not be read

  bool full() const { return truncated || stopping_.load(std::memory_order_acquire); }

  /// Looks through one data frame. `keep_seen`: remember what was taken, so the same
  /// event from the other source is not sent twice.
  void scan(wire::byte_view frame, const flow_matcher& flow, bool keep_seen) {
    std::string_view topic;
    wire::data_kind kind{};
    std::size_t body = 0;
    wire::batch_header h;
    if (wire::decode_data_prefix(frame, topic, kind, body) != wire::decode_status::ok ||
        kind != wire::data_kind::batch || wire::decode_batch(frame, body, h) != wire::decode_status::ok) {
      ++damaged;
      return;
    }
    wire::mp_reader r(frame.subspan(h.events_offset));
    wire::event_fields f;
    wire::byte_view payload;
    for (std::uint32_t i = 0; i < h.count; ++i) {
      if (!wire::read_event(r, payload, f)) {
        ++damaged;  // decode_batch() validated every event: not expected
        return;
      }
      const auto seq = h.first_seq + i;
      if (!flow.matches(h, seq, f)) continue;
      auto key = std::make_tuple(h.epoch, std::string(topic), seq);
      if (keep_seen) {
        seen.insert(key);
      } else if (seen.count(key) != 0) {
        continue;
      }
      if (records.size() >= max_trace_events) {
        truncated = true;
        return;
      }
      wire::trace_record rec;
      rec.event_id = f.event_id.empty() ? default_id(h.publisher, h.epoch, seq) : std::string(f.event_id);
      rec.causation_id = f.causation_id;
      rec.correlation_id = f.correlation_id;
      rec.topic = topic;
      rec.type_name = f.type_name;
      rec.type_version = f.type_version;
      rec.publisher = h.publisher;
      rec.epoch = h.epoch;
      rec.sequence = seq;
      rec.timestamp_ns = (f.flags & wire::event_flag::timestamp) != 0
                             ? f.timestamp_ns
                             : static_cast<std::int64_t>(h.timestamp_ns);
      records.push_back(std::move(rec));
    }
  }

  /// Every epoch of the durable log.
  void scan_log(const store::log_store& log, const flow_matcher& flow) {
    for (const auto& stream : log.topics()) {
      if (full()) return;
      if (stream.last_seq == 0) {
        ++damaged;  // a damaged topic record: its batches cannot be found
        continue;
      }
      log.read_epoch(stream.epoch, stream.topic, 0, [&](const store::history_batch& batch, bool bad) {
        if (bad) {
          ++damaged;
        } else {
          scan(batch.frame, flow, true);
        }
        return !full();
      });
    }
  }
};

}  // namespace

trace_responder::trace_responder(node_context& ctx, publish_reserved publish, history_snapshot snapshot)
    : ctx_(ctx), publish_(std::move(publish)), snapshot_(std::move(snapshot)), refilled_(clock::now()) {}

trace_responder::~trace_responder() {
  stop();
}

PublishResult trace_responder::request(std::string_view correlation_id, std::string_view reply_topic,
                                       std::uint64_t request_id) {
  if (correlation_id.empty() || correlation_id.size() > wire::max_short_field) {
    throw error(errc::invalid_argument, fmt::format("a trace needs a correlation id of 1 to {} bytes, not {}",
                                                    wire::max_short_field, correlation_id.size()));
  }
  if (!wire::is_trace_reply_topic(reply_topic)) {
    throw error(errc::invalid_argument, fmt::format("trace answers go to a topic under '{}', not '{}'",
                                                    wire::trace_reply_root, reply_topic.substr(0, 300)));
  }
  const auto payload =
      wire::encode_trace_request({std::string(correlation_id), std::string(reply_topic), request_id});
  return publish_(wire::trace_request_topic, bytes_of(payload), PublishOptions{});
}

bool trace_responder::admit(std::chrono::steady_clock::time_point now) {
  std::lock_guard lock(rate_mu_);
  const std::chrono::duration<double> since = now - refilled_;
  refilled_ = now;
  tokens_ = std::min(trace_request_burst, tokens_ + since.count() * trace_request_rate);
  if (tokens_ < 1.0) return false;
  tokens_ -= 1.0;
  return true;
}

// The history in memory belongs to the I/O thread: its frames are shared there and
// read here. Waits at most trace_history_wait, less when the node stops (it may not
// turn its loop again).
std::vector<transport::frame> trace_responder::history_frames(bool& taken) {
  auto promise = std::make_shared<std::promise<std::vector<transport::frame>>>();
  auto future = promise->get_future();
  ctx_.loop.run_on_loop([promise, snapshot = snapshot_] { promise->set_value(snapshot()); });
  const auto deadline = clock::now() + trace_history_wait;
  taken = false;
  while (!stopping() && clock::now() < deadline) {
    if (future.wait_for(std::chrono::milliseconds(50)) == std::future_status::ready) {
      taken = true;
      return future.get();
    }
  }
  return {};
}

bool trace_responder::send(const trace_job& job, const wire::trace_reply& reply) {
  // Answers are not part of the flow they describe: their own correlation and cause
  // is the request, so a later trace of the same flow never finds them.
  PublishOptions po;
  po.correlation_id = job.request_event_id;
  po.causation_id = job.request_event_id;
  try {
    return publish_(job.request.reply_topic, bytes_of(wire::encode_trace_reply(reply)), po) ==
           PublishResult::ok;
  } catch (const error&) {
    return false;  // the node is stopping
  }
}

void trace_responder::refuse(const trace_job& job, std::string note) {
  bump(ctx_.counters.trace_requests_refused);
  auto done = head_of(job);
  done.what = wire::trace_reply::kind::done;
  done.status = wire::trace_status::refused;
  done.note = std::move(note);
  (void)send(job, done);
}

wire::trace_reply trace_responder::head_of(const trace_job& job) const {
  wire::trace_reply head;
  head.request_id = job.request.request_id;
  head.node = ctx_.self.bytes;
  head.node_name = ctx_.opts.name.substr(0, wire::max_short_field);
  return head;
}

void trace_responder::answer(const Event& request) {
  trace_job job;
  const auto payload = request.payload();
  if (wire::decode_trace_request({reinterpret_cast<const std::uint8_t*>(payload.data()), payload.size()},
                                 job.request) != wire::decode_status::ok) {
    bump(ctx_.counters.malformed_trace_requests);
    ctx_.faults.report(
        fault::malformed_trace_request,
        fmt::format("a trace request from {} does not decode or names a reply topic outside '{}': "
                    "dropped",
                    request.publisher().short_string(), wire::trace_reply_root));
    return;
  }
  job.request_event_id = request.id();
  if (!admit(clock::now())) {
    return refuse(job,
                  fmt::format("more than {} trace requests a second: try again later", trace_request_rate));
  }
  {
    std::lock_guard lock(jobs_mu_);
    if (stopping_) return;
    if (jobs_.size() < max_waiting_traces) {
      jobs_.push_back(std::move(job));
      if (!scanner_.joinable()) scanner_ = std::thread([this] { run(); });
      jobs_cv_.notify_one();
      return;
    }
  }
  refuse(job, fmt::format("{} trace requests are already waiting: try again later", max_waiting_traces));
}

void trace_responder::stop() {
  {
    std::lock_guard lock(jobs_mu_);
    stopping_ = true;
    jobs_.clear();
  }
  stopping_flag_.store(true, std::memory_order_release);
  jobs_cv_.notify_all();
  if (scanner_.joinable() && scanner_.get_id() != std::this_thread::get_id()) scanner_.join();
}

void trace_responder::set_stopping() noexcept {
  stopping_flag_.store(true, std::memory_order_release);
}

void trace_responder::run() {
  for (;;) {
    trace_job job;
    {
      std::unique_lock lock(jobs_mu_);
      jobs_cv_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
      if (stopping_) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    serve(job);
  }
}

void trace_responder::serve(const trace_job& job) {
  const flow_matcher flow(job.request.correlation_id);
  findings found(stopping_flag_);
  if (ctx_.store != nullptr) found.scan_log(*ctx_.store, flow);
  bool history_taken = true;
  if (!found.full()) {
    for (const auto& frame : history_frames(history_taken)) {
      found.scan(frame.bytes_view(), flow, false);
      if (found.full()) break;
    }
  }
  if (stopping()) return;  // nobody would get the answer

  // Records in chunks, bounded by count and by bytes (and by the message size limit).
  const auto head = head_of(job);
  auto done = head;
  done.what = wire::trace_reply::kind::done;
  const std::size_t chunk_bytes = std::min(trace_chunk_bytes, ctx_.opts.max_message_bytes - 1536);
  auto chunk = head;
  std::size_t chunk_size = 0;
  bool sent_all = true;
  auto flush_chunk = [&] {
    if (chunk.records.empty()) return;
    if (send(job, chunk)) {
      done.count += chunk.records.size();
    } else {
      sent_all = false;
    }
    chunk.records.clear();
    chunk_size = 0;
  };
  for (auto& rec : found.records) {
    if (!sent_all) break;
    const auto size = wire::trace_record_size_bound(rec);
    if (!chunk.records.empty() &&
        (chunk.records.size() >= trace_chunk_records || chunk_size + size > chunk_bytes)) {
      flush_chunk();
    }
    chunk_size += size;
    chunk.records.push_back(std::move(rec));
  }
  if (sent_all) flush_chunk();

  std::vector<std::string> notes;
  if (found.truncated) {
    done.status = wire::trace_status::truncated;
    notes.push_back(fmt::format("more than {} events of the flow: only the first {} were sent",
                                max_trace_events, max_trace_events));
  }
  if (found.damaged > 0) {
    notes.push_back(fmt::format("{} damaged record(s) of the durable log could not be read", found.damaged));
  }
  if (!history_taken) notes.push_back("the history in memory could not be read in time");
  if (!sent_all) notes.push_back("the send queue stayed full: not every record was sent");
  if (done.status == wire::trace_status::complete && !notes.empty()) {
    done.status = wire::trace_status::incomplete;
  }
  for (const auto& n : notes) done.note += (done.note.empty() ? "" : "; ") + n;
  if (done.note.size() > wire::max_trace_note) done.note.resize(wire::max_trace_note);
  bump(ctx_.counters.trace_requests_answered);
  (void)send(job, done);
}

}  // namespace meshbus::detail
