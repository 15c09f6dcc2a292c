// The application's key/values and the outbox; see durable_state.hpp. An outbox
// record holds everything publish() needs, length-prefixed; its key is a number that
// grows with each record, so leftovers go out in the order they were published.
#include "lib/node/durable_state.hpp"

#include <fmt/format.h>

#include "lib/node/dispatcher.hpp"
#include "lib/node/log.hpp"

namespace meshbus::detail {
namespace {

using bytes = std::vector<std::uint8_t>;

void put_u32(bytes& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
void put_text(bytes& out, std::string_view s) {
  put_u32(out, static_cast<std::uint32_t>(s.size()));
  out.insert(out.end(), s.begin(), s.end());
}
bool get_u32(store::byte_span& in, std::uint32_t& v) {
  if (in.size() < 4) return false;
  v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | in[static_cast<std::size_t>(i)];
  in = in.subspan(4);
  return true;
}
bool get_text(store::byte_span& in, std::string& s) {
  std::uint32_t n = 0;
  if (!get_u32(in, n) || in.size() < n) return false;
  s.assign(reinterpret_cast<const char*>(in.data()), n);
  in = in.subspan(n);
  return true;
}

/// Keys starting with "$saga/" are the sagas' (<meshbus/saga.hpp>): table `sagas`;
/// those starting with "$es/" the event store's (<meshbus/event_store.hpp>): table
/// `events`; so that they stay apart from the application's own key/values.
constexpr std::string_view saga_prefix = "$saga/";
constexpr std::string_view event_store_prefix = "$es/";
store::table table_of(std::string_view key) {
  if (key.starts_with(saga_prefix)) return store::table::sagas;
  if (key.starts_with(event_store_prefix)) return store::table::events;
  return store::table::kv;
}

bytes outbox_key(std::uint64_t n) {
  bytes k;
  for (int i = 7; i >= 0; --i) k.push_back(static_cast<std::uint8_t>(n >> (8 * i)));
  return k;
}

/// One outbox event, owned.
struct outbox_event {
  std::string topic, payload, event_id, type_name, correlation_id, causation_id, content_type;
  std::uint32_t type_version = 0;
  std::vector<std::pair<std::string, std::string>> headers;

  bytes encode() const {
    bytes out;
    put_text(out, topic);
    put_text(out, payload);
    put_text(out, event_id);
    put_text(out, type_name);
    put_u32(out, type_version);
    put_text(out, correlation_id);
    put_text(out, causation_id);
    put_text(out, content_type);
    put_u32(out, static_cast<std::uint32_t>(headers.size()));
    for (const auto& [k, v] : headers) {
      put_text(out, k);
      put_text(out, v);
    }
    return out;
  }
  static std::optional<outbox_event> decode(store::byte_span in) {
    outbox_event e;
    std::uint32_t n = 0;
    if (!get_text(in, e.topic) || !get_text(in, e.payload) || !get_text(in, e.event_id) ||
        !get_text(in, e.type_name) || !get_u32(in, e.type_version) || !get_text(in, e.correlation_id) ||
        !get_text(in, e.causation_id) || !get_text(in, e.content_type) || !get_u32(in, n)) {
      return std::nullopt;
    }
    for (std::uint32_t i = 0; i < n; ++i) {
      std::string k, v;
      if (!get_text(in, k) || !get_text(in, v)) return std::nullopt;
      e.headers.emplace_back(std::move(k), std::move(v));
    }
    return e;
  }
};

}  // namespace

// The Transaction handed to the application.
class durable_state::tx final : public Transaction {
 public:
  tx(durable_state& owner, store::log_store::transaction& t, std::string id_base)
      : owner_(owner), t_(t), id_base_(std::move(id_base)) {}

  std::optional<std::string> get(std::string_view key) override {
    try {
      auto v = t_.get(table_of(key), store::as_span(key));
      if (!v) return std::nullopt;
      return std::string(v->begin(), v->end());
    } catch (const store::store_error& e) {
      throw error(errc::storage, e.what());
    }
  }
  void put(std::string_view key, std::string_view value) override {
    check_key(key);
    t_.put(table_of(key), store::as_span(key), store::as_span(value));
  }
  void erase(std::string_view key) override {
    check_key(key);
    t_.erase(table_of(key), store::as_span(key));
  }
  void publish(std::string_view topic, std::string_view payload, const PublishOptions& o) override {
    outbox_event e;
    e.topic = topic;
    e.payload = payload;
    e.event_id = o.event_id.empty() ? fmt::format("{}/{}", id_base_, published_.size()) : std::string(o.event_id);
    e.type_name = o.type_name;
    e.type_version = o.type_version;
    e.correlation_id = o.correlation_id;
    e.causation_id = o.causation_id;
    // Published later, outside the handler: take its flow now, as publish() would.
    if (const Event* cause = current_event; cause != nullptr) {
      if (e.correlation_id.empty()) {
        e.correlation_id = cause->correlation_id().empty() ? cause->id() : cause->correlation_id();
      }
      if (e.causation_id.empty()) e.causation_id = cause->id();
    }
    e.content_type = o.content_type;
    for (const auto& h : o.headers) e.headers.emplace_back(h.name, h.value);
    pending p{outbox_key(owner_.next_outbox_.fetch_add(1)), e.encode()};
    t_.put(store::table::outbox, p.key, p.record);
    published_.push_back(std::move(p));
  }
  std::vector<pending>& published() { return published_; }

