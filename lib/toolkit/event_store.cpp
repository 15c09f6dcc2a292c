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

#include "lib/toolkit/big_endian.hpp"

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

using detail::get_be64;
using detail::put_be64;
std::uint64_t get_be(std::string_view in) { return get_be64(in); }
std::string be(std::uint64_t v) { return detail::be64(v); }
std::string stream_prefix(std::string_view stream) {
  std::string k = "$es/s/";
  k += stream;
  k.push_back('\0');
  return k;
}
std::string event_key(std::string_view stream, std::uint64_t version) {
  auto k = stream_prefix(stream);
  put_be64(k, version);
  return k;
}
std::string head_key(std::string_view stream) { return std::string("$es/h/").append(stream); }
std::string position_key(std::uint64_t position) { return "$es/p/" + be(position); }
std::string snapshot_key(std::string_view stream) { return std::string("$es/n/").append(stream); }
std::string term_key(std::string_view stream) { return std::string("$es/t/").append(stream); }

// --- event fields (records and replication share them) ---------------------------
using packer = msgpack::packer<msgpack::sbuffer>;

/// What every form of an event holds, in this order: event_id, type_name,
/// type_version, payload (bin), correlation_id, causation_id, recorded_at (ns).
void pack_event_fields(packer& pk, const NewEvent& e, std::int64_t recorded_ns) {
  pk.pack(e.event_id);
  pk.pack(e.type_name);
  pk.pack(e.type_version);
  pk.pack_bin(static_cast<std::uint32_t>(e.payload.size()));
  pk.pack_bin_body(e.payload.data(), static_cast<std::uint32_t>(e.payload.size()));
  pk.pack(e.correlation_id);
  pk.pack(e.causation_id);
  pk.pack(recorded_ns);
}
/// The 7 fields pack_event_fields wrote, from `f`.
void unpack_event_fields(const msgpack::object* f, NewEvent& e, std::int64_t& recorded_ns) {
  e.event_id = f[0].as<std::string>();
  e.type_name = f[1].as<std::string>();
  e.type_version = f[2].as<std::uint32_t>();
  if (f[3].type != msgpack::type::BIN) throw std::runtime_error("the payload is not bytes");
  e.payload.assign(f[3].via.bin.ptr, f[3].via.bin.size);
  e.correlation_id = f[4].as<std::string>();
  e.causation_id = f[5].as<std::string>();
  recorded_ns = f[6].as<std::int64_t>();
}
void pack_headers(packer& pk, const std::vector<std::pair<std::string, std::string>>& headers) {
  pk.pack_array(static_cast<std::uint32_t>(headers.size()));
  for (const auto& [k, v] : headers) {
    pk.pack_array(2);
    pk.pack(k);
    pk.pack(v);
  }
}
std::vector<std::pair<std::string, std::string>> unpack_headers(const msgpack::object& o) {
  if (o.type != msgpack::type::ARRAY) throw std::runtime_error("the headers are not a list");
  std::vector<std::pair<std::string, std::string>> headers;
  for (std::uint32_t i = 0; i < o.via.array.size; ++i) {
    const auto& h = o.via.array.ptr[i];
    if (h.type != msgpack::type::ARRAY || h.via.array.size != 2) throw std::runtime_error("a header is not a pair");
    headers.emplace_back(h.via.array.ptr[0].as<std::string>(), h.via.array.ptr[1].as<std::string>());
  }
  return headers;
}

// --- ownership terms ------------------------------------------------------------
// "$es/t/<stream>": the term (u64 BE) and the owner (16 bytes) this instance knows of.
struct term_record {
  std::uint64_t term = 0;
  NodeId owner;
};
term_record decode_term(const std::optional<std::string>& v) {
  term_record r;
  if (!v || v->size() != 24) return r;
  r.term = get_be(*v);
  std::copy(v->begin() + 8, v->end(), r.owner.bytes.begin());
  return r;
}
std::string encode_term(const term_record& r) {
  auto s = be(r.term);
  s.append(reinterpret_cast<const char*>(r.owner.bytes.data()), r.owner.bytes.size());
  return s;
}

// --- between instances (docs/event_sourcing.md, "Replication") -------------------
constexpr std::string_view append_type = "meshbus.es.append";
constexpr std::string_view claim_type = "meshbus.es.claim";
constexpr std::string_view fetch_type = "meshbus.es.fetch";
constexpr std::string_view heads_type = "meshbus.es.heads";
constexpr std::uint8_t reply_ok = 0, reply_fenced = 1, reply_behind = 2;

/// An event as sent to a replica: [event_id, type, type_version, payload (bin),
/// correlation_id, causation_id, recorded_ns, [[name, value], ...]].
void pack_wire_event(packer& pk, const NewEvent& e, std::int64_t recorded_ns) {
  pk.pack_array(8);
  pack_event_fields(pk, e, recorded_ns);
  pack_headers(pk, e.headers);
}
struct wire_event {
  NewEvent event;
  std::int64_t recorded_ns = 0;
};
wire_event unpack_wire_event(const msgpack::object& o) {
  if (o.type != msgpack::type::ARRAY || o.via.array.size != 8) throw std::runtime_error("an event is not an array of 8");
  wire_event w;
  unpack_event_fields(o.via.array.ptr, w.event, w.recorded_ns);
  w.event.headers = unpack_headers(o.via.array.ptr[7]);
  if (w.event.type_name.empty() || w.event.event_id.empty()) throw std::runtime_error("an event without type or id");
  return w;
}
wire_event to_wire(const RecordedEvent& r) {
  wire_event w;
  w.event.event_id = r.event_id;
  w.event.type_name = r.type_name;
  w.event.type_version = r.type_version;
  w.event.payload = r.payload;
  w.event.correlation_id = r.correlation_id;
  w.event.causation_id = r.causation_id;
  w.event.headers = r.headers;
  w.recorded_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(r.recorded_at.time_since_epoch()).count();
  return w;
}
NodeId node_id_of(const msgpack::object& o) {
  if (o.type != msgpack::type::BIN || o.via.bin.size != 16) throw std::runtime_error("a node id is not 16 bytes");
  NodeId id;
  std::copy(o.via.bin.ptr, o.via.bin.ptr + 16, reinterpret_cast<char*>(id.bytes.data()));
  return id;
}
void pack_node_id(packer& pk, const NodeId& id) {
  pk.pack_bin(16);
  pk.pack_bin_body(reinterpret_cast<const char*>(id.bytes.data()), 16);
}

