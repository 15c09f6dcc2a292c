// meshbus::EventStore: streams in the node's durable log (table `events`, keys under
// "$es/", docs/store.md). One writer thread takes the appends waiting and commits
// them in one Node::transact: each is checked against its stream's head as the
// transaction sees it (earlier appends of the same commit included), written with
// its index entries, and published through the transaction's outbox. Refused
// appends (wrong expected version) do not abort the others; a failed commit fails
// every append of it. Built on Node's public API only.
#include "meshbus/event_store.hpp"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <fmt/format.h>

#include "meshbus/topic.hpp"

namespace meshbus {
namespace {

// --- keys -----------------------------------------------------------------------
// "$es/s/<stream>\0<version u64 BE>"  the event (record below)
// "$es/h/<stream>"                     the stream's version (u64 BE)
// "$es/p/<position u64 BE>"            "<stream>\0<version u64 BE>": the order of read_all
// "$es/n/<stream>"                     the stream's snapshot
// "$es/last"                           the last position (u64 BE)
constexpr std::string_view last_key = "$es/last";
constexpr std::size_t max_stream_bytes = 300;

void put_be(std::string& out, std::uint64_t v) {
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
std::uint64_t get_be(std::string_view in) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < 8 && i < in.size(); ++i) v = (v << 8) | static_cast<unsigned char>(in[i]);
  return v;
}
std::string be(std::uint64_t v) {
  std::string s;
  put_be(s, v);
  return s;
}
std::string stream_prefix(std::string_view stream) {
  std::string k = "$es/s/";
  k += stream;
  k.push_back('\0');
  return k;
}
std::string event_key(std::string_view stream, std::uint64_t version) {
  auto k = stream_prefix(stream);
  put_be(k, version);
  return k;
}
std::string head_key(std::string_view stream) { return std::string("$es/h/").append(stream); }
std::string position_key(std::uint64_t position) { return "$es/p/" + be(position); }
std::string snapshot_key(std::string_view stream) { return std::string("$es/n/").append(stream); }

// --- records --------------------------------------------------------------------
// An event: a MessagePack array [format, event_id, type_name, type_version, payload,
// correlation_id, causation_id, recorded_at (ns since the Unix epoch), position,
// headers as [[name, value], ...]]. A snapshot: [format, version, state_version, state].
constexpr std::uint32_t record_format = 1;

std::string encode_event_record(const NewEvent& e, std::uint64_t position, std::int64_t recorded_ns) {
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> pk(buf);
  pk.pack_array(10);
  pk.pack(record_format);
  pk.pack(e.event_id);
  pk.pack(e.type_name);
  pk.pack(e.type_version);
  pk.pack_bin(static_cast<std::uint32_t>(e.payload.size()));
  pk.pack_bin_body(e.payload.data(), static_cast<std::uint32_t>(e.payload.size()));
  pk.pack(e.correlation_id);
  pk.pack(e.causation_id);
  pk.pack(recorded_ns);
  pk.pack(position);
  pk.pack_array(static_cast<std::uint32_t>(e.headers.size()));
  for (const auto& [k, v] : e.headers) {
    pk.pack_array(2);
    pk.pack(k);
    pk.pack(v);
  }
  return std::string(buf.data(), buf.size());
}

msgpack::object_handle unpack_record(std::string_view bytes) {
  return msgpack::unpack(bytes.data(), bytes.size(), nullptr, nullptr,
                         msgpack::unpack_limit(4096, 4096, 256u << 20, 256u << 20, 0, 8));
}

/// The stored event under `key` ("$es/s/<stream>\0<version>"); throws error(storage)
/// naming it when it does not decode.
RecordedEvent decode_event_record(std::string_view key, std::string_view bytes) {
  RecordedEvent r;
  const auto body = key.substr(6);  // "<stream>\0<version u64 BE>"
  if (body.size() < 9) throw error(errc::storage, "an event store key is too short: the log is damaged");
  r.stream = std::string(body.substr(0, body.size() - 9));
  r.version = get_be(body.substr(body.size() - 8));
  try {
    const auto handle = unpack_record(bytes);
    const auto& o = handle.get();
    if (o.type != msgpack::type::ARRAY || o.via.array.size < 10) throw std::runtime_error("not an event record");
    const auto* f = o.via.array.ptr;
    if (f[0].as<std::uint32_t>() > record_format) throw std::runtime_error("written by a newer meshbus");
    r.event_id = f[1].as<std::string>();
    r.type_name = f[2].as<std::string>();
    r.type_version = f[3].as<std::uint32_t>();
    if (f[4].type != msgpack::type::BIN) throw std::runtime_error("the payload is not bytes");
    r.payload.assign(f[4].via.bin.ptr, f[4].via.bin.size);
    r.correlation_id = f[5].as<std::string>();
    r.causation_id = f[6].as<std::string>();
    r.recorded_at = std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::nanoseconds(f[7].as<std::int64_t>())));
    r.position = f[8].as<std::uint64_t>();
    if (f[9].type != msgpack::type::ARRAY) throw std::runtime_error("the headers are not a list");
    for (std::uint32_t i = 0; i < f[9].via.array.size; ++i) {
      const auto& h = f[9].via.array.ptr[i];
      if (h.type != msgpack::type::ARRAY || h.via.array.size != 2) throw std::runtime_error("a header is not a pair");
      r.headers.emplace_back(h.via.array.ptr[0].as<std::string>(), h.via.array.ptr[1].as<std::string>());
    }
  } catch (const std::exception& ex) {
    throw error(errc::storage, fmt::format("event {} of stream '{}' in the event store does not decode ({}): the "
                                           "record is damaged",
                                           r.version, r.stream, ex.what()));
  }
  return r;
}

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