 private:
  static void check_key(std::string_view key) {
    if (key.empty() || key.size() > 400) {
      throw error(errc::invalid_argument, "a stored key must have 1 to 400 bytes");
    }
  }
  durable_state& owner_;
  store::log_store::transaction& t_;
  std::string id_base_;
  std::vector<pending> published_;
};

durable_state::durable_state(node_context& ctx, store::log_store& store, publish_fn publish)
    : ctx_(ctx), store_(store), publish_(std::move(publish)) {
  // Outbox numbers go on after the highest one left.
  std::uint64_t last = 0;
  store_.scan(store::table::outbox, {}, [&](store::byte_span key, store::byte_span, bool) {
    if (key.size() != 8) return;
    std::uint64_t n = 0;
    for (auto b : key) n = (n << 8) | b;
    last = std::max(last, n);
  });
  next_outbox_ = last + 1;
}

std::optional<std::string> durable_state::get(std::string_view key) const {
  try {
    auto v = store_.get(table_of(key), store::as_span(key));
    if (!v) return std::nullopt;
    return std::string(v->begin(), v->end());
  } catch (const store::store_error& e) {
    throw error(errc::storage, e.what());
  }
}

std::vector<std::pair<std::string, std::string>> durable_state::range(std::string_view prefix) const {
  std::vector<std::pair<std::string, std::string>> out;
  std::string damaged;
  store_.scan(table_of(prefix), store::as_span(prefix), [&](store::byte_span k, store::byte_span v, bool bad) {
    std::string key(reinterpret_cast<const char*>(k.data()), k.size());
    if (bad) {
      damaged = key;
      return;
    }
    out.emplace_back(std::move(key), std::string(reinterpret_cast<const char*>(v.data()), v.size()));
  });
  if (!damaged.empty()) {
    throw error(errc::storage, fmt::format("the stored value of '{}' in {} failed its CRC32C check", damaged,
                                           store_.path()));
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> durable_state::range(std::string_view prefix, std::string_view from,
                                                                      std::size_t limit, bool backward) const {
  std::vector<std::pair<std::string, std::string>> out;
  if (limit == 0) return out;
  std::string damaged;
  store_.scan_from(table_of(prefix), store::as_span(prefix), store::as_span(from), backward,
                   [&](store::byte_span k, store::byte_span v, bool bad) {
                     std::string key(reinterpret_cast<const char*>(k.data()), k.size());
                     if (bad) {
                       damaged = std::move(key);
                       return false;
                     }
                     out.emplace_back(std::move(key), std::string(reinterpret_cast<const char*>(v.data()), v.size()));
                     return out.size() < limit;
                   });
  if (!damaged.empty()) {
    throw error(errc::storage, fmt::format("the stored value of '{}' in {} failed its CRC32C check", damaged,
                                           store_.path()));
  }
  return out;
}

void durable_state::transact(const std::function<void(Transaction&)>& work,
                             const std::function<void(store::log_store::transaction&)>& also,
                             const std::string& id_base) {
  std::unique_ptr<store::log_store::transaction> t;
  try {
    t = store_.begin();
  } catch (const store::store_error& e) {
    throw error(errc::storage, e.what());
  }
  tx handle(*this, *t,
            id_base.empty() ? fmt::format("{}/tx{}", ctx_.self.id.to_string(), unix_ns()) : id_base);
  if (work) work(handle);  // a throw aborts: `t` is dropped uncommitted
  if (also) also(*t);
  const auto r = t->commit();
  if (!r) {
    bump(ctx_.counters.store_failures);
    throw error(errc::storage, r.message);
  }
  auto& sent = handle.published();
  if (sent.empty()) return;
  std::vector<pending> done;
  for (auto& p : sent) {
    if (publish_record(p.record)) done.push_back(std::move(p));
  }
  forget(done);
}

bool durable_state::publish_record(const std::vector<std::uint8_t>& record) {
  const auto e = outbox_event::decode(record);
  if (!e) return true;  // cannot be published; leaving it would only block the outbox
  std::vector<Header> headers;
  for (const auto& [k, v] : e->headers) headers.push_back({k, v});
  PublishOptions o;
  o.event_id = e->event_id;
  o.type_name = e->type_name;
  o.type_version = e->type_version;
  o.correlation_id = e->correlation_id;
  o.causation_id = e->causation_id;
  o.content_type = e->content_type;
  o.headers = headers;
  try {
    return publish_(e->topic, e->payload, o) == PublishResult::ok;
  } catch (const error& err) {
    ctx_.log.warn("node {}: an event of the outbox on '{}' cannot be published: {}", ctx_.self.id.short_string(),
                  e->topic, err.what());
    return err.code_value() != errc::stopped;  // kept for the next start when the node is stopping
  }
}

void durable_state::forget(const std::vector<pending>& sent) {
  if (sent.empty()) return;
  try {
    auto t = store_.begin();
    for (const auto& p : sent) t->erase(store::table::outbox, p.key);
    (void)t->commit();  // if this fails they go out again at the next start, with the same ids
  } catch (const store::store_error&) {
  }
}

void durable_state::publish_leftovers() {
  std::vector<pending> left;
  store_.scan(store::table::outbox, {}, [&](store::byte_span key, store::byte_span value, bool damaged) {
    if (damaged) {
      bump(ctx_.counters.store_damaged);
      ctx_.faults.report(fault::store_damage,
                         fmt::format("an event of the outbox in {} failed its CRC32C check: it cannot be published",
                                     store_.path()));
      left.push_back({bytes(key.begin(), key.end()), {}});
      return;
    }
    left.push_back({bytes(key.begin(), key.end()), bytes(value.begin(), value.end())});
  });
  if (left.empty()) return;
  ctx_.log.info("node {}: publishing {} events the outbox held since before a restart", ctx_.self.id.short_string(),
                left.size());
  std::vector<pending> done;
  for (auto& p : left) {
    if (p.record.empty() || publish_record(p.record)) done.push_back(std::move(p));
  }
  forget(done);
}

}  // namespace meshbus::detail