/// Rendezvous (highest random weight) score of `member` for `key`.
std::uint64_t rendezvous(const NodeId& member, std::string_view key) {
  std::uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a, then splitmix64's finalizer
  for (const auto b : member.bytes) h = (h ^ b) * 0x100000001b3ULL;
  for (const char c : key) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ULL;
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ULL;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebULL;
  h ^= h >> 31;
  return h;
}

// --- records --------------------------------------------------------------------
// An event: a MessagePack array [format, event_id, type_name, type_version, payload,
// correlation_id, causation_id, recorded_at (ns since the Unix epoch), position,
// headers as [[name, value], ...]]. A snapshot: [format, version, state_version, state].
constexpr std::uint32_t record_format = 1;

std::string encode_event_record(const NewEvent& e, std::uint64_t position, std::int64_t recorded_ns) {
  msgpack::sbuffer buf;
  packer pk(buf);
  pk.pack_array(10);
  pk.pack(record_format);
  pack_event_fields(pk, e, recorded_ns);
  pk.pack(position);
  pack_headers(pk, e.headers);
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
    NewEvent e;
    std::int64_t ns = 0;
    unpack_event_fields(f + 1, e, ns);
    r.event_id = std::move(e.event_id);
    r.type_name = std::move(e.type_name);
    r.type_version = e.type_version;
    r.payload = std::move(e.payload);
    r.correlation_id = std::move(e.correlation_id);
    r.causation_id = std::move(e.causation_id);
    r.recorded_at = std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::nanoseconds(ns)));
    r.position = f[8].as<std::uint64_t>();
    r.headers = unpack_headers(f[9]);
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
    if (!opts_.service.empty()) {
      if (auto why = topic_error(opts_.service + ".eventstore.x"); !why.empty()) {
        throw error(errc::invalid_argument, fmt::format("EventStoreOptions::service '{}': {}", opts_.service, why));
      }
      self_ = node_.id();
      members_service_ = opts_.service + ".eventstore";
      // Membership: the instances serving it. Replication: each instance's own address,
      // on a thread of its own so that commands waiting for an append never hold up the
      // replicas they wait for. Commands: the service and each instance's own address,
      // each on a thread of its own too, so that an event handler that sends a command
      // and waits for it (on the node's handler threads) never holds up the command it
      // waits for, here or at the owner it is forwarded to.
      served_.push_back(node_.serve(members_service_, [](const Event&) { return Reply("member"); }));
      served_.push_back(node_.serve(replication_address(self_),
                                    [this](const Event& e) { return on_replication(e); }, ServeOptions{.own_thread = true}));
      served_.push_back(node_.serve(command_address(self_), [this](const Event& e) { return on_command(e); },
                                    ServeOptions{.own_thread = true}));
      served_.push_back(node_.serve(opts_.service + ".command", [this](const Event& e) { return on_command(e); },
                                    ServeOptions{.own_thread = true}));
    }
    writer_ = std::thread([this] { run(); });
    if (replicated()) syncer_ = std::thread([this] { sync_loop(); });
  }

  ~impl() {
    for (const auto s : served_) node_.unserve(s);
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    wake_.notify_all();
    sync_cv_.notify_all();
    if (writer_.joinable()) writer_.join();
    if (syncer_.joinable()) syncer_.join();
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
      if (replicated()) {
        commit_replicated(batch);
      } else {
        commit(batch);
      }
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
            if (opts_.publish) publish(tx, r.stream, r.topic, e, version, position);
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

  void publish(Transaction& tx, const std::string& stream, const std::string& topic, const NewEvent& e,
               std::uint64_t version, std::uint64_t position) {
    const auto v = std::to_string(version), p = std::to_string(position);
    std::vector<Header> headers;
    headers.reserve(e.headers.size() + 3);
    for (const auto& [k, val] : e.headers) headers.push_back({k, val});
    headers.push_back({"es-stream", stream});
    headers.push_back({"es-version", v});
    headers.push_back({"es-position", p});
    PublishOptions o;
    o.event_id = e.event_id;
    o.type_name = e.type_name;
    o.type_version = e.type_version;
    o.correlation_id = e.correlation_id;
    o.causation_id = e.causation_id;
    o.headers = headers;
    tx.publish(topic, e.payload, o);
  }

  // --- ownership and replication ----------------------------------------------------

 public:
  bool replicated() const noexcept { return !opts_.service.empty() && opts_.replicas > 0; }

  std::vector<NodeId> members() const {
    if (opts_.service.empty()) return {node_.id()};
    auto m = node_.instances(members_service_);
    if (std::find(m.begin(), m.end(), self_) == m.end()) m.push_back(self_);
    std::sort(m.begin(), m.end());
    return m;
  }

  NodeId owner_of(std::string_view stream) const {
    (void)category_of(stream);
    const auto m = members();
    NodeId best = m.front();
    std::uint64_t best_score = 0;
    for (const auto& id : m) {
      const auto s = rendezvous(id, stream);
      if (s > best_score || (s == best_score && id < best)) {
        best = id;
        best_score = s;
      }
    }
    return best;
  }

  void on_request(std::string type_name, RequestHandler handler) {
    if (opts_.service.empty()) {
      throw error(errc::invalid_argument, "EventStore::on_request needs EventStoreOptions::service");
    }
    std::lock_guard lock(commands_mu_);
    if (!handler) {
      commands_.erase(type_name);
      return;
    }
    commands_[std::move(type_name)] = std::move(handler);
  }

  std::string command_service() const { return opts_.service.empty() ? std::string() : opts_.service + ".command"; }

  Reply request_to(const NodeId& instance, std::span<const std::byte> payload, const RequestOptions& options) const {
    if (opts_.service.empty()) {
      throw error(errc::invalid_argument, "EventStore::request_to needs EventStoreOptions::service");
    }
    return node_.request(command_address(instance), payload, options).get();
  }

 private:
  std::string replication_address(const NodeId& id) const { return members_service_ + ".r" + id.to_string(); }
  std::string command_address(const NodeId& id) const { return opts_.service + ".command.c" + id.to_string(); }

  std::vector<NodeId> other_members() const {
    auto m = members();
    m.erase(std::remove(m.begin(), m.end(), self_), m.end());
    return m;
  }

  Reply on_command(const Event& e) {
    RequestHandler h;
    {
      std::lock_guard lock(commands_mu_);
      if (const auto it = commands_.find(e.type_name()); it != commands_.end()) h = it->second;
    }
    if (!h) {
      throw poison_event(fmt::format("instance {} of '{}' has no handler for requests of type '{}'",
                                     self_.short_string(), opts_.service, e.type_name()));
    }
    return h(e);
  }

  // --- the replica's side (its own thread) ---

  Reply on_replication(const Event& e) {
    try {
      const auto bytes = std::string_view(reinterpret_cast<const char*>(e.payload().data()), e.payload().size());
      const auto handle = unpack_record(bytes);
      const auto& o = handle.get();
      if (e.type_name() == append_type) return replica_append(o);
      if (e.type_name() == claim_type) return replica_claim(o);
      if (e.type_name() == fetch_type) return replica_fetch(o);
      if (e.type_name() == heads_type) return replica_heads(o);
      throw std::runtime_error(fmt::format("unknown type '{}'", e.type_name()));
    } catch (const error&) {
      throw;  // the store failed (full disk): remote_failure at the owner
    } catch (const std::exception& ex) {
      {
        std::lock_guard lock(stats_mu_);
        ++stats_.replication_malformed;
      }
      throw poison_event(fmt::format("a replication request does not decode: {}", ex.what()));
    }
  }

  /// [[stream, term, owner, first_version, [event, ...]], ...] -> [[status, term, head], ...]
  Reply replica_append(const msgpack::object& o) {
    if (o.type != msgpack::type::ARRAY) throw std::runtime_error("not a list of streams");
    struct item {
      std::string stream;
      term_record term;
      std::uint64_t first = 0;
      std::vector<wire_event> events;
    };
    std::vector<item> items;
    for (std::uint32_t i = 0; i < o.via.array.size; ++i) {
      const auto& s = o.via.array.ptr[i];
      if (s.type != msgpack::type::ARRAY || s.via.array.size != 5) throw std::runtime_error("a stream entry is not 5 fields");
      item it;
      it.stream = s.via.array.ptr[0].as<std::string>();
      (void)category_of(it.stream);
      it.term.term = s.via.array.ptr[1].as<std::uint64_t>();
      it.term.owner = node_id_of(s.via.array.ptr[2]);
      it.first = s.via.array.ptr[3].as<std::uint64_t>();
      const auto& evs = s.via.array.ptr[4];
      if (evs.type != msgpack::type::ARRAY || it.first == 0) throw std::runtime_error("bad events or first version");
      for (std::uint32_t k = 0; k < evs.via.array.size; ++k) it.events.push_back(unpack_wire_event(evs.via.array.ptr[k]));
      items.push_back(std::move(it));
    }
    std::vector<std::array<std::uint64_t, 3>> replies(items.size());
    std::uint64_t written = 0, last = 0;
    node_.transact([&](Transaction& tx) {
      written = 0;
      for (std::size_t i = 0; i < items.size(); ++i) {
        auto& it = items[i];
        const auto known = decode_term(tx.get(term_key(it.stream)));
        const auto head = get_be_or(tx.get(head_key(it.stream)));
        if (it.term.term < known.term || (it.term.term == known.term && known.term != 0 && it.term.owner != known.owner)) {
          replies[i] = {reply_fenced, known.term, head};
          continue;
        }
        if (it.term.term > known.term) tx.put(term_key(it.stream), encode_term(it.term));
        if (it.first > head + 1) {
          replies[i] = {reply_behind, it.term.term, head};
          continue;
        }
        const auto new_head = write_events(tx, it.stream, it.first, it.events, head, nullptr, written);
        replies[i] = {reply_ok, it.term.term, new_head};
      }
      last = get_be_or(tx.get(last_key));
    });
    replicated_in(written, last);
    msgpack::sbuffer buf;
    msgpack::packer<msgpack::sbuffer> pk(buf);
    pk.pack(replies);
    return Reply(std::string(buf.data(), buf.size()));
  }

  /// [term, owner, [stream, ...]] -> [[accepted (0) or refused (1), term, head], ...]
  Reply replica_claim(const msgpack::object& o) {
    if (o.type != msgpack::type::ARRAY || o.via.array.size != 3) throw std::runtime_error("a claim is not 3 fields");
    term_record claim;
    claim.term = o.via.array.ptr[0].as<std::uint64_t>();
    claim.owner = node_id_of(o.via.array.ptr[1]);
    const auto streams = o.via.array.ptr[2].as<std::vector<std::string>>();
    for (const auto& s : streams) (void)category_of(s);
    std::vector<std::array<std::uint64_t, 3>> replies(streams.size());
    node_.transact([&](Transaction& tx) {
      for (std::size_t i = 0; i < streams.size(); ++i) {
        const auto known = decode_term(tx.get(term_key(streams[i])));
        const auto head = get_be_or(tx.get(head_key(streams[i])));
        if (claim.term > known.term) {
          tx.put(term_key(streams[i]), encode_term(claim));
          replies[i] = {0, claim.term, head};
        } else {
          replies[i] = {1, known.term, head};
        }
      }
    });
    msgpack::sbuffer buf;
    msgpack::packer<msgpack::sbuffer> pk(buf);
    pk.pack(replies);
    return Reply(std::string(buf.data(), buf.size()));
  }

  /// [stream, from, max] -> [event, ...] (versions from, from + 1, ...)
  Reply replica_fetch(const msgpack::object& o) {
    if (o.type != msgpack::type::ARRAY || o.via.array.size != 3) throw std::runtime_error("a fetch is not 3 fields");
    const auto stream = o.via.array.ptr[0].as<std::string>();
    const auto from = std::max<std::uint64_t>(o.via.array.ptr[1].as<std::uint64_t>(), 1);
    const auto max = std::min<std::uint64_t>(o.via.array.ptr[2].as<std::uint64_t>(), 1024);
    const auto events = read(stream, from, static_cast<std::size_t>(max), false);
    msgpack::sbuffer buf;
    msgpack::packer<msgpack::sbuffer> pk(buf);
    pk.pack_array(static_cast<std::uint32_t>(events.size()));
    for (const auto& r : events) {
      const auto w = to_wire(r);
      pack_wire_event(pk, w.event, w.recorded_ns);
    }
    return Reply(std::string(buf.data(), buf.size()));
  }

  /// [after, max] -> [[stream, head, term, owner], ...]: the streams this instance holds
  /// whose names sort after `after`, at most `max` (<= 1024) of them, in name order.
  Reply replica_heads(const msgpack::object& o) {
    if (o.type != msgpack::type::ARRAY || o.via.array.size != 2) throw std::runtime_error("a heads request is not 2 fields");
    const auto after = o.via.array.ptr[0].as<std::string>();
    const auto max = std::min<std::uint64_t>(o.via.array.ptr[1].as<std::uint64_t>(), 1024);
    const auto from = head_key(after);
    auto kv = node_.stored_range("$es/h/", from, static_cast<std::size_t>(max) + 1);
    if (!kv.empty() && !after.empty() && kv.front().first == from) kv.erase(kv.begin());
    if (kv.size() > max) kv.resize(static_cast<std::size_t>(max));
    msgpack::sbuffer buf;
    msgpack::packer<msgpack::sbuffer> pk(buf);
    pk.pack_array(static_cast<std::uint32_t>(kv.size()));
    for (const auto& [key, head] : kv) {
      const auto stream = std::string_view(key).substr(6);
      const auto term = decode_term(node_.stored(term_key(stream)));
      pk.pack_array(4);
      pk.pack(stream);
      pk.pack(get_be(head));
      pk.pack(term.term);
      pack_node_id(pk, term.owner);
    }
    return Reply(std::string(buf.data(), buf.size()));
  }

  static std::uint64_t get_be_or(const std::optional<std::string>& v) { return v ? get_be(*v) : 0; }

  /// Writes `events` as versions first, first + 1, ... of `stream` whose head is
  /// `head`, in `tx`; returns the new head. An event already there that is the same
  /// (id, recording time, type and payload) is kept (a resend); another one, and
  /// everything after it, is replaced (the uncommitted tail of a deposed owner). With `publish`, each new event goes out
  /// through the transaction's outbox.
  std::uint64_t write_events(Transaction& tx, const std::string& stream, std::uint64_t first,
                             const std::vector<wire_event>& events, std::uint64_t head, const std::string* publish_topic,
                             std::uint64_t& written) {
    std::uint64_t position = get_be_or(tx.get(last_key));
    std::uint64_t v = first;
    for (const auto& w : events) {
      if (v <= head) {
        const auto key = event_key(stream, v);
        const auto existing = tx.get(key);
        if (existing) {
          // The same event sent again? Ids alone cannot tell: "<stream>@<version>" is
          // what a deposed owner's uncommitted event at this version had too.
          const auto old = decode_event_record(key, *existing);
          const auto old_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(old.recorded_at.time_since_epoch());
          if (old.event_id == w.event.event_id && old_ns.count() == w.recorded_ns && old.payload == w.event.payload &&
              old.type_name == w.event.type_name) {
            ++v;
            continue;
          }
        }
        for (auto old = v; old <= head; ++old) {  // truncate the diverging tail
          const auto old_key = event_key(stream, old);
          if (const auto rec = tx.get(old_key)) tx.erase(position_key(decode_event_record(old_key, *rec).position));
          tx.erase(old_key);
        }
        head = v - 1;
      }
      ++position;
      const auto key = event_key(stream, v);
      tx.put(key, encode_event_record(w.event, position, w.recorded_ns));
      tx.put(position_key(position), std::string_view(key).substr(6));
      if (publish_topic != nullptr) publish(tx, stream, *publish_topic, w.event, v, position);
      ++written;
      head = std::max(head, v);
      ++v;
    }
    tx.put(head_key(stream), be(head));
    tx.put(last_key, be(position));
    return head;
  }

  void replicated_in(std::uint64_t written, std::uint64_t last) {
    {
      std::lock_guard lock(stats_mu_);
      stats_.replicated_in += written;
      committed_position_ = std::max(committed_position_, last);
    }
    appended_.notify_all();
  }

  // --- catching up with the others when an instance (re)joins (its own thread) ---

  /// Every half second: each other live instance not synced from since it (re)appeared
  /// is asked for its streams' heads, and what it holds beyond this instance is fetched.
  /// A replica that was down thus holds again what was appended meanwhile, also for
  /// streams nobody appends to any more (their owner's next append would catch it up
  /// otherwise).
  void sync_loop() {
    std::set<NodeId> synced;
    std::unique_lock lock(mu_);
    while (!stopping_) {
      lock.unlock();
      const auto others = other_members();
      for (auto it = synced.begin(); it != synced.end();) {
        it = std::find(others.begin(), others.end(), *it) == others.end() ? synced.erase(it) : std::next(it);
      }
      for (const auto& m : others) {
        if (synced.contains(m)) continue;
        try {
          if (sync_from(m)) synced.insert(m);
        } catch (const std::exception&) {
          // gone, timed out, or the log failed: tried again next round
        }
      }
      lock.lock();
      sync_cv_.wait_for(lock, std::chrono::milliseconds(500), [this] { return stopping_; });
    }
  }

  bool stopping() {
    std::lock_guard lock(mu_);
    return stopping_;
  }

  /// Catches up with `member`: true when every page of its heads was gone through.
  /// A stream is taken only where `member` knows a newer term than this instance, or
  /// the same term of an owner other than this instance (its events are then what
  /// that owner committed or sent), and only when its event at this instance's head
  /// is the same as here: events are added after a matching one, never replaced (the
  /// owner's next append settles a tail that differs).
  bool sync_from(const NodeId& member) {
    std::string after;
    for (;;) {
      if (stopping()) return false;
      msgpack::sbuffer buf;
      msgpack::packer<msgpack::sbuffer> pk(buf);
      pk.pack_array(2);
      pk.pack(after);
      pk.pack(std::uint64_t{1024});
      const auto got = ask_all({member}, heads_type, {std::string(buf.data(), buf.size())});
      if (!got[0]) return false;
      const auto handle = unpack_record(got[0]->payload);
      const auto& arr = handle.get();
      if (arr.type != msgpack::type::ARRAY) return false;
      for (std::uint32_t i = 0; i < arr.via.array.size; ++i) {
        const auto& h = arr.via.array.ptr[i];
        if (h.type != msgpack::type::ARRAY || h.via.array.size != 4) return false;
        const auto stream = h.via.array.ptr[0].as<std::string>();
        const auto their_head = h.via.array.ptr[1].as<std::uint64_t>();
        term_record theirs;
        theirs.term = h.via.array.ptr[2].as<std::uint64_t>();
        theirs.owner = node_id_of(h.via.array.ptr[3]);
        after = stream;
        try {
          (void)category_of(stream);
          sync_stream(member, stream, their_head, theirs);
        } catch (const error& e) {
          if (e.code_value() != errc::invalid_argument) throw;  // a name that is not a stream: passed over
        }
      }
      if (arr.via.array.size < 1024) return true;
    }
  }

  /// Versions `from` to `to` of `stream` as `member` holds them, in pages of 1024
  /// (fewer when it holds fewer); nullopt when it does not answer.
  std::optional<std::vector<wire_event>> fetch(const NodeId& member, const std::string& stream, std::uint64_t from,
                                               std::uint64_t to) {
    std::vector<wire_event> events;
    while (from <= to) {
      msgpack::sbuffer buf;
      msgpack::packer<msgpack::sbuffer> pk(buf);
      pk.pack_array(3);
      pk.pack(stream);
      pk.pack(from);
      pk.pack(std::uint64_t{1024});
      const auto got = ask_all({member}, fetch_type, {std::string(buf.data(), buf.size())});
      if (!got[0]) return std::nullopt;
      const auto handle = unpack_record(got[0]->payload);
      const auto& arr = handle.get();
      if (arr.type != msgpack::type::ARRAY || arr.via.array.size == 0) break;
      for (std::uint32_t k = 0; k < arr.via.array.size; ++k) events.push_back(unpack_wire_event(arr.via.array.ptr[k]));
      from += arr.via.array.size;
    }
    return events;
  }

  void sync_stream(const NodeId& member, const std::string& stream, std::uint64_t their_head, const term_record& theirs) {
    const auto mine = decode_term(node_.stored(term_key(stream)));
    const auto head = version(stream);
    if (their_head <= head) return;
    if (theirs.term < mine.term || (theirs.term == mine.term && (mine.term == 0 || mine.owner == self_))) return;
    // From this instance's last event on (to compare it), to theirs.
    auto fetched = fetch(member, stream, std::max<std::uint64_t>(head, 1), their_head);
    if (!fetched) return;
    auto events = std::move(*fetched);
    std::uint64_t written = 0, last = 0;
    node_.transact([&](Transaction& tx) {
      written = 0;
      const auto now_head = get_be_or(tx.get(head_key(stream)));
      const auto now_term = decode_term(tx.get(term_key(stream)));
      if (now_head != head || now_term.term != mine.term || now_term.owner != mine.owner) return;  // moved meanwhile
      std::vector<wire_event> after_head;
      if (head > 0) {
        if (events.empty()) return;
        const auto key = event_key(stream, head);
        const auto existing = tx.get(key);
        if (!existing) return;
        const auto old = decode_event_record(key, *existing);
        const auto& w = events.front();
        const auto old_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(old.recorded_at.time_since_epoch());
        if (old.event_id != w.event.event_id || old_ns.count() != w.recorded_ns || old.payload != w.event.payload) {
          return;  // the tails differ: left to the owner
        }
        after_head.assign(events.begin() + 1, events.end());
      } else {
        after_head = std::move(events);
      }
      if (after_head.empty()) return;
      write_events(tx, stream, head + 1, after_head, head, nullptr, written);
      if (theirs.term > now_term.term) tx.put(term_key(stream), encode_term(theirs));
      last = get_be_or(tx.get(last_key));
    });
    if (written > 0) {
      replicated_in(0, last);
      std::lock_guard lock(stats_mu_);
      stats_.synced_in += written;
    }
  }

  // --- the owner's side (the writer thread) ---

  using enough_fn = std::function<bool(const std::vector<std::optional<Reply>>&)>;
  /// Sends one request to each of `to` at once and waits for every answer (a reply or
  /// a failure: each request has the replication timeout) — or, once `enough` says the
  /// answers so far suffice, for the others a short grace more (so that a replica
  /// that is behind still says so and is caught up), not for a dead one's timeout.
  std::vector<std::optional<Reply>> ask_all(const std::vector<NodeId>& to, std::string_view type,
                                            const std::vector<std::string>& payloads,
                                            const enough_fn& enough = nullptr) {
    // Node::request's futures complete on the I/O thread: request_async would complete
    // on a handler thread, which the command waiting for this append may occupy.
    RequestOptions ro;
    ro.timeout = opts_.replication_timeout;
    ro.type_name = type;
    ro.type_version = 1;
    std::vector<std::future<Reply>> pending(to.size());
    std::vector<std::optional<Reply>> replies(to.size());
    std::vector<bool> done(to.size(), false);
    std::size_t left = to.size();
    for (std::size_t i = 0; i < to.size(); ++i) {
      const auto& bytes = payloads.size() == 1 ? payloads[0] : payloads[i];
      try {
        pending[i] = node_.request(replication_address(to[i]), std::as_bytes(std::span(bytes.data(), bytes.size())), ro);
      } catch (const std::exception&) {
        done[i] = true;
        --left;
      }
    }
    std::optional<std::chrono::steady_clock::time_point> grace_until;
    while (left > 0) {
      for (std::size_t i = 0; i < to.size(); ++i) {
        if (done[i] || pending[i].wait_for(std::chrono::seconds(0)) != std::future_status::ready) continue;
        done[i] = true;
        --left;
        try {
          replies[i] = pending[i].get();
        } catch (const std::exception&) {
          // timed out, gone, failed: no answer
        }
      }
      if (left == 0) break;
      const auto now = std::chrono::steady_clock::now();
      if (!grace_until && enough && enough(replies)) grace_until = now + std::chrono::milliseconds(50);
      if (grace_until && now >= *grace_until) break;
      for (std::size_t i = 0; i < to.size(); ++i) {
        if (!done[i]) {
          pending[i].wait_for(std::chrono::microseconds(200));
          break;
        }
      }
    }
    return replies;  // requests still open complete into futures nobody reads
  }

  static std::vector<std::array<std::uint64_t, 3>> triples(const Reply& r) {
    const auto handle = unpack_record(r.payload);
    return handle.get().as<std::vector<std::array<std::uint64_t, 3>>>();
  }

  error not_enough(const std::string& stream, std::size_t acknowledged, std::size_t others) const {
    return error(errc::not_enough_replicas,
                 fmt::format("stream '{}': {} of the {} other live instances of '{}' acknowledged, and "
                             "EventStoreOptions::replicas is {}: nothing was committed (events a replica did take "
                             "may still be adopted by the next owner)",
                             stream, acknowledged, others, opts_.service, opts_.replicas));
  }

  /// Makes this instance the owner of `stream` in a new term unless it already is:
  /// claims it at the other live instances (a replica accepts a higher term and from
  /// then on refuses the old owner: fencing), then catches up to the newest version
  /// any of them holds. Returns the term.
  std::uint64_t ensure_owner(const std::string& stream, const std::vector<NodeId>& others) {
    const auto known = decode_term(node_.stored(term_key(stream)));
    if (known.term > 0 && known.owner == self_) return known.term;
    std::uint64_t term = known.term + 1;
    for (int attempt = 0; attempt < 4; ++attempt) {
      msgpack::sbuffer buf;
      msgpack::packer<msgpack::sbuffer> pk(buf);
      pk.pack_array(3);
      pk.pack(term);
      pack_node_id(pk, self_);
      pk.pack(std::vector<std::string>{stream});
      const auto replies = ask_all(others, claim_type, {std::string(buf.data(), buf.size())});
      std::size_t accepted = 0;
      std::uint64_t higher = 0, best_head = 0;
      std::optional<NodeId> best;
      for (std::size_t i = 0; i < others.size(); ++i) {
        if (!replies[i]) continue;
        const auto t = triples(*replies[i]);
        if (t.size() != 1) continue;
        if (t[0][0] == 0) {
          ++accepted;
          if (t[0][2] > best_head) {
            best_head = t[0][2];
            best = others[i];
          }
        } else {
          higher = std::max(higher, t[0][1]);
        }
      }
      if (higher >= term) {
        term = higher + 1;
        continue;
      }
      if (accepted < opts_.replicas) throw not_enough(stream, accepted, others.size());
      // Catch up to the newest version a replica holds, then own it, in one commit.
      std::vector<wire_event> missing;
      const auto local_head = version(stream);
      if (best && best_head > local_head) {
        auto fetched = fetch(*best, stream, local_head + 1, best_head);
        if (!fetched) throw not_enough(stream, 0, others.size());
        missing = std::move(*fetched);
      }
      std::uint64_t written = 0, last = 0;
      const auto topic = topic_of(category_of(stream));
      node_.transact([&](Transaction& tx) {
        const auto now_known = decode_term(tx.get(term_key(stream)));
        if (now_known.term > term) {
          throw error(errc::not_owner, fmt::format("stream '{}' was claimed by instance {} in term {} meanwhile",
                                                   stream, now_known.owner.short_string(), now_known.term));
        }
        const auto head = get_be_or(tx.get(head_key(stream)));
        // Adopted events are published again (same ids): the old owner may have died
        // between its replicas' acknowledgement and its own commit.
        if (!missing.empty()) {
          write_events(tx, stream, local_head + 1, missing, head, opts_.publish ? &topic : nullptr, written);
        }
        tx.put(term_key(stream), encode_term({term, self_}));
        last = get_be_or(tx.get(last_key));
      });
      replicated_in(0, last);
      std::lock_guard lock(stats_mu_);
      ++stats_.takeovers;
      return term;
    }
    throw error(errc::not_owner,
                fmt::format("stream '{}': other instances kept claiming higher terms; try again", stream));
  }

  struct stream_plan {
    std::string stream;
    std::uint64_t term = 0;
    std::uint64_t first = 0;  // the first new version
    std::uint64_t head = 0;   // the version after the planned events
    std::vector<wire_event> events;
    std::exception_ptr failure;
    std::size_t acks = 0;
  };

  void commit_replicated(std::vector<request>& batch) {
    std::vector<std::uint64_t> versions(batch.size(), 0);
    std::vector<std::exception_ptr> failures(batch.size());
    std::vector<std::size_t> plan_of(batch.size(), 0);
    std::vector<stream_plan> plans;
    std::map<std::string, std::size_t, std::less<>> index;
    std::uint64_t refused = 0;
    const auto others = other_members();
    const auto recorded = now_ns();
    for (std::size_t i = 0; i < batch.size(); ++i) {
      auto& r = batch[i];
      auto found = index.find(r.stream);
      if (found == index.end()) {
        stream_plan p;
        p.stream = r.stream;
        try {
          if (others.size() < opts_.replicas) throw not_enough(r.stream, 0, others.size());
          p.term = ensure_owner(r.stream, others);
          p.head = version(r.stream);
          p.first = p.head + 1;
        } catch (...) {
          p.failure = std::current_exception();
        }
        found = index.emplace(r.stream, plans.size()).first;
        plans.push_back(std::move(p));
      }
      auto& p = plans[found->second];
      plan_of[i] = found->second;
      if (p.failure) {
        failures[i] = p.failure;
        continue;
      }
      if (!r.expected.admits(p.head)) {
        failures[i] = std::make_exception_ptr(wrong_expected_version(r.stream, r.expected, p.head));
        ++refused;
        continue;
      }
      for (auto& e : r.events) {
        ++p.head;
        if (e.event_id.empty()) e.event_id = fmt::format("{}@{}", r.stream, p.head);
        p.events.push_back({e, recorded});
      }
      versions[i] = p.head;
    }
    replicate(plans, others);
    // Commit here what enough replicas hold, unless the stream was claimed meanwhile.
    std::uint64_t written = 0, last = 0;
    std::exception_ptr store_failure;
    try {
      node_.transact([&](Transaction& tx) {
        written = 0;
        for (auto& p : plans) {
          if (p.failure || p.events.empty()) continue;
          if (p.acks < opts_.replicas) {
            p.failure = std::make_exception_ptr(not_enough(p.stream, p.acks, others.size()));
            continue;
          }
          const auto known = decode_term(tx.get(term_key(p.stream)));
          const auto head = get_be_or(tx.get(head_key(p.stream)));
          if (known.term != p.term || known.owner != self_ || head + 1 != p.first) {
            p.failure = std::make_exception_ptr(fenced(p.stream, known));
            continue;
          }
          const auto topic = topic_of(category_of(p.stream));
          write_events(tx, p.stream, p.first, p.events, head, opts_.publish ? &topic : nullptr, written);
        }
        last = get_be_or(tx.get(last_key));
      });
    } catch (...) {
      store_failure = std::current_exception();
    }
    std::uint64_t appends = 0, failed = 0, short_of = 0, fenced_count = 0;
    for (std::size_t i = 0; i < batch.size(); ++i) {
      if (!failures[i]) {
        const auto& p = plans[plan_of[i]];
        if (store_failure) {
          failures[i] = store_failure;
        } else if (p.failure) {
          failures[i] = p.failure;
        }
      }
      if (!failures[i]) {
        ++appends;
        continue;
      }
      try {
        std::rethrow_exception(failures[i]);
      } catch (const wrong_expected_version&) {
        continue;  // counted as refused
      } catch (const error& e) {
        if (e.code_value() == errc::not_enough_replicas) ++short_of;
        if (e.code_value() == errc::not_owner) ++fenced_count;
      } catch (...) {
      }
      ++failed;
    }
    {
      std::lock_guard lock(stats_mu_);
      stats_.wrong_expected_version += refused;
      stats_.not_enough_replicas += short_of;
      stats_.fenced += fenced_count;
      stats_.append_failures += failed - short_of - fenced_count;
      if (!store_failure && written > 0) ++stats_.commits;
      stats_.appends += appends;
      stats_.events_appended += written;
      committed_position_ = std::max(committed_position_, last);
    }
    appended_.notify_all();
    for (std::size_t i = 0; i < batch.size(); ++i) {
      if (failures[i]) {
        batch[i].done.set_exception(failures[i]);
      } else {
        batch[i].done.set_value(versions[i]);
      }
    }
  }

  error fenced(const std::string& stream, const term_record& known) const {
    return error(errc::not_owner,
                 fmt::format("stream '{}' was taken over by instance {} (term {}): this instance no longer owns it, "
                             "nothing was committed; send the command to its owner",
                             stream, known.owner.short_string(), known.term));
  }

  /// Sends the planned events to every other instance; a replica that is behind gets
  /// the events it misses first (from this store). Counts acknowledgements per plan;
  /// a fencing reply records the newer term here so this instance stops appending.
  void replicate(std::vector<stream_plan>& plans, const std::vector<NodeId>& others) {
    std::vector<std::size_t> active;
    for (std::size_t i = 0; i < plans.size(); ++i) {
      if (!plans[i].failure && !plans[i].events.empty()) active.push_back(i);
    }
    if (active.empty() || others.empty()) return;
    // Per instance, per plan: where to start (first, or where the replica stands).
    std::vector<std::map<std::size_t, std::uint64_t>> from(others.size());
    for (std::size_t m = 0; m < others.size(); ++m) {
      for (const auto i : active) from[m][i] = plans[i].first;
    }
    std::vector<std::size_t> targets(others.size());
    for (std::size_t m = 0; m < others.size(); ++m) targets[m] = m;
    for (int round = 0; round < 3 && !targets.empty(); ++round) {
      std::vector<NodeId> to;
      std::vector<std::string> payloads;
      std::vector<std::vector<std::size_t>> sent;  // plan indices, per target
      for (const auto m : targets) {
        msgpack::sbuffer buf;
        msgpack::packer<msgpack::sbuffer> pk(buf);
        pk.pack_array(static_cast<std::uint32_t>(from[m].size()));
        std::vector<std::size_t> ids;
        for (const auto& [i, start] : from[m]) {
          const auto& p = plans[i];
          std::vector<wire_event> events;
          if (start < p.first) {  // the replica is behind: what it misses, from here
            for (const auto& r : read(p.stream, start, static_cast<std::size_t>(p.first - start), false)) {
              events.push_back(to_wire(r));
            }
          }
          pk.pack_array(5);
          pk.pack(p.stream);
          pk.pack(p.term);
          pack_node_id(pk, self_);
          pk.pack(start);
          pk.pack_array(static_cast<std::uint32_t>(events.size() + p.events.size()));
          for (const auto& w : events) pack_wire_event(pk, w.event, w.recorded_ns);
          for (const auto& w : p.events) pack_wire_event(pk, w.event, w.recorded_ns);
          ids.push_back(i);
        }
        to.push_back(others[m]);
        payloads.emplace_back(buf.data(), buf.size());
        sent.push_back(std::move(ids));
      }
      // Enough: every plan has its acknowledgements among the answers so far.
      const auto enough = [&](const std::vector<std::optional<Reply>>& so_far) {
        std::map<std::size_t, std::size_t> acks;
        for (std::size_t t = 0; t < so_far.size(); ++t) {
          if (!so_far[t]) continue;
          try {
            const auto answer = triples(*so_far[t]);
            for (std::size_t k = 0; k < sent[t].size() && k < answer.size(); ++k) {
              if (answer[k][0] == reply_ok) ++acks[sent[t][k]];
            }
          } catch (const std::exception&) {
          }
        }
        for (const auto i : active) {
          if (plans[i].acks + acks[i] < opts_.replicas) return false;
        }
        return true;
      };
      const auto replies = ask_all(to, append_type, payloads, enough);
      std::vector<std::size_t> again;
      for (std::size_t t = 0; t < to.size(); ++t) {
        const auto m = targets[t];
        from[m].clear();
        if (!replies[t]) continue;  // no answer in time: not counted
        std::vector<std::array<std::uint64_t, 3>> answer;
        try {
          answer = triples(*replies[t]);
        } catch (const std::exception&) {
          continue;
        }
        for (std::size_t k = 0; k < sent[t].size() && k < answer.size(); ++k) {
          auto& p = plans[sent[t][k]];
          const auto [status, term, head] = answer[k];
          if (status == reply_ok && head >= p.head) {
            ++p.acks;
          } else if (status == reply_fenced) {
            if (!p.failure) {
              // Remember the newer term, so the next append here claims anew.
              term_record newer{term, NodeId{}};
              try {
                node_.transact([&](Transaction& tx) {
                  if (decode_term(tx.get(term_key(p.stream))).term < term) tx.put(term_key(p.stream), encode_term(newer));
                });
              } catch (const std::exception&) {
              }
              p.failure = std::make_exception_ptr(fenced(p.stream, newer));
            }
          } else if (status == reply_behind) {
            from[m][sent[t][k]] = head + 1;
          }
        }
        if (!from[m].empty()) again.push_back(m);
      }
      targets = std::move(again);
    }
  }

  NodeId self_;
  std::string members_service_;
  std::vector<Service> served_;
  std::mutex commands_mu_;
  std::map<std::string, RequestHandler, std::less<>> commands_;

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
  std::condition_variable sync_cv_;  // with mu_
  std::thread syncer_;               // sync_loop, when replicated
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
std::vector<NodeId> EventStore::members() const { return impl_->members(); }
NodeId EventStore::owner_of(std::string_view stream) const { return impl_->owner_of(stream); }
std::string EventStore::command_service() const { return impl_->command_service(); }
void EventStore::on_request(std::string type_name, RequestHandler handler) {
  impl_->on_request(std::move(type_name), std::move(handler));
}
Reply EventStore::request_to(const NodeId& instance, std::span<const std::byte> payload,
                             const RequestOptions& options) const {
  return impl_->request_to(instance, payload, options);
}

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