std::string ExpectedVersion::describe() const {
  switch (kind) {
    case Kind::any: return "any version";
    case Kind::no_stream: return "no stream";
    case Kind::stream_exists: return "an existing stream";
    case Kind::exact: return version == 0 ? std::string("no stream") : fmt::format("version {}", version);
  }
  return "?";
}

wrong_expected_version::wrong_expected_version(std::string stream, ExpectedVersion expected, std::uint64_t actual)
    : error(errc::wrong_expected_version,
            fmt::format("stream '{}' is at version {}, not at {} as the append expected: nothing was appended; load "
                        "it again and decide anew",
                        stream, actual, expected.describe())),
      stream_(std::move(stream)),
      expected_(expected),
      actual_(actual) {}

// --- the store ------------------------------------------------------------------

class EventStore::impl {
 public:
  impl(Node& node, EventStoreOptions options) : node_(node), opts_(std::move(options)) {
    if (!node_.durable()) {
      throw error(errc::invalid_argument,
                  "an EventStore needs a node with a durable log: set Options::data_dir (or MESHBUS_DATA_DIR)");
    }
    if (opts_.max_commit_events == 0) opts_.max_commit_events = 1;
    if (opts_.max_pending_appends == 0) opts_.max_pending_appends = 1;
    if (!opts_.topic_prefix.empty()) {
      if (auto why = topic_error(opts_.topic_prefix + ".x"); !why.empty()) {
        throw error(errc::invalid_argument, fmt::format("EventStoreOptions::topic_prefix '{}': {}", opts_.topic_prefix, why));
      }
    }
    committed_position_ = last_position();
    writer_ = std::thread([this] { run(); });
  }

