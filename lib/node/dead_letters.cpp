// Dead-letter store; see dead_letters.hpp. In the log a letter's key is its id (u64
// big-endian, so the table is in id order, oldest first) and its value a compact
// record (docs/store.md); key "next" holds the next id, written with every letter,
// so ids go on after a restart even when every letter was replayed or evicted.
#include "lib/node/dead_letters.hpp"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "lib/store/log_store.hpp"

namespace meshbus::detail {
namespace {

using bytes = std::vector<std::uint8_t>;

/// The layout of a letter's record: version 1.
constexpr std::uint8_t record_version = 1;
constexpr std::string_view next_key = "next";

void put_u32(bytes& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
void put_u64(bytes& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
void put_text(bytes& out, std::string_view s) {
  put_u32(out, static_cast<std::uint32_t>(s.size()));
  out.insert(out.end(), s.begin(), s.end());
}

/// Reads a record front to back; any shortfall makes it fail, once.
class reader {
 public:
  explicit reader(store::byte_span in) : in_(in) {}
  bool ok() const noexcept { return ok_; }
  bool at_end() const noexcept { return in_.empty(); }
  std::uint8_t u8() {
    if (!take(1)) return 0;
    const auto v = in_[0];
    in_ = in_.subspan(1);
    return v;
  }
  std::uint32_t u32() { return static_cast<std::uint32_t>(number(4)); }
  std::uint64_t u64() { return number(8); }
  std::string text() {
    const auto n = u32();
    if (!take(n)) return {};
    std::string s(reinterpret_cast<const char*>(in_.data()), n);
    in_ = in_.subspan(n);
    return s;
  }
  void raw(std::uint8_t* out, std::size_t n) {
    if (!take(n)) return;
    std::memcpy(out, in_.data(), n);
    in_ = in_.subspan(n);
  }

 private:
  bool take(std::size_t n) {
    if (ok_ && in_.size() >= n) return true;
    ok_ = false;
    return false;
  }
  std::uint64_t number(std::size_t n) {
    if (!take(n)) return 0;
    std::uint64_t v = 0;
    for (std::size_t i = n; i-- > 0;) v = (v << 8) | in_[i];
    in_ = in_.subspan(n);
    return v;
  }
  store::byte_span in_;
  bool ok_ = true;
};

bytes key_of(std::uint64_t id) {
  bytes k;
  for (int i = 7; i >= 0; --i) k.push_back(static_cast<std::uint8_t>(id >> (8 * i)));
  return k;
}

std::uint64_t id_of(store::byte_span key) {
  std::uint64_t id = 0;
  for (auto b : key) id = (id << 8) | b;
  return id;
}

bytes encode(const DeadLetter& d, const dead_letter_store::origin& from) {
  bytes out;
  out.push_back(record_version);
  put_text(out, d.topic);
  put_text(out, d.payload);
  out.insert(out.end(), d.publisher.bytes.begin(), d.publisher.bytes.end());
  put_u64(out, d.epoch);
  put_u64(out, d.sequence);
  put_text(out, d.event_id);
  put_text(out, d.type_name);
  put_u32(out, d.type_version);
  put_text(out, d.correlation_id);
  put_text(out, d.causation_id);
  put_text(out, d.content_type);
  put_u32(out, static_cast<std::uint32_t>(d.headers.size()));
  for (const auto& [k, v] : d.headers) {
    put_text(out, k);
    put_text(out, v);
  }
  put_text(out, d.pattern);
  put_text(out, d.reason);
  put_u32(out, d.attempts);
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d.failed_at.time_since_epoch()).count();
  put_u64(out, static_cast<std::uint64_t>(std::max<std::int64_t>(ns, 0)));
  put_text(out, from.durable_name);
  put_text(out, from.group);
  return out;
}

std::optional<std::pair<DeadLetter, dead_letter_store::origin>> decode(store::byte_span value, std::uint64_t id) {
  reader in(value);
  if (in.u8() != record_version) return std::nullopt;
  DeadLetter d;
  dead_letter_store::origin from;
  d.id = id;
  d.topic = in.text();
  d.payload = in.text();
  in.raw(d.publisher.bytes.data(), d.publisher.bytes.size());
  d.epoch = in.u64();
  d.sequence = in.u64();
  d.event_id = in.text();
  d.type_name = in.text();
  d.type_version = in.u32();
  d.correlation_id = in.text();
  d.causation_id = in.text();
  d.content_type = in.text();
  const auto headers = in.u32();
  for (std::uint32_t i = 0; i < headers && in.ok(); ++i) {
    auto k = in.text();
    auto v = in.text();
    d.headers.emplace_back(std::move(k), std::move(v));
  }
  d.pattern = in.text();
  d.reason = in.text();
  d.attempts = in.u32();
  d.failed_at = std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::nanoseconds(in.u64())));
  from.durable_name = in.text();
  from.group = in.text();
  if (!in.ok() || !in.at_end()) return std::nullopt;
  return std::make_pair(std::move(d), std::move(from));
}

}  // namespace

