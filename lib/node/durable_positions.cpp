// Durable subscription positions; see durable_positions.hpp. A failed write is
// counted and reported but does not stop the handlers: the position stays behind,
// so a restart delivers more again, never less.
#include "lib/node/durable_positions.hpp"

#include <fmt/format.h>

#include "lib/node/durable_state.hpp"

namespace meshbus::detail {
namespace {

void put_u64(std::vector<std::uint8_t>& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
std::uint64_t get_u64(const std::uint8_t* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
std::vector<std::uint8_t> record(std::uint64_t epoch, std::uint64_t committed, std::uint64_t handed) {
  std::vector<std::uint8_t> v;
  put_u64(v, epoch);
  put_u64(v, committed);
  put_u64(v, handed);
  return v;
}

}  // namespace

durable_positions::durable_positions(node_context& ctx, store::log_store& store, durable_state& state)
    : ctx_(ctx), store_(store), state_(state) {}

std::string durable_positions::key_of(const std::string& name, const wire::node_id_bytes& publisher,
                                      std::string_view topic) {
  std::string k = name;
  k.push_back('\0');
  k.append(reinterpret_cast<const char*>(publisher.data()), publisher.size());
  k.append(topic);
  return k;
}

std::optional<std::uint64_t> durable_positions::resume_at(const std::string& name,
                                                          const wire::node_id_bytes& publisher, std::uint64_t epoch,
                                                          std::string_view topic) {
  const auto key = key_of(name, publisher, topic);
  std::optional<std::vector<std::uint8_t>> v;
  try {
    v = store_.get(store::table::positions, store::as_span(key));
  } catch (const store::store_error& e) {
    bump(ctx_.counters.store_damaged);
    ctx_.faults.report(fault::store_damage,
                       fmt::format("{}: durable subscription '{}' starts topic '{}' as if new", e.what(), name, topic));
    return std::nullopt;
  }
  if (!v || v->size() != 24) return std::nullopt;
  const auto stored_epoch = get_u64(v->data());
  const auto committed = get_u64(v->data() + 8);
  const auto handed = get_u64(v->data() + 16);
  // Another epoch: the publisher restarted without its log; its new stream is new here.
  if (stored_epoch != epoch) return 1;
  if (handed > committed) {
    std::lock_guard lock(mu_);
    handed_before_[key] = handed;
  }
  return committed + 1;
}

void durable_positions::write(const std::string& key, std::uint64_t epoch, std::uint64_t committed,
                              std::uint64_t handed) {
  try {
    auto t = store_.begin();
    t->put(store::table::positions, store::as_span(key), record(epoch, committed, handed));
    const auto r = t->commit();
    if (r) {
      bump(ctx_.counters.durable_commits);
      return;
    }
    bump(ctx_.counters.store_failures);
    ctx_.faults.report(fault::store_failure,
                       r.message + ": a durable subscription's position stays behind (a restart delivers more again)");
  } catch (const store::store_error& e) {
    bump(ctx_.counters.store_failures);
    ctx_.faults.report(fault::store_failure, e.what());
  }
}

void durable_positions::handing(const std::string& name, const NodeId& publisher, std::uint64_t epoch,
                                std::string_view topic, std::uint64_t from, std::uint64_t to) {
  const auto key = key_of(name, publisher.bytes, topic);
  {
    std::lock_guard lock(mu_);
    if (auto it = handed_before_.find(key); it != handed_before_.end()) {
      // Handed to handlers before the restart, maybe handled: delivered again.
      if (from <= it->second) bump(ctx_.counters.durable_redeliveries, std::min(to, it->second) - from + 1);
      if (to >= it->second) handed_before_.erase(it);
    }
    auto& marked = marked_[key];
    if (from <= marked) return;  // inside the run already marked
    marked = to;
  }
  write(key, epoch, from - 1, to);
}

void durable_positions::handled(const std::string& name, const NodeId& publisher, std::uint64_t epoch,
                                std::string_view topic, std::uint64_t through) {
  const auto key = key_of(name, publisher.bytes, topic);
  {
    std::lock_guard lock(mu_);
    const auto it = marked_.find(key);
    if (it != marked_.end() && through < it->second) return;  // the run goes on: committed at its end
  }
  write(key, epoch, through, through);
}

void durable_positions::transact(const std::string& name, const Event& event, const TransactionalHandler& handler) {
  const auto key = key_of(name, event.publisher().bytes, event.topic());
  const auto seq = event.sequence();
  const auto epoch = event.epoch();
  state_.transact([&](Transaction& tx) { handler(event, tx); },
                  [&](store::log_store::transaction& t) {
                    t.put(store::table::positions, store::as_span(key), record(epoch, seq, seq));
                  },
                  fmt::format("{}/{}/{}/{}/{}", name, event.publisher().to_string(), epoch, event.topic(), seq));
  bump(ctx_.counters.durable_commits);
}

}  // namespace meshbus::detail