  ~impl() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    wake_.notify_all();
    if (writer_.joinable()) writer_.join();
  }

  std::future<std::uint64_t> submit(std::string_view stream, std::vector<NewEvent> events, ExpectedVersion expected) {
    const auto category = category_of(stream);
    if (events.empty()) {
      throw error(errc::invalid_argument, fmt::format("an append to stream '{}' has no events", stream));
    }
    check_types(stream, category, events);
    // The flow of the handler this is called from, if any (the writer thread has none).
    if (const Event* cause = handled_event(); cause != nullptr) {
      for (auto& e : events) {
        if (e.correlation_id.empty()) {
          e.correlation_id = cause->correlation_id().empty() ? std::string(cause->id()) : std::string(cause->correlation_id());
        }
        if (e.causation_id.empty()) e.causation_id = std::string(cause->id());
      }
    }
    request r{std::string(stream), topic_of(category), std::move(events), expected, {}};
    auto done = r.done.get_future();
    {
      std::unique_lock lock(mu_);
      room_.wait(lock, [&] { return queue_.size() < opts_.max_pending_appends || stopping_; });
      if (stopping_) throw error(errc::stopped, "the EventStore is being destroyed");
      queue_.push_back(std::move(r));
    }
    wake_.notify_one();
    return done;
  }

  void declare_category(std::string_view category, std::vector<std::string> type_names) {
    if (auto why = topic_error(category); !why.empty() || category.find('-') != std::string_view::npos) {
      throw error(errc::invalid_argument,
                  fmt::format("'{}' cannot be a category: {}", category, why.empty() ? "it contains '-'" : why));
    }
    std::lock_guard lock(categories_mu_);
    auto& types = categories_[std::string(category)];
    types.insert(type_names.begin(), type_names.end());
  }

  std::string topic_of(std::string_view category) const {
    return opts_.topic_prefix.empty() ? std::string(category) : opts_.topic_prefix + "." + std::string(category);
  }

  std::uint64_t version(std::string_view stream) const {
    (void)category_of(stream);
    const auto v = node_.stored(head_key(stream));
    return v ? get_be(*v) : 0;
  }

  std::vector<RecordedEvent> read(std::string_view stream, std::uint64_t from, std::size_t max, bool backward) const {
    (void)category_of(stream);
    std::vector<RecordedEvent> out;
    if (max == 0) return out;
    const auto prefix = stream_prefix(stream);
    const auto start = event_key(stream, backward ? from : std::max<std::uint64_t>(from, 1));
    // Pages of at most 1024, so a long stream is not held twice at once.
    std::string cursor = start;
    bool first_page = true;
    while (out.size() < max) {
      const std::size_t skip = first_page ? 0 : 1;  // later pages start at the last key seen
      const std::size_t page = std::min<std::size_t>(1024, max - out.size()) + skip;
      auto kv = node_.stored_range(prefix, cursor, page, backward);
      if (kv.size() <= skip) break;
      for (std::size_t i = skip; i < kv.size() && out.size() < max; ++i) {
        out.push_back(decode_event_record(kv[i].first, kv[i].second));
      }
      if (kv.size() < page) break;
      cursor = kv.back().first;
      first_page = false;
    }
    return out;
  }

  std::vector<RecordedEvent> read_all(std::uint64_t from, std::size_t max) const {
    std::vector<RecordedEvent> out;
    if (max == 0) return out;
    const auto index = node_.stored_range("$es/p/", position_key(std::max<std::uint64_t>(from, 1)), max);
    for (const auto& [key, where] : index) {
      std::string k = "$es/s/";
      k += where;
      const auto v = node_.stored(k);
      if (!v) {
        throw error(errc::storage, fmt::format("position {} of the event store names an event that is not there: the "
                                               "log is damaged",
                                               get_be(std::string_view(key).substr(6))));
      }
      out.push_back(decode_event_record(k, *v));
    }
    return out;
  }

  std::uint64_t last_position() const {
    const auto v = node_.stored(last_key);
    return v ? get_be(*v) : 0;
  }

  std::uint64_t wait_past(std::uint64_t position, std::chrono::milliseconds timeout) const {
    {
      std::unique_lock lock(stats_mu_);
      appended_.wait_for(lock, timeout, [&] { return committed_position_ > position; });
    }
    return last_position();
  }

  void save_snapshot(std::string_view stream, const Snapshot& s) {
    (void)category_of(stream);
    msgpack::sbuffer buf;
    msgpack::packer<msgpack::sbuffer> pk(buf);
    pk.pack_array(4);
    pk.pack(record_format);
    pk.pack(s.version);
    pk.pack(s.state_version);
    pk.pack_bin(static_cast<std::uint32_t>(s.state.size()));
    pk.pack_bin_body(s.state.data(), static_cast<std::uint32_t>(s.state.size()));
    const std::string record(buf.data(), buf.size());
    node_.transact([&](Transaction& tx) { tx.put(snapshot_key(stream), record); });
  }

  std::optional<Snapshot> snapshot(std::string_view stream) const {
    (void)category_of(stream);
    const auto v = node_.stored(snapshot_key(stream));
    if (!v) return std::nullopt;
    try {
      const auto handle = unpack_record(*v);
      const auto& o = handle.get();
      if (o.type != msgpack::type::ARRAY || o.via.array.size < 4) throw std::runtime_error("not a snapshot record");
      const auto* f = o.via.array.ptr;
      if (f[0].as<std::uint32_t>() > record_format) throw std::runtime_error("written by a newer meshbus");
      if (f[3].type != msgpack::type::BIN) throw std::runtime_error("the state is not bytes");
      Snapshot s;
      s.version = f[1].as<std::uint64_t>();
      s.state_version = f[2].as<std::uint32_t>();
      s.state.assign(f[3].via.bin.ptr, f[3].via.bin.size);
      return s;
    } catch (const std::exception& ex) {
      throw error(errc::storage, fmt::format("the snapshot of stream '{}' does not decode ({})", stream, ex.what()));
    }
  }

  EventStoreStats stats() const {
    std::lock_guard lock(stats_mu_);
    return stats_;
  }

  Node& node() const noexcept { return node_; }

 private:
  struct request {
    std::string stream;
    std::string topic;
    std::vector<NewEvent> events;
    ExpectedVersion expected;
    std::promise<std::uint64_t> done;
  };

  void check_types(std::string_view stream, const std::string& category, const std::vector<NewEvent>& events) const {
    std::lock_guard lock(categories_mu_);
    const auto declared = categories_.find(category);
    for (const auto& e : events) {
      if (e.type_name.empty()) {
        throw error(errc::invalid_argument, fmt::format("an event appended to stream '{}' has no type name", stream));
      }
      if (declared != categories_.end() && !declared->second.contains(e.type_name)) {
        throw error(errc::invalid_argument,
                    fmt::format("stream '{}' is of category '{}', which takes events of type {} only, not '{}'", stream,
                                category, fmt::join(declared->second, ", "), e.type_name));
      }
    }
  }

  void run() {
    for (;;) {
      std::vector<request> batch;
      {
        std::unique_lock lock(mu_);
        wake_.wait(lock, [&] { return !queue_.empty() || stopping_; });
        if (queue_.empty()) return;  // stopping, and nothing left
        std::size_t events = 0;
        while (!queue_.empty() && (batch.empty() || events + queue_.front().events.size() <= opts_.max_commit_events)) {
          events += queue_.front().events.size();
          batch.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
      }
      room_.notify_all();
      commit(batch);
    }
  }

  void commit(std::vector<request>& batch) {
    struct outcome {
      std::uint64_t version = 0;
      std::exception_ptr refused;
    };
    std::vector<outcome> out(batch.size());
    std::uint64_t appended_events = 0, refused = 0, committed_to = 0;
    std::exception_ptr failure;
    try {
      node_.transact([&](Transaction& tx) {
        std::map<std::string, std::uint64_t, std::less<>> heads;
        const auto last = tx.get(last_key);
        std::uint64_t position = last ? get_be(*last) : 0;
        const auto recorded = now_ns();
        for (std::size_t i = 0; i < batch.size(); ++i) {
          auto& r = batch[i];
          auto h = heads.find(r.stream);
          if (h == heads.end()) {
            const auto v = tx.get(head_key(r.stream));
            h = heads.emplace(r.stream, v ? get_be(*v) : 0).first;
          }
          if (!r.expected.admits(h->second)) {
            out[i].refused = std::make_exception_ptr(wrong_expected_version(r.stream, r.expected, h->second));
            ++refused;
            continue;
          }
          for (auto& e : r.events) {
            const auto version = ++h->second;
            ++position;
            if (e.event_id.empty()) e.event_id = fmt::format("{}@{}", r.stream, version);
            const auto key = event_key(r.stream, version);
            tx.put(key, encode_event_record(e, position, recorded));
            tx.put(position_key(position), std::string_view(key).substr(6));
            if (opts_.publish) publish(tx, r, e, version, position);
            ++appended_events;
          }
          tx.put(head_key(r.stream), be(h->second));
          out[i].version = h->second;
        }
        tx.put(last_key, be(position));
        committed_to = position;
      });
    } catch (...) {
      failure = std::current_exception();
    }
    {  // counted before anyone waiting learns the outcome
      std::lock_guard lock(stats_mu_);
      stats_.wrong_expected_version += refused;
      if (failure) {
        stats_.append_failures += batch.size() - refused;
      } else {
        committed_position_ = std::max(committed_position_, committed_to);
        ++stats_.commits;
        stats_.appends += batch.size() - refused;
        stats_.events_appended += appended_events;
      }
    }
    appended_.notify_all();
    for (std::size_t i = 0; i < batch.size(); ++i) {
      if (out[i].refused) {
        batch[i].done.set_exception(out[i].refused);
      } else if (failure) {
        batch[i].done.set_exception(failure);
      } else {
        batch[i].done.set_value(out[i].version);
      }
    }
  }

  void publish(Transaction& tx, const request& r, const NewEvent& e, std::uint64_t version, std::uint64_t position) {
    const auto v = std::to_string(version), p = std::to_string(position);
    std::vector<Header> headers;
    headers.reserve(e.headers.size() + 3);
    for (const auto& [k, val] : e.headers) headers.push_back({k, val});
    headers.push_back({"es-stream", r.stream});
    headers.push_back({"es-version", v});
    headers.push_back({"es-position", p});
    PublishOptions o;
    o.event_id = e.event_id;
    o.type_name = e.type_name;
    o.type_version = e.type_version;
    o.correlation_id = e.correlation_id;
    o.causation_id = e.causation_id;
    o.headers = headers;
    tx.publish(r.topic, e.payload, o);
  }

  Node& node_;
  EventStoreOptions opts_;
  std::mutex mu_;
  std::condition_variable wake_, room_;
  std::deque<request> queue_;
  bool stopping_ = false;
  mutable std::mutex categories_mu_;
  std::map<std::string, std::set<std::string>, std::less<>> categories_;
  mutable std::mutex stats_mu_;  // also guards committed_position_
  mutable std::condition_variable appended_;
  EventStoreStats stats_;
  std::uint64_t committed_position_ = 0;
  std::thread writer_;
};