dead_letter_store::dead_letter_store(node_context& ctx, std::size_t capacity) : ctx_(ctx), capacity_(capacity) {
  if (ctx_.store != nullptr) load();
}

void dead_letter_store::load() {
  std::uint64_t highest = 0;
  std::uint64_t stored_next = 0;
  std::size_t damaged = 0;
  std::string first_damage;
  ctx_.store->scan(store::table::dead_letters, {}, [&](store::byte_span key, store::byte_span value, bool bad) {
    if (key.size() != 8) {
      if (!bad && std::string_view(reinterpret_cast<const char*>(key.data()), key.size()) == next_key) {
        reader in(value);
        const auto n = in.u64();
        if (in.ok()) stored_next = n;
      }
      return;
    }
    const auto id = id_of(key);
    highest = std::max(highest, id);
    auto letter = bad ? std::nullopt : decode(value, id);
    if (!letter) {
      if (damaged++ == 0) {
        first_damage = fmt::format("dead letter {} {}", id, bad ? "failed its CRC32C check" : "does not decode");
      }
      return;
    }
    entries_.push_back({std::move(letter->first), std::move(letter->second)});
  });
  next_id_ = std::max({next_id_, highest + 1, stored_next});
  if (damaged > 0) {
    bump(ctx_.counters.store_damaged, damaged);
    ctx_.faults.report(fault::store_damage,
                       fmt::format("{} damaged dead-letter record{} in {} ({}): skipped, the others are kept", damaged,
                                   damaged == 1 ? "" : "s", ctx_.store->path(), first_damage));
  }
  // A capacity smaller than what the last run kept: the oldest go, as when full.
  std::vector<std::uint64_t> evicted;
  while (entries_.size() > capacity_) {
    evicted.push_back(entries_.front().letter.id);
    entries_.pop_front();
  }
  if (!evicted.empty()) {
    bump(ctx_.counters.dead_letters_dropped, evicted.size());
    write(nullptr, evicted, "evicting dead letters beyond Options::dead_letter_capacity");
  }
}

std::pair<std::uint64_t, bool> dead_letter_store::add(DeadLetter letter, origin from) {
  std::lock_guard writing(write_mu_);
  std::vector<std::uint64_t> evicted;
  entry added;
  std::uint64_t id = 0;
  {
    std::lock_guard lock(mu_);
    id = letter.id = next_id_++;
    if (capacity_ == 0) return {id, true};
    while (entries_.size() >= capacity_) {
      evicted.push_back(entries_.front().letter.id);
      entries_.pop_front();
    }
    entries_.push_back({std::move(letter), std::move(from)});
    if (ctx_.store != nullptr) added = entries_.back();
  }
  if (ctx_.store != nullptr) write(&added, evicted, "storing a dead letter");
  return {id, !evicted.empty()};
}

void dead_letter_store::write(const entry* added, const std::vector<std::uint64_t>& erased, const char* what) {
  if (ctx_.store == nullptr) return;
  std::string failure;
  try {
    auto t = ctx_.store->begin();
    if (added != nullptr) {
      t->put(store::table::dead_letters, key_of(added->letter.id), encode(added->letter, added->from));
      bytes next;
      put_u64(next, added->letter.id + 1);
      t->put(store::table::dead_letters, store::as_span(next_key), next);
    }
    for (const auto id : erased) t->erase(store::table::dead_letters, key_of(id));
    const auto r = t->commit();
    if (r) return;
    failure = r.message;
  } catch (const store::store_error& e) {
    failure = e.what();
  }
  bump(ctx_.counters.store_failures);
  ctx_.faults.report(fault::store_failure,
                     fmt::format("{} in {} failed: {}; {}", what, ctx_.store->path(), failure,
                                 added != nullptr ? "the dead letter is kept in memory only (gone after a restart)"
                                                  : "the deleted dead letters come back after a restart"));
}

std::vector<DeadLetter> dead_letter_store::list() const {
  std::lock_guard lock(mu_);
  std::vector<DeadLetter> out;
  out.reserve(entries_.size());
  for (const auto& e : entries_) out.push_back(e.letter);
  return out;
}

std::size_t dead_letter_store::size() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}

std::optional<std::pair<DeadLetter, dead_letter_store::origin>> dead_letter_store::find(std::uint64_t id) const {
  std::lock_guard lock(mu_);
  for (const auto& e : entries_) {
    if (e.letter.id == id) return std::make_pair(e.letter, e.from);
  }
  return std::nullopt;
}

void dead_letter_store::remove(std::uint64_t id) {
  std::lock_guard writing(write_mu_);
  {
    std::lock_guard lock(mu_);
    const auto it =
        std::find_if(entries_.begin(), entries_.end(), [&](const entry& e) { return e.letter.id == id; });
    if (it == entries_.end()) return;
    entries_.erase(it);
  }
  write(nullptr, {id}, "deleting a replayed dead letter");
}

}  // namespace meshbus::detail
