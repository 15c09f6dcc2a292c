// The durable log on real files in a temporary directory: identity across reopen,
// history append and read, the CRC32C on every record, retention, the lock, and the
// clear errors for directories that are not a meshbus log.
#include <lmdb.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "lib/store/crc32c.hpp"
#include "lib/store/log_store.hpp"

using namespace meshbus::store;
namespace fs = std::filesystem;

namespace {

struct temp_dir {
  fs::path path;
  temp_dir() {
    std::random_device rd;
    path = fs::temp_directory_path() / ("meshbus-store-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
    fs::create_directories(path);
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string str() const { return path.string(); }
};

store_options options_in(const temp_dir& d, durability p = durability::always) {
  store_options o;
  o.dir = d.str();
  o.policy = p;
  o.map_bytes = std::size_t{64} << 20;
  return o;
}

/// A batch whose frame is `text` (the store does not look inside frames).
history_batch batch(std::string_view topic, std::uint64_t first, std::uint32_t count, std::uint64_t ts,
                    std::string_view text) {
  history_batch b;
  b.topic = topic;
  b.first_seq = first;
  b.count = count;
  b.timestamp_ns = ts;
  b.frame = as_span(text);
  return b;
}

std::vector<std::string> read_all(log_store& s, std::string_view topic, std::uint64_t from, std::uint64_t to,
                                  history_read* result = nullptr) {
  std::vector<std::string> out;
  auto r = s.read(topic, from, to, 1000, [&](const history_batch& b) {
    out.push_back(std::to_string(b.first_seq) + ":" +
                  std::string(reinterpret_cast<const char*>(b.frame.data()), b.frame.size()));
  });
  if (result != nullptr) *result = r;
  return out;
}

}  // namespace

TEST_CASE("crc32c gives the standard check value", "[unit][store]") {
  REQUIRE(crc32c(0, "123456789", 9) == 0xE3069283u);
  // Extending in pieces gives the same value as one call.
  REQUIRE(crc32c(crc32c(0, "1234", 4), "56789", 5) == 0xE3069283u);
  std::string big(1000, 'x');
  REQUIRE(crc32c(0, big.data(), big.size()) == crc32c(crc32c(0, big.data(), 333), big.data() + 333, 667));
}

TEST_CASE("a new log creates an identity that a clean reopen keeps, epoch included", "[unit][store]") {
  temp_dir d;
  identity first;
  {
    auto s = log_store::open(options_in(d));
    first = s->who();
    REQUIRE(first.new_node);
    REQUIRE(first.epoch != 0);
    REQUIRE(s->append(std::vector{batch("a.b", 1, 3, 100, "one"), batch("a.b", 4, 2, 200, "two"),
                                  batch("c", 1, 1, 150, "three")}));
  }
  auto s = log_store::open(options_in(d));
  REQUIRE_FALSE(s->who().new_node);
  REQUIRE_FALSE(s->who().new_epoch);
  REQUIRE(s->who().node_id == first.node_id);
  REQUIRE(s->who().epoch == first.epoch);
  auto last = s->last_sequences();
  std::sort(last.begin(), last.end());
  REQUIRE(last == std::vector<std::pair<std::string, std::uint64_t>>{{"a.b", 5}, {"c", 1}});
  REQUIRE(read_all(*s, "a.b", 1, 5) == std::vector<std::string>{"1:one", "4:two"});
  REQUIRE(read_all(*s, "a.b", 2, 2) == std::vector<std::string>{"1:one"});
  REQUIRE(read_all(*s, "a.b", 5, 9) == std::vector<std::string>{"4:two"});
  REQUIRE(read_all(*s, "c", 1, 1) == std::vector<std::string>{"1:three"});
  REQUIRE(read_all(*s, "nothing", 1, 10).empty());
  REQUIRE(s->sequence_at("a.b", 0) == 1);
  REQUIRE(s->sequence_at("a.b", 150) == 4);
  REQUIRE(s->sequence_at("a.b", 201) == 6);
}

TEST_CASE("a second open of one data directory is refused with the holder's pid", "[unit][store]") {
  temp_dir d;
  auto s = log_store::open(options_in(d));
  try {
    auto again = log_store::open(options_in(d));
    FAIL("opened twice");
  } catch (const store_error& e) {
    REQUIRE(e.which() == store_error::kind::locked);
    REQUIRE_THAT(e.what(), Catch::Contains("in use by another process (pid " + std::to_string(::getpid())));
  }
  // A reader beside the writer is fine.
  auto ro = options_in(d);
  ro.read_only = true;
  auto reader = log_store::open(ro);
  REQUIRE(reader->who().node_id == s->who().node_id);
}

TEST_CASE("a read-only reader beside the writer lists every topic and reads its batches", "[unit][store]") {
  temp_dir d;
  auto s = log_store::open(options_in(d));
  REQUIRE(s->append(std::vector{batch("a.b", 1, 3, 100, "one"), batch("a.b", 4, 2, 200, "two"),
                                batch("c", 1, 1, 150, "three")}));
  auto ro = options_in(d);
  ro.read_only = true;
  const auto reader = log_store::open(ro);
  const auto topics = reader->topics();
  REQUIRE(topics.size() == 2);
  CHECK(topics[0].epoch == s->who().epoch);
  CHECK(topics[0].topic == "a.b");
  CHECK(topics[0].first_seq == 1);
  CHECK(topics[0].last_seq == 5);
  CHECK(topics[0].events == 5);
  CHECK(topics[1].topic == "c");
  std::vector<std::string> seen;
  reader->read_epoch(s->who().epoch, "a.b", 0, [&](const history_batch& b, bool damaged) {
    CHECK_FALSE(damaged);
    seen.push_back(std::to_string(b.first_seq) + "+" + std::to_string(b.count) + ":" +
                   std::string(reinterpret_cast<const char*>(b.frame.data()), b.frame.size()));
    return true;
  });
  REQUIRE(seen == std::vector<std::string>{"1+3:one", "4+2:two"});
  // What the writer appends later is seen by the next read.
  REQUIRE(s->append(std::vector{batch("a.b", 6, 1, 300, "four")}));
  seen.clear();
  reader->read_epoch(s->who().epoch, "a.b", 5, [&](const history_batch& b, bool) {
    seen.push_back(std::to_string(b.first_seq));
    return true;
  });
  REQUIRE(seen == std::vector<std::string>{"4", "6"});
}

TEST_CASE("a file that is not a meshbus log is refused, naming it", "[unit][store]") {
  temp_dir d;
  {
    std::ofstream f(d.path / "log.mdb");
    f << std::string(100000, 'z');
  }
  try {
    log_store::open(options_in(d));
    FAIL("opened");
  } catch (const store_error& e) {
    REQUIRE(e.which() == store_error::kind::not_a_log);
    REQUIRE_THAT(e.what(), Catch::Contains((d.path / "log.mdb").string()));
  }
}

TEST_CASE("an LMDB file of another program is not taken for a log", "[unit][store]") {
  temp_dir d;
  {
    MDB_env* env = nullptr;
    mdb_env_create(&env);
    REQUIRE(mdb_env_open(env, (d.path / "log.mdb").c_str(), MDB_NOSUBDIR, 0644) == 0);
    MDB_txn* txn = nullptr;
    mdb_txn_begin(env, nullptr, 0, &txn);
    MDB_dbi dbi{};
    mdb_dbi_open(txn, nullptr, 0, &dbi);
    std::string k = "someone", v = "else";
    MDB_val kk{k.size(), k.data()}, vv{v.size(), v.data()};
    mdb_put(txn, dbi, &kk, &vv, 0);
    mdb_txn_commit(txn);
    mdb_env_close(env);
  }
  REQUIRE_THROWS_MATCHES(log_store::open(options_in(d)), store_error,
                         Catch::Matchers::Predicate<store_error>(
                             [](const store_error& e) { return e.which() == store_error::kind::not_a_log; }));
}

TEST_CASE("a log of a newer format is refused with what to do", "[unit][store]") {
  temp_dir d;
  { log_store::open(options_in(d)); }
  {
    // Rewrite the format record as version 99, with a valid CRC.
    MDB_env* env = nullptr;
    mdb_env_create(&env);
    mdb_env_set_maxdbs(env, 16);
    REQUIRE(mdb_env_open(env, (d.path / "log.mdb").c_str(), MDB_NOSUBDIR, 0644) == 0);
    MDB_txn* txn = nullptr;
    mdb_txn_begin(env, nullptr, 0, &txn);
    MDB_dbi meta{};
    REQUIRE(mdb_dbi_open(txn, "meta", 0, &meta) == 0);
    std::string key = "format";
    std::uint8_t body[4] = {99, 0, 0, 0};
    const auto crc = crc32c(crc32c(0, key.data(), key.size()), body, 4);
    std::uint8_t value[8];
    for (int i = 0; i < 4; ++i) value[i] = static_cast<std::uint8_t>(crc >> (8 * i));
    std::memcpy(value + 4, body, 4);
    MDB_val k{key.size(), key.data()}, v{8, value};
    REQUIRE(mdb_put(txn, meta, &k, &v, 0) == 0);
    mdb_txn_commit(txn);
    mdb_env_close(env);
  }
  try {
    log_store::open(options_in(d));
    FAIL("opened");
  } catch (const store_error& e) {
    REQUIRE(e.which() == store_error::kind::newer_format);
    REQUIRE_THAT(e.what(), Catch::Contains("format 99") && Catch::Contains("upgrade meshbus"));
  }
}

TEST_CASE("a flipped byte in a stored batch is reported as damaged, never delivered", "[unit][store]") {
  temp_dir d;
  const std::string marker = "PAYLOAD-TO-DAMAGE-0123456789";
  {
    auto s = log_store::open(options_in(d));
    REQUIRE(s->append(std::vector{batch("t", 1, 2, 10, "fine-before")}));
    REQUIRE(s->append(std::vector{batch("t", 3, 4, 20, marker)}));
    REQUIRE(s->append(std::vector{batch("t", 7, 1, 30, "fine-after")}));
  }
  {
    const auto file = (d.path / "log.mdb").string();
    std::string all(fs::file_size(file), '\0');
    FILE* f = std::fopen(file.c_str(), "r+b");
    REQUIRE(f != nullptr);
    REQUIRE(std::fread(all.data(), 1, all.size(), f) == all.size());
    const auto at = all.find(marker);
    REQUIRE(at != std::string::npos);
    std::fseek(f, static_cast<long>(at + 5), SEEK_SET);
    std::fputc('#', f);
    std::fclose(f);
  }
  auto s = log_store::open(options_in(d));
  history_read r;
  const auto got = read_all(*s, "t", 1, 7, &r);
  REQUIRE(got == std::vector<std::string>{"1:fine-before", "7:fine-after"});
  REQUIRE(r.damaged == std::vector<std::pair<std::uint64_t, std::uint64_t>>{{3, 6}});
  REQUIRE_THAT(r.damage, Catch::Contains("CRC32C"));
}

TEST_CASE("retention deletes whole batches, oldest first, by count, bytes and age", "[unit][store]") {
  temp_dir d;
  auto s = log_store::open(options_in(d));
  for (std::uint64_t i = 0; i < 10; ++i) {
    REQUIRE(s->append(std::vector{batch("keep.few", 1 + i * 10, 10, 1000 + i, "0123456789")}));
    REQUIRE(s->append(std::vector{batch("other", 1 + i, 1, 1000 + i, "x")}));
  }
  std::vector<retention_rule> rules{{"keep.*", std::chrono::seconds(0), 0, 35}};
  REQUIRE(s->enforce_retention(rules, 2000) == 70);  // 100 events, at most 35: 7 batches go
  REQUIRE(read_all(*s, "keep.few", 1, 100).size() == 3);
  REQUIRE(read_all(*s, "other", 1, 10).size() == 10);  // no rule matches it
  history_read r;
  read_all(*s, "keep.few", 1, 100, &r);
  REQUIRE(r.oldest == 71);
  REQUIRE(r.last == 100);
  // By age: everything older than 1 s at t = 1005 s.
  rules = {{"**", std::chrono::seconds(1), 0, 0}};
  REQUIRE(s->enforce_retention(rules, std::uint64_t{1005} * 1'000'000'000 + 1) > 0);
  // The stream's last sequence survives retention (the publisher continues from it).
  auto last = s->last_sequences();
  std::sort(last.begin(), last.end());
  REQUIRE(last == std::vector<std::pair<std::string, std::uint64_t>>{{"keep.few", 100}, {"other", 10}});
}

TEST_CASE("the small tables keep values across reopen and detect damage", "[unit][store]") {
  temp_dir d;
  {
    auto s = log_store::open(options_in(d, durability::none));
    auto tx = s->begin();
    tx->put(table::kv, as_span("a/1"), as_span("one"));
    tx->put(table::kv, as_span("a/2"), as_span("two"));
    tx->put(table::kv, as_span("b/1"), as_span("other"));
    REQUIRE(tx->get(table::kv, as_span("a/2")).has_value());
    REQUIRE(tx->commit());
    auto aborted = s->begin();
    aborted->put(table::kv, as_span("a/3"), as_span("never"));
  }
  auto s = log_store::open(options_in(d, durability::interval));
  std::vector<std::string> keys;
  s->scan(table::kv, as_span("a/"), [&](byte_span k, byte_span v, bool damaged) {
    REQUIRE_FALSE(damaged);
    keys.emplace_back(reinterpret_cast<const char*>(k.data()), k.size());
    keys.back() += "=" + std::string(reinterpret_cast<const char*>(v.data()), v.size());
  });
  REQUIRE(keys == std::vector<std::string>{"a/1=one", "a/2=two"});
  auto tx = s->begin();
  tx->erase(table::kv, as_span("a/1"));
  REQUIRE(tx->commit());
  REQUIRE_FALSE(s->get(table::kv, as_span("a/1")).has_value());
  REQUIRE(s->get(table::kv, as_span("b/1")).has_value());
}

TEST_CASE("scan_from walks a prefix forward and backward from a key, and the events table is apart",
          "[unit][store]") {
  temp_dir d;
  auto s = log_store::open(options_in(d, durability::none));
  {
    auto tx = s->begin();
    for (const char* k : {"s/a/1", "s/a/2", "s/a/3", "s/a/5", "s/b/1", "s/a", "s/"}) {
      tx->put(table::events, as_span(k), as_span(std::string("v") + k));
    }
    tx->put(table::kv, as_span("s/a/4"), as_span("in kv"));
    REQUIRE(tx->commit());
  }
  const auto walk = [&](std::string_view prefix, std::string_view from, bool backward, std::size_t max = 100) {
    std::vector<std::string> keys;
    s->scan_from(table::events, as_span(prefix), as_span(from), backward, [&](byte_span k, byte_span v, bool bad) {
      REQUIRE_FALSE(bad);
      keys.emplace_back(reinterpret_cast<const char*>(k.data()), k.size());
      REQUIRE(std::string(reinterpret_cast<const char*>(v.data()), v.size()) == "v" + keys.back());
      return keys.size() < max;
    });
    return keys;
  };
  using v = std::vector<std::string>;
  CHECK(walk("s/a/", "", false) == v{"s/a/1", "s/a/2", "s/a/3", "s/a/5"});
  CHECK(walk("s/a/", "s/a/2", false) == v{"s/a/2", "s/a/3", "s/a/5"});
  CHECK(walk("s/a/", "s/a/4", false) == v{"s/a/5"});
  CHECK(walk("s/a/", "s/a/2", false, 2) == v{"s/a/2", "s/a/3"});
  CHECK(walk("s/a/", "", true) == v{"s/a/5", "s/a/3", "s/a/2", "s/a/1"});
  CHECK(walk("s/a/", "s/a/4", true) == v{"s/a/3", "s/a/2", "s/a/1"});
  CHECK(walk("s/a/", "s/a/9", true) == v{"s/a/5", "s/a/3", "s/a/2", "s/a/1"});
  CHECK(walk("s/a/", "s/a/1", true) == v{"s/a/1"});
  CHECK(walk("s/b/", "", true) == v{"s/b/1"});  // the last prefix in the table
  CHECK(walk("s/c/", "", true).empty());
  CHECK(walk("s/c/", "", false).empty());
  CHECK(walk("s/a/", "s/a/6", false).empty());
  CHECK_FALSE(s->get(table::events, as_span("s/a/4")).has_value());
  CHECK(s->get(table::kv, as_span("s/a/4")).has_value());
}

TEST_CASE("a full map is a value from append, and writing goes on once there is room", "[unit][store]") {
  temp_dir d;
  auto o = options_in(d);
  o.map_bytes = std::size_t{1} << 20;
  auto s = log_store::open(o);
  const std::string big(64 << 10, 'b');
  write_result r;
  std::uint64_t seq = 1;
  for (int i = 0; i < 100 && r; ++i, seq += 1) r = s->append(std::vector{batch("t", seq, 1, seq, big)});
  REQUIRE(r.state == write_result::status::full);
  REQUIRE_THAT(r.message, Catch::Contains("map size"));
  --seq;  // the refused batch
  // Room again: retention deletes the oldest; the refused batch can then be written.
  REQUIRE(s->enforce_retention({{"**", std::chrono::seconds(0), 0, 3}}, 0) > 0);
  // LMDB reuses the pages a transaction freed only after one more transaction has
  // committed (as the node's next retries and retention rounds do).
  write_result again = s->append(std::vector{batch("t", seq, 1, seq, std::string(100, 's'))});
  for (int tries = 0; tries < 3 && !again; ++tries) {
    auto tx = s->begin();
    tx->put(table::kv, as_span("tick"), as_span(std::to_string(tries)));
    REQUIRE(tx->commit());
    again = s->append(std::vector{batch("t", seq, 1, seq, big)});
  }
  INFO(again.message);
  REQUIRE(again);
}

TEST_CASE("a truncated log is refused with what to do, not read past its end", "[unit][store]") {
  temp_dir d;
  {
    auto s = log_store::open(options_in(d));
    const std::string payload(2000, 'p');
    for (std::uint64_t i = 0; i < 200; ++i) REQUIRE(s->append(std::vector{batch("t", 1 + i, 1, i, payload)}));
  }
  const auto file = d.path / "log.mdb";
  fs::resize_file(file, fs::file_size(file) / 2);
  try {
    log_store::open(options_in(d));
    FAIL("opened a truncated log");
  } catch (const store_error& e) {
    REQUIRE(e.which() == store_error::kind::damaged);
    REQUIRE_THAT(e.what(), Catch::Contains("cut short") && Catch::Contains(file.string()));
  }
  auto ro = options_in(d);
  ro.read_only = true;
  REQUIRE_THROWS_AS(log_store::open(ro), store_error);
}