EventStore::EventStore(Node& node, EventStoreOptions options) : impl_(std::make_unique<impl>(node, std::move(options))) {}
EventStore::~EventStore() = default;

std::uint64_t EventStore::append(std::string_view stream, std::span<const NewEvent> events, ExpectedVersion expected) {
  return impl_->submit(stream, std::vector<NewEvent>(events.begin(), events.end()), expected).get();
}
std::future<std::uint64_t> EventStore::append_async(std::string_view stream, std::vector<NewEvent> events,
                                                    ExpectedVersion expected) {
  return impl_->submit(stream, std::move(events), expected);
}
void EventStore::declare_category(std::string_view category, std::vector<std::string> type_names) {
  impl_->declare_category(category, std::move(type_names));
}
std::uint64_t EventStore::version(std::string_view stream) const { return impl_->version(stream); }
std::vector<RecordedEvent> EventStore::read(std::string_view stream, std::uint64_t from, std::size_t max) const {
  return impl_->read(stream, from, max, false);
}
std::vector<RecordedEvent> EventStore::read_backward(std::string_view stream, std::uint64_t from,
                                                     std::size_t max) const {
  return impl_->read(stream, from, max, true);
}
std::vector<RecordedEvent> EventStore::read_all(std::uint64_t from, std::size_t max) const {
  return impl_->read_all(from, max);
}
std::uint64_t EventStore::last_position() const { return impl_->last_position(); }
std::uint64_t EventStore::wait_past(std::uint64_t position, std::chrono::milliseconds timeout) const {
  return impl_->wait_past(position, timeout);
}
void EventStore::save_snapshot(std::string_view stream, const Snapshot& snapshot) {
  impl_->save_snapshot(stream, snapshot);
}
std::optional<Snapshot> EventStore::snapshot(std::string_view stream) const { return impl_->snapshot(stream); }
std::string EventStore::topic_of(std::string_view category) const { return impl_->topic_of(category); }
Node& EventStore::node() const noexcept { return impl_->node(); }
EventStoreStats EventStore::stats() const { return impl_->stats(); }

std::string EventStore::category_of(std::string_view stream) {
  const auto dash = stream.find('-');
  const auto bad = [&](std::string_view why) {
    std::string shown;  // printable, whatever the name holds
    for (const char c : stream.substr(0, 64)) {
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
        shown += fmt::format("\\x{:02x}", static_cast<unsigned char>(c));
      } else {
        shown.push_back(c);
      }
    }
    if (stream.size() > 64) shown += "...";
    return error(errc::invalid_argument,
                 fmt::format("'{}' is not a stream name: {} (a stream is named \"<category>-<id>\", as \"order-42\")",
                             shown, why));
  };
  if (dash == std::string_view::npos || dash == 0) throw bad("no category before a '-'");
  if (dash + 1 == stream.size()) throw bad("no id after the '-'");
  if (stream.size() > max_stream_bytes) throw bad(fmt::format("longer than {} bytes", max_stream_bytes));
  if (stream.find('\0') != std::string_view::npos) throw bad("it contains a NUL byte");
  const auto category = stream.substr(0, dash);
  if (category.front() == '$') throw bad("categories starting with '$' are meshbus's own");
  if (auto why = topic_error(category); !why.empty()) throw bad("its category is not a topic: " + why);
  return std::string(category);
}

}  // namespace meshbus
