// The LMDB log behind log_store (see log_store.hpp and docs/store.md for the layout).
// Invariants: every value starts with the CRC32C of its key and the rest of the value;
// a topic's record (first, last, events, bytes) changes in the same transaction as its
// batches; the data directory is held with flock() by one process at a time, readers
// (read_only) take no lock and never write.
#include "lib/store/log_store.hpp"

#include <fcntl.h>
#include <lmdb.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>

#include <fmt/format.h>

#include "lib/store/crc32c.hpp"
#include "lib/wire/topic.hpp"

namespace meshbus::store {
namespace {

namespace fs = std::filesystem;

// --- byte helpers -----------------------------------------------------------

void put_be(std::vector<std::uint8_t>& out, std::uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
std::uint64_t get_be(const std::uint8_t* p, int bytes) {
  std::uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | p[i];
  return v;
}
void put_le(std::vector<std::uint8_t>& out, std::uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
std::uint64_t get_le(const std::uint8_t* p, int bytes) {
  std::uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

MDB_val val(const void* data, std::size_t size) { return MDB_val{size, const_cast<void*>(data)}; }
MDB_val val(const std::vector<std::uint8_t>& v) { return val(v.data(), v.size()); }
byte_span span_of(const MDB_val& v) { return {static_cast<const std::uint8_t*>(v.mv_data), v.mv_size}; }

// Every value: CRC32C (little-endian) of key + body, then the body.
std::uint32_t record_crc(byte_span key, byte_span body) {
  return crc32c(crc32c(0, key.data(), key.size()), body.data(), body.size());
}
std::vector<std::uint8_t> sealed(byte_span key, byte_span body) {
  std::vector<std::uint8_t> out;
  out.reserve(body.size() + 4);
  put_le(out, record_crc(key, body), 4);
  out.insert(out.end(), body.begin(), body.end());
  return out;
}
/// The body of a sealed value, or nullopt when its CRC does not match.
std::optional<byte_span> opened(byte_span key, byte_span value) {
  if (value.size() < 4) return std::nullopt;
  const auto body = value.subspan(4);
  if (static_cast<std::uint32_t>(get_le(value.data(), 4)) != record_crc(key, body)) return std::nullopt;
  return body;
}

// --- keys --------------------------------------------------------------------

std::vector<std::uint8_t> topic_key(std::uint64_t epoch, std::string_view topic) {
  std::vector<std::uint8_t> k;
  put_be(k, epoch, 8);
  k.insert(k.end(), topic.begin(), topic.end());
  return k;
}
std::vector<std::uint8_t> batch_key(std::uint32_t topic_id, std::uint64_t seq) {
  std::vector<std::uint8_t> k;
  put_be(k, topic_id, 4);
  put_be(k, seq, 8);
  return k;
}
std::vector<std::uint8_t> time_key(std::uint32_t topic_id, std::uint64_t ts, std::uint64_t seq) {
  std::vector<std::uint8_t> k;
  put_be(k, topic_id, 4);
  put_be(k, ts, 8);
  put_be(k, seq, 8);
  return k;
}

/// A topic of one epoch: its id and what the log holds of it.
struct topic_record {
  std::uint32_t id = 0;
  std::uint64_t first = 0;  ///< 0: nothing held
  std::uint64_t last = 0;   ///< last sequence ever stored (kept when retention empties it)
  std::uint64_t events = 0;
  std::uint64_t bytes = 0;

  std::vector<std::uint8_t> body() const {
    std::vector<std::uint8_t> b;
    put_le(b, id, 4);
    put_le(b, first, 8);
    put_le(b, last, 8);
    put_le(b, events, 8);
    put_le(b, bytes, 8);
    return b;
  }
  static std::optional<topic_record> parse(byte_span b) {
    if (b.size() != 36) return std::nullopt;
    topic_record r;
    r.id = static_cast<std::uint32_t>(get_le(b.data(), 4));
    r.first = get_le(b.data() + 4, 8);
    r.last = get_le(b.data() + 12, 8);
    r.events = get_le(b.data() + 20, 8);
    r.bytes = get_le(b.data() + 28, 8);
    return r;
  }
};

// A batch value's body: count (u32 LE), base timestamp (u64 LE), then the frame.
constexpr std::size_t batch_head = 12;

std::string describe(int rc) { return mdb_strerror(rc); }

bool is_full(int rc) { return rc == MDB_MAP_FULL || rc == ENOSPC || rc == EDQUOT; }

const char* table_name(table t) {
  switch (t) {
    case table::positions: return "positions";
    case table::kv: return "kv";
    case table::outbox: return "outbox";
    case table::dead_letters: return "dead_letters";
    case table::sagas: return "sagas";
    case table::events: return "events";
  }
  return "?";
}
constexpr table all_tables[] = {table::positions, table::kv,    table::outbox,
                                table::dead_letters, table::sagas, table::events};

std::string boot_id() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string s;
  std::getline(in, s);
  return s;
}

std::uint64_t unix_us() {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
}

// --- the implementation -------------------------------------------------------

class lmdb_store final : public log_store {
 public:
  explicit lmdb_store(const store_options& o) : opts_(o) {}
  ~lmdb_store() override { close(); }

  void open();

  const identity& who() const noexcept override { return who_; }
  const store_options& options() const noexcept override { return opts_; }
  const std::string& path() const noexcept override { return file_; }

  std::vector<std::pair<std::string, std::uint64_t>> last_sequences() const override;
  write_result append(std::span<const history_batch> batches) override;
  history_read read(std::string_view topic, std::uint64_t from, std::uint64_t to, std::uint32_t max_batches,
                    const std::function<void(const history_batch&)>& visit) const override;
  std::uint64_t sequence_at(std::string_view topic, std::uint64_t unix_ns) const override;
  std::uint64_t enforce_retention(const std::vector<retention_rule>& rules, std::uint64_t unix_now_ns) override;
  std::chrono::steady_clock::time_point tick(std::chrono::steady_clock::time_point now) override;
  write_result sync() override;

  std::unique_ptr<transaction> begin() override;
  std::optional<std::vector<std::uint8_t>> get(table t, byte_span key) const override;
  void scan(table t, byte_span prefix,
            const std::function<void(byte_span, byte_span, bool)>& visit) const override;
  void scan_from(table t, byte_span prefix, byte_span from, bool backward,
                 const std::function<bool(byte_span, byte_span, bool)>& visit) const override;

  std::vector<topic_summary> topics() const override;
  void read_epoch(std::uint64_t epoch, std::string_view topic, std::uint64_t from,
                  const std::function<bool(const history_batch&, bool)>& visit) const override;

  // For the transaction class.
  MDB_env* env() const { return env_; }
  MDB_dbi dbi(table t) const { return tables_[static_cast<std::size_t>(t)]; }
  write_result commit(MDB_txn* txn);
  write_result failure(int rc, std::string_view what) const;

 private:
  /// A read transaction, aborted at scope exit.
  class reader {
   public:
    explicit reader(const lmdb_store& s) {
      if (const int rc = mdb_txn_begin(s.env_, nullptr, MDB_RDONLY, &txn_); rc != 0) {
        throw store_error(store_error::kind::io,
                          fmt::format("cannot read {}: {}", s.file_, describe(rc)));
      }
    }
    ~reader() { mdb_txn_abort(txn_); }
    reader(const reader&) = delete;
    reader& operator=(const reader&) = delete;
    MDB_txn* get() const { return txn_; }

   private:
    MDB_txn* txn_ = nullptr;
  };

  void prepare_directory();
  void take_lock();
  void open_env();
  /// A file shorter than the pages its meta page names was cut (a copy stopped
  /// short, a truncation): reading those pages would fault, so it is refused.
  void check_length();
  void open_tables(MDB_txn* txn, bool create);
  void load_identity(MDB_txn* txn);
  std::optional<byte_span> meta(MDB_txn* txn, std::string_view key) const;
  int put_meta(MDB_txn* txn, std::string_view key, byte_span body);
  std::optional<topic_record> find_topic(MDB_txn* txn, std::uint64_t epoch, std::string_view topic) const;
  void close();
  [[noreturn]] void fail(store_error::kind k, const std::string& what) const;

  store_options opts_;
  std::string file_;
  int lock_fd_ = -1;
  MDB_env* env_ = nullptr;
  MDB_dbi meta_{}, topics_{}, topic_ids_{}, batches_{}, times_{};
  MDB_dbi tables_[std::size(all_tables)]{};
  identity who_;
  // Topics of this epoch (writer side): name -> record, loaded at open.
  mutable std::mutex topics_mu_;
  std::map<std::string, topic_record, std::less<>> live_;
  std::uint32_t next_topic_id_ = 1;
  // interval policy
  std::mutex sync_mu_;
  bool dirty_ = false;
  std::chrono::steady_clock::time_point next_sync_{};
};

[[noreturn]] void lmdb_store::fail(store_error::kind k, const std::string& what) const {
  throw store_error(k, what);
}

write_result lmdb_store::failure(int rc, std::string_view what) const {
  write_result r;
  // LMDB reports a short write as EIO: a disk with (almost) no room left made it.
  if (rc == EIO) {
    struct statvfs fs_info {};
    if (::statvfs(opts_.dir.c_str(), &fs_info) == 0 &&
        static_cast<std::uint64_t>(fs_info.f_bavail) * fs_info.f_frsize < (std::uint64_t{64} << 20)) {
      rc = ENOSPC;
    }
  }
  r.state = is_full(rc) ? write_result::status::full : write_result::status::failed;
  if (rc == MDB_MAP_FULL) {
    r.message = fmt::format("{}: the log {} reached its map size ({} bytes): raise Options::store_map_bytes, or "
                            "bound the history with Options::retention",
                            what, file_, opts_.map_bytes);
  } else if (is_full(rc)) {
    r.message = fmt::format("{}: the disk holding {} is full: free space there (writing goes on by itself)", what,
                            file_);
  } else {
    r.message = fmt::format("{}: {} ({})", what, describe(rc), file_);
  }
  return r;
}

void lmdb_store::prepare_directory() {
  std::error_code ec;
  const fs::path dir(opts_.dir);
  file_ = (dir / "log.mdb").string();
  if (fs::exists(dir, ec) && !fs::is_directory(dir, ec)) {
    fail(store_error::kind::no_access,
         fmt::format("data directory {} is not a directory: give a directory (it is created if absent)", opts_.dir));
  }
  if (opts_.read_only) {
    if (!fs::exists(file_, ec)) {
      fail(store_error::kind::not_a_log,
           fmt::format("{} holds no meshbus log ({} does not exist): is this a node's data directory?", opts_.dir,
                       file_));
    }
    return;
  }
  fs::create_directories(dir, ec);
  if (ec) {
    fail(store_error::kind::no_access,
         fmt::format("cannot create data directory {}: {}: choose a directory this user can write", opts_.dir,
                     ec.message()));
  }
  if (::access(opts_.dir.c_str(), W_OK) != 0) {
    fail(store_error::kind::no_access,
         fmt::format("data directory {} is not writable ({}): make it writable by this user, or choose another "
                     "(read-only file systems cannot hold a node's log; `meshbus log` reads one)",
                     opts_.dir, std::strerror(errno)));
  }
}

void lmdb_store::take_lock() {
  const auto lock_path = (fs::path(opts_.dir) / "meshbus.lock").string();
  lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd_ < 0) {
    fail(store_error::kind::no_access, fmt::format("cannot open {}: {}", lock_path, std::strerror(errno)));
  }
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    char pid[32] = {};
    const auto n = ::pread(lock_fd_, pid, sizeof pid - 1, 0);
    std::string holder = n > 0 ? std::string(pid, static_cast<std::size_t>(n)) : std::string("?");
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    ::close(lock_fd_);
    lock_fd_ = -1;
    fail(store_error::kind::locked,
         fmt::format("data directory {} is in use by another process (pid {}): each node needs its own data "
                     "directory; stop that process or choose another directory",
                     opts_.dir, holder));
  }
  const auto text = fmt::format("{}\n", ::getpid());
  if (::ftruncate(lock_fd_, 0) == 0) {
    [[maybe_unused]] const auto w = ::pwrite(lock_fd_, text.data(), text.size(), 0);
  }
}

void lmdb_store::open_env() {
  if (const int rc = mdb_env_create(&env_); rc != 0) fail(store_error::kind::io, describe(rc));
  mdb_env_set_maxdbs(env_, 16);
  mdb_env_set_mapsize(env_, opts_.map_bytes);
  unsigned flags = MDB_NOSUBDIR | MDB_NOTLS;
  if (opts_.read_only) flags |= MDB_RDONLY;
  if (opts_.policy != durability::always) flags |= MDB_NOSYNC;
  int rc = mdb_env_open(env_, file_.c_str(), flags, 0644);
  if (rc == 0) return;
  if (opts_.read_only && (rc == EROFS || rc == EACCES)) {
    // A log on a read-only file system (an archived copy): no writer can be there, so
    // it is read without LMDB's reader table.
    rc = mdb_env_open(env_, file_.c_str(), flags | MDB_NOLOCK, 0644);
    if (rc == 0) return;
  }
  mdb_env_close(env_);
  env_ = nullptr;
  if (rc == MDB_INVALID) {
    fail(store_error::kind::not_a_log,
         fmt::format("{} is not a meshbus log (not an LMDB file): move it away, or choose another data directory",
                     file_));
  }
  if (rc == MDB_VERSION_MISMATCH) {
    fail(store_error::kind::newer_format,
         fmt::format("{} was written by another LMDB version: open it with the meshbus that wrote it", file_));
  }
  if (rc == EACCES || rc == EROFS || rc == EPERM) {
    fail(store_error::kind::no_access,
         fmt::format("cannot open {}: {}: make it (and its directory) writable by this user", file_, describe(rc)));
  }
  fail(store_error::kind::io, fmt::format("cannot open {}: {}", file_, describe(rc)));
}

void lmdb_store::check_length() {
  MDB_envinfo info{};
  MDB_stat st{};
  mdb_env_info(env_, &info);
  mdb_env_stat(env_, &st);
  std::error_code ec;
  const auto size = fs::file_size(file_, ec);
  const auto needed = (static_cast<std::uintmax_t>(info.me_last_pgno) + 1) * st.ms_psize;
  if (ec || size >= needed) return;
  mdb_env_close(env_);
  env_ = nullptr;
  fail(store_error::kind::damaged,
       fmt::format("{} is cut short: {} bytes, but its last page ends at {}; the log was truncated (or copied "
                   "while being written). Move the data directory aside and start afresh; restore it from a "
                   "complete copy if you have one",
                   file_, size, needed));
}

std::optional<byte_span> lmdb_store::meta(MDB_txn* txn, std::string_view key) const {
  MDB_val k = val(key.data(), key.size());
  MDB_val v;
  if (mdb_get(txn, meta_, &k, &v) != 0) return std::nullopt;
  const auto body = opened(as_span(key), span_of(v));
  if (!body) {
    fail(store_error::kind::damaged,
         fmt::format("the '{}' record of {} is damaged (CRC32C mismatch): the log cannot be trusted; move the data "
                     "directory aside (its history can still be read with `meshbus log`) and start afresh",
                     key, file_));
  }
  return body;
}

int lmdb_store::put_meta(MDB_txn* txn, std::string_view key, byte_span body) {
  const auto v = sealed(as_span(key), body);
  MDB_val k = val(key.data(), key.size());
  MDB_val d = val(v);
  return mdb_put(txn, meta_, &k, &d, 0);
}

void lmdb_store::open_tables(MDB_txn* txn, bool create) {
  const unsigned f = create ? MDB_CREATE : 0u;
  auto open_one = [&](const char* name, MDB_dbi& dbi) {
    const int rc = mdb_dbi_open(txn, name, f, &dbi);
    if (rc == MDB_NOTFOUND || rc == MDB_INCOMPATIBLE) {
      fail(store_error::kind::not_a_log,
           fmt::format("{} is an LMDB file but not a meshbus log (no '{}' table): move it away, or choose another "
                       "data directory",
                       file_, name));
    }
    if (rc != 0) fail(store_error::kind::io, fmt::format("cannot open table '{}' of {}: {}", name, file_, describe(rc)));
  };
  open_one("meta", meta_);
  open_one("topics", topics_);
  open_one("topic_ids", topic_ids_);
  open_one("batches", batches_);
  open_one("times", times_);
  for (const auto t : all_tables) {
    if (t == table::events) continue;
    open_one(table_name(t), tables_[static_cast<std::size_t>(t)]);
  }
  // Added after format 1 was first written: created in a log that lacks it; a
  // read-only open of such a log sees it empty (handle 0, never one LMDB hands out).
  auto& events = tables_[static_cast<std::size_t>(table::events)];
  const int rc = mdb_dbi_open(txn, table_name(table::events), opts_.read_only ? 0u : unsigned{MDB_CREATE}, &events);
  if (rc == MDB_NOTFOUND && opts_.read_only) {
    events = 0;
  } else if (rc != 0) {
    fail(store_error::kind::io, fmt::format("cannot open table 'events' of {}: {}", file_, describe(rc)));
  }
}

void lmdb_store::load_identity(MDB_txn* txn) {
  const auto node = meta(txn, "node_id");
  const auto epoch = meta(txn, "epoch");
  if (node && node->size() == 16 && epoch && epoch->size() == 8) {
    std::copy(node->begin(), node->end(), who_.node_id.begin());
    who_.epoch = get_le(epoch->data(), 8);
  } else if (node || epoch) {
    fail(store_error::kind::damaged,
         fmt::format("the identity records of {} are incomplete: move the data directory aside and start afresh",
                     file_));
  }
}

void lmdb_store::open() {
  prepare_directory();
  if (!opts_.read_only) take_lock();
  open_env();
  check_length();

  MDB_txn* txn = nullptr;
  int rc = mdb_txn_begin(env_, nullptr, opts_.read_only ? MDB_RDONLY : 0u, &txn);
  if (rc != 0) fail(store_error::kind::io, fmt::format("cannot read {}: {}", file_, describe(rc)));
  struct guard {
    MDB_txn*& t;
    ~guard() {
      if (t) mdb_txn_abort(t);
    }
  } g{txn};

  // A new file has an empty main table; one with other tables but no "meta" is not ours.
  MDB_dbi main{};
  mdb_dbi_open(txn, nullptr, 0, &main);
  MDB_stat st{};
  mdb_stat(txn, main, &st);
  const bool fresh = st.ms_entries == 0;
  if (fresh && opts_.read_only) {
    fail(store_error::kind::not_a_log, fmt::format("{} is an empty log: the node never stored anything", file_));
  }
  open_tables(txn, fresh);

  if (const auto format = meta(txn, "format")) {
    const auto v = format->size() == 4 ? static_cast<std::uint32_t>(get_le(format->data(), 4)) : 0u;
    if (v > format_version) {
      fail(store_error::kind::newer_format,
           fmt::format("{} is a log of format {}, newer than this meshbus reads ({}): upgrade meshbus, or move the "
                       "data directory aside",
                       file_, v, format_version));
    }
    if (v == 0) fail(store_error::kind::damaged, fmt::format("the format record of {} is damaged", file_));
  } else if (!fresh) {
    fail(store_error::kind::not_a_log,
         fmt::format("{} is an LMDB file but not a meshbus log (no format record): move it away, or choose another "
                     "data directory",
                     file_));
  }
  load_identity(txn);

  if (opts_.read_only) {
    // Committed, not aborted: LMDB closes the table handles opened in a transaction that
    // is aborted, and the reads (topics(), read_epoch()) need them. Topics are read on demand.
    rc = mdb_txn_commit(txn);
    txn = nullptr;
    if (rc != 0) fail(store_error::kind::io, fmt::format("cannot read {}: {}", file_, describe(rc)));
    return;
  }

  std::vector<std::uint8_t> b;
  if (fresh || who_.epoch == 0) {
    who_.new_node = true;
    who_.new_epoch = true;
    if (opts_.node_id) {
      who_.node_id = *opts_.node_id;
    } else {
      std::random_device rd;
      for (auto& x : who_.node_id) x = static_cast<std::uint8_t>(rd());
    }
    b.clear();
    put_le(b, format_version, 4);
    rc = put_meta(txn, "format", b);
    if (rc == 0) rc = put_meta(txn, "node_id", who_.node_id);
  } else {
    // Continue the epoch only when the log surely holds everything the last run sent:
    // it synced every batch (always), it was closed cleanly, or this is the same boot
    // (the page cache survived a crash of the process).
    const auto clean = meta(txn, "clean");
    const auto policy = meta(txn, "policy");
    const auto boot = meta(txn, "boot_id");
    const bool was_clean = clean && clean->size() == 1 && (*clean)[0] == 1;
    const bool was_always = policy && policy->size() == 1 && (*policy)[0] == static_cast<std::uint8_t>(durability::always);
    const auto now_boot = boot_id();
    const bool same_boot = boot && !now_boot.empty() &&
                           std::string_view(reinterpret_cast<const char*>(boot->data()), boot->size()) == now_boot;
    if (opts_.node_id && *opts_.node_id != who_.node_id) {
      fail(store_error::kind::not_a_log,
           fmt::format("{} belongs to node {:02x}, not the node id given (Options::node_id): choose the node's own "
                       "data directory, or leave node_id unset",
                       file_, fmt::join(who_.node_id, "")));
    }
    if (!(was_clean || was_always || same_boot)) {
      who_.new_epoch = true;
      who_.new_epoch_reason = "the last run neither closed the log cleanly nor synced every batch, and the machine "
                              "restarted since: the log may lack the tail it sent";
    }
  }
  if (who_.new_epoch) who_.epoch = std::max(unix_us(), who_.epoch + 1);
  b.clear();
  put_le(b, who_.epoch, 8);
  if (rc == 0) rc = put_meta(txn, "epoch", b);
  const std::uint8_t zero = 0;
  if (rc == 0) rc = put_meta(txn, "clean", byte_span(&zero, 1));
  const auto policy = static_cast<std::uint8_t>(opts_.policy);
  if (rc == 0) rc = put_meta(txn, "policy", byte_span(&policy, 1));
  const auto now_boot = boot_id();
  if (rc == 0) rc = put_meta(txn, "boot_id", as_span(now_boot));

  // This epoch's topics, and the next free topic id.
  if (const auto next = meta(txn, "next_topic_id"); next && next->size() == 4) {
    next_topic_id_ = static_cast<std::uint32_t>(get_le(next->data(), 4));
  }
  const auto prefix = topic_key(who_.epoch, "");
  MDB_cursor* cur = nullptr;
  mdb_cursor_open(txn, topics_, &cur);
  MDB_val k = val(prefix), v;
  for (int c = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); c == 0; c = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
    const auto key = span_of(k);
    if (key.size() < 8 || get_be(key.data(), 8) != who_.epoch) break;
    const auto body = opened(key, span_of(v));
    const auto rec = body ? topic_record::parse(*body) : std::nullopt;
    const std::string name(reinterpret_cast<const char*>(key.data() + 8), key.size() - 8);
    if (!rec) {
      mdb_cursor_close(cur);
      fail(store_error::kind::damaged,
           fmt::format("the record of topic '{}' in {} is damaged: move the data directory aside and start afresh "
                       "(`meshbus log` can still read what is intact)",
                       name, file_));
    }
    live_.emplace(name, *rec);
  }
  mdb_cursor_close(cur);

  if (rc == 0) {
    rc = mdb_txn_commit(txn);
    txn = nullptr;
  }
  if (rc != 0) {
    if (is_full(rc)) {
      fail(store_error::kind::io,
           fmt::format("cannot write {}: the disk is full: free space there and start again", file_));
    }
    fail(store_error::kind::io, fmt::format("cannot write {}: {}", file_, describe(rc)));
  }
  if (opts_.policy != durability::always) mdb_env_sync(env_, 1);  // the identity, at least
}

void lmdb_store::close() {
  if (env_ != nullptr) {
    if (!opts_.read_only) {
      MDB_txn* txn = nullptr;
      if (mdb_txn_begin(env_, nullptr, 0, &txn) == 0) {
        const std::uint8_t one = 1;
        if (put_meta(txn, "clean", byte_span(&one, 1)) == 0) {
          mdb_txn_commit(txn);
        } else {
          mdb_txn_abort(txn);
        }
      }
      mdb_env_sync(env_, 1);
    }
    mdb_env_close(env_);
    env_ = nullptr;
  }
  if (lock_fd_ >= 0) {
    ::close(lock_fd_);  // releases the flock
    lock_fd_ = -1;
  }
}

write_result lmdb_store::commit(MDB_txn* txn) {
  if (const int rc = mdb_txn_commit(txn); rc != 0) return failure(rc, "writing the log failed");
  if (opts_.policy == durability::interval) {
    std::lock_guard lock(sync_mu_);
    dirty_ = true;
  }
  return {};
}

std::optional<topic_record> lmdb_store::find_topic(MDB_txn* txn, std::uint64_t epoch, std::string_view topic) const {
  const auto key = topic_key(epoch, topic);
  MDB_val k = val(key), v;
  if (mdb_get(txn, topics_, &k, &v) != 0) return std::nullopt;
  const auto body = opened(key, span_of(v));
  return body ? topic_record::parse(*body) : std::nullopt;
}

std::vector<std::pair<std::string, std::uint64_t>> lmdb_store::last_sequences() const {
  std::lock_guard lock(topics_mu_);
  std::vector<std::pair<std::string, std::uint64_t>> out;
  for (const auto& [name, rec] : live_) out.emplace_back(name, rec.last);
  return out;
}

write_result lmdb_store::append(std::span<const history_batch> batches) {
  if (batches.empty()) return {};
  if (opts_.read_only) return {write_result::status::failed, "the log is open read-only"};
  std::lock_guard lock(topics_mu_);  // one appender at a time: live_ follows the transaction
  MDB_txn* txn = nullptr;
  if (const int rc = mdb_txn_begin(env_, nullptr, 0, &txn); rc != 0) return failure(rc, "writing the log failed");
  auto changed = live_;  // copy-on-write: live_ changes only if the commit succeeds
  bool new_topics = false;
  std::uint32_t next_id = next_topic_id_;
  std::vector<std::uint8_t> key, body, value;
  int rc = 0;
  for (const auto& b : batches) {
    auto it = changed.find(b.topic);
    if (it == changed.end()) {
      topic_record r;
      r.id = next_id++;
      new_topics = true;
      it = changed.emplace(std::string(b.topic), r).first;
      std::vector<std::uint8_t> idk;
      put_be(idk, r.id, 4);
      const auto tk = topic_key(who_.epoch, b.topic);
      const auto sv = sealed(idk, tk);
      MDB_val k = val(idk), v = val(sv);
      if ((rc = mdb_put(txn, topic_ids_, &k, &v, 0)) != 0) break;
    }
    auto& rec = it->second;
    key = batch_key(rec.id, b.first_seq);
    body.clear();
    put_le(body, b.count, 4);
    put_le(body, b.timestamp_ns, 8);
    // The value is written in place: CRC, head, frame, with one copy of the frame.
    MDB_val k = val(key);
    MDB_val v{4 + batch_head + b.frame.size(), nullptr};
    if ((rc = mdb_put(txn, batches_, &k, &v, MDB_RESERVE)) != 0) break;
    auto* out = static_cast<std::uint8_t*>(v.mv_data);
    std::memcpy(out + 4, body.data(), batch_head);
    if (!b.frame.empty()) std::memcpy(out + 4 + batch_head, b.frame.data(), b.frame.size());
    const auto crc = record_crc(key, byte_span(out + 4, batch_head + b.frame.size()));
    for (int i = 0; i < 4; ++i) out[i] = static_cast<std::uint8_t>(crc >> (8 * i));
    const auto tk = time_key(rec.id, b.timestamp_ns, b.first_seq);
    MDB_val tkv = val(tk), empty{0, nullptr};
    if ((rc = mdb_put(txn, times_, &tkv, &empty, 0)) != 0) break;
    if (rec.first == 0) rec.first = b.first_seq;
    rec.last = std::max(rec.last, b.first_seq + b.count - 1);
    rec.events += b.count;
    rec.bytes += b.frame.size();
  }
  if (rc == 0) {
    for (const auto& b : batches) {
      const auto& rec = changed.find(b.topic)->second;
      const auto tk = topic_key(who_.epoch, b.topic);
      const auto sv = sealed(tk, rec.body());
      MDB_val k = val(tk), v = val(sv);
      if ((rc = mdb_put(txn, topics_, &k, &v, 0)) != 0) break;
    }
  }
  if (rc == 0 && new_topics) {
    std::vector<std::uint8_t> n;
    put_le(n, next_id, 4);
    rc = put_meta(txn, "next_topic_id", n);
  }
  if (rc != 0) {
    mdb_txn_abort(txn);
    return failure(rc, "writing the history failed");
  }
  auto r = commit(txn);
  if (r) {
    live_ = std::move(changed);
    next_topic_id_ = next_id;
  }
  return r;
}

history_read lmdb_store::read(std::string_view topic, std::uint64_t from, std::uint64_t to, std::uint32_t max_batches,
                              const std::function<void(const history_batch&)>& visit) const {
  history_read out;
  reader rd(*this);
  const auto rec = find_topic(rd.get(), who_.epoch, topic);
  if (!rec) return out;
  out.oldest = rec->first;
  out.last = rec->last;
  if (rec->first == 0 || from > to) return out;
  MDB_cursor* cur = nullptr;
  mdb_cursor_open(rd.get(), batches_, &cur);
  // The batch holding `from` starts at or before it: find the last key <= (id, from).
  auto key = batch_key(rec->id, std::max(from, rec->first));
  MDB_val k = val(key), v;
  int c = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
  auto same_topic = [&](const MDB_val& kk) {
    return kk.mv_size == 12 && get_be(static_cast<const std::uint8_t*>(kk.mv_data), 4) == rec->id;
  };
  bool exact = c == 0 && same_topic(k) && get_be(static_cast<const std::uint8_t*>(k.mv_data) + 4, 8) == from;
  if (!exact) {
    c = c == 0 ? mdb_cursor_get(cur, &k, &v, MDB_PREV) : mdb_cursor_get(cur, &k, &v, MDB_LAST);
    if (c != 0 || !same_topic(k)) c = mdb_cursor_get(cur, &k, &v, c == 0 ? MDB_NEXT : MDB_FIRST);
  }
  auto first_of = [](const MDB_val& kk) { return get_be(static_cast<const std::uint8_t*>(kk.mv_data) + 4, 8); };
  while (c == 0 && same_topic(k) && out.batches < max_batches) {
    const auto first = first_of(k);
    if (first > to) break;
    const auto body = opened(span_of(k), span_of(v));
    if (!body || body->size() < batch_head) {
      // The count is inside the damaged value: the range ends where the next batch starts.
      c = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
      const auto end = c == 0 && same_topic(k) ? std::min(to, first_of(k) - 1) : std::min(to, rec->last);
      if (end >= std::max(first, from)) {
        out.damaged.emplace_back(std::max(first, from), end);
        out.damage = fmt::format("a record of topic '{}' in {} (sequence {} on) failed its CRC32C check", topic,
                                 file_, first);
        ++out.batches;
      }
      continue;
    }
    history_batch hb;
    hb.topic = topic;
    hb.first_seq = first;
    hb.count = static_cast<std::uint32_t>(get_le(body->data(), 4));
    hb.timestamp_ns = get_le(body->data() + 4, 8);
    hb.frame = body->subspan(batch_head);
    if (hb.count > 0 && hb.first_seq + hb.count - 1 >= from) {
      ++out.batches;
      visit(hb);
    }
    c = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
  }
  mdb_cursor_close(cur);
  return out;
}

std::uint64_t lmdb_store::sequence_at(std::string_view topic, std::uint64_t unix_ns) const {
  reader rd(*this);
  const auto rec = find_topic(rd.get(), who_.epoch, topic);
  if (!rec) return 1;
  MDB_cursor* cur = nullptr;
  mdb_cursor_open(rd.get(), times_, &cur);
  auto key = time_key(rec->id, unix_ns, 0);
  MDB_val k = val(key), v;
  std::uint64_t seq = rec->last + 1;
  if (mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE) == 0 && k.mv_size == 20 &&
      get_be(static_cast<const std::uint8_t*>(k.mv_data), 4) == rec->id) {
    seq = get_be(static_cast<const std::uint8_t*>(k.mv_data) + 12, 8);
  }
  mdb_cursor_close(cur);
  return seq;
}

std::uint64_t lmdb_store::enforce_retention(const std::vector<retention_rule>& rules, std::uint64_t unix_now_ns) {
  if (rules.empty() || opts_.read_only) return 0;
  std::vector<std::pair<wire::pattern, const retention_rule*>> compiled;
  for (const auto& r : rules) {
    wire::pattern p;
    std::string error;
    if (wire::pattern::compile(r.pattern, p, error)) compiled.emplace_back(std::move(p), &r);
  }
  std::lock_guard lock(topics_mu_);
  MDB_txn* txn = nullptr;
  if (mdb_txn_begin(env_, nullptr, 0, &txn) != 0) return 0;
  auto changed = live_;
  std::uint64_t deleted = 0;
  int rc = 0;
  for (auto& [name, rec] : changed) {
    const retention_rule* rule = nullptr;
    for (const auto& [p, r] : compiled) {
      if (p.matches(name)) {
        rule = r;
        break;
      }
    }
    if (rule == nullptr || rec.first == 0) continue;
    MDB_cursor* cur = nullptr;
    mdb_cursor_open(txn, batches_, &cur);
    auto key = batch_key(rec.id, 0);
    MDB_val k = val(key), v;
    bool touched = false;
    for (int c = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); c == 0 && rc == 0;
         c = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE)) {
      if (k.mv_size != 12 || get_be(static_cast<const std::uint8_t*>(k.mv_data), 4) != rec.id) break;
      const auto first = get_be(static_cast<const std::uint8_t*>(k.mv_data) + 4, 8);
      const auto body = opened(span_of(k), span_of(v));
      const std::uint32_t count = body && body->size() >= batch_head ? static_cast<std::uint32_t>(get_le(body->data(), 4)) : 0;
      const std::uint64_t ts = body && body->size() >= batch_head ? get_le(body->data() + 4, 8) : 0;
      const std::uint64_t bytes = body && body->size() >= batch_head ? body->size() - batch_head : 0;
      const bool too_old = rule->max_age.count() > 0 &&
                           ts + static_cast<std::uint64_t>(std::chrono::nanoseconds(rule->max_age).count()) < unix_now_ns;
      const bool too_many = rule->max_events > 0 && rec.events > rule->max_events;
      const bool too_big = rule->max_bytes > 0 && rec.bytes > rule->max_bytes;
      if (!(too_old || too_many || too_big)) break;
      if ((rc = mdb_cursor_del(cur, 0)) != 0) break;
      if (body) {
        const auto tk = time_key(rec.id, ts, first);
        MDB_val tkv = val(tk);
        mdb_del(txn, times_, &tkv, nullptr);
      }
      rec.events -= std::min<std::uint64_t>(rec.events, count);
      rec.bytes -= std::min(rec.bytes, bytes);
      deleted += count;
      touched = true;
      key = batch_key(rec.id, first + std::max<std::uint32_t>(count, 1));
      k = val(key);
    }
    mdb_cursor_close(cur);
    if (!touched || rc != 0) continue;
    // What is left starts at the next batch (nothing: last + 1, kept as "first = 0").
    MDB_cursor* c2 = nullptr;
    mdb_cursor_open(txn, batches_, &c2);
    auto k0 = batch_key(rec.id, 0);
    MDB_val kk = val(k0), vv;
    rec.first = 0;
    if (mdb_cursor_get(c2, &kk, &vv, MDB_SET_RANGE) == 0 && kk.mv_size == 12 &&
        get_be(static_cast<const std::uint8_t*>(kk.mv_data), 4) == rec.id) {
      rec.first = get_be(static_cast<const std::uint8_t*>(kk.mv_data) + 4, 8);
    } else {
      rec.events = 0;
      rec.bytes = 0;
    }
    mdb_cursor_close(c2);
    const auto tk = topic_key(who_.epoch, name);
    const auto sv = sealed(tk, rec.body());
    MDB_val tkv = val(tk), sval = val(sv);
    rc = mdb_put(txn, topics_, &tkv, &sval, 0);
  }
  if (rc != 0 || deleted == 0) {
    mdb_txn_abort(txn);
    return 0;
  }
  if (!commit(txn)) return 0;
  live_ = std::move(changed);
  return deleted;
}

std::chrono::steady_clock::time_point lmdb_store::tick(std::chrono::steady_clock::time_point now) {
  if (opts_.policy != durability::interval) return std::chrono::steady_clock::time_point::max();
  bool due = false;
  {
    std::lock_guard lock(sync_mu_);
    if (now >= next_sync_) {
      due = dirty_;
      dirty_ = false;
      next_sync_ = now + opts_.sync_interval;
    }
  }
  if (due) mdb_env_sync(env_, 1);
  return next_sync_;
}

write_result lmdb_store::sync() {
  if (opts_.read_only) return {};
  if (const int rc = mdb_env_sync(env_, 1); rc != 0) return failure(rc, "syncing the log failed");
  return {};
}

// --- the small tables ----------------------------------------------------------

class lmdb_transaction final : public log_store::transaction {
 public:
  lmdb_transaction(lmdb_store& s, MDB_txn* txn) : s_(s), txn_(txn) {}
  ~lmdb_transaction() override {
    if (txn_ != nullptr) mdb_txn_abort(txn_);
  }
  void put(table t, byte_span key, byte_span value) override {
    if (rc_ != 0) return;
    const auto v = sealed(key, value);
    MDB_val k = val(key.data(), key.size()), d = val(v);
    rc_ = mdb_put(txn_, s_.dbi(t), &k, &d, 0);
  }
  void erase(table t, byte_span key) override {
    if (rc_ != 0) return;
    MDB_val k = val(key.data(), key.size());
    const int rc = mdb_del(txn_, s_.dbi(t), &k, nullptr);
    if (rc != MDB_NOTFOUND) rc_ = rc;
  }
  std::optional<std::vector<std::uint8_t>> get(table t, byte_span key) override {
    MDB_val k = val(key.data(), key.size()), v;
    if (mdb_get(txn_, s_.dbi(t), &k, &v) != 0) return std::nullopt;
    const auto body = opened(key, span_of(v));
    if (!body) {
      throw store_error(store_error::kind::damaged,
                        fmt::format("a record of table '{}' in {} failed its CRC32C check", table_name(t), s_.path()));
    }
    return std::vector<std::uint8_t>(body->begin(), body->end());
  }
  write_result commit() override {
    auto* txn = std::exchange(txn_, nullptr);
    if (rc_ != 0) {
      mdb_txn_abort(txn);
      return s_.failure(rc_, "writing the log failed");
    }
    return s_.commit(txn);
  }

 private:
  lmdb_store& s_;
  MDB_txn* txn_;
  int rc_ = 0;
};

std::unique_ptr<log_store::transaction> lmdb_store::begin() {
  if (opts_.read_only) throw store_error(store_error::kind::no_access, fmt::format("{} is open read-only", file_));
  MDB_txn* txn = nullptr;
  if (const int rc = mdb_txn_begin(env_, nullptr, 0, &txn); rc != 0) {
    throw store_error(store_error::kind::io, fmt::format("cannot write {}: {}", file_, describe(rc)));
  }
  return std::make_unique<lmdb_transaction>(*this, txn);
}

std::optional<std::vector<std::uint8_t>> lmdb_store::get(table t, byte_span key) const {
  if (dbi(t) == 0) return std::nullopt;
  reader rd(*this);
  MDB_val k = val(key.data(), key.size()), v;
  if (mdb_get(rd.get(), dbi(t), &k, &v) != 0) return std::nullopt;
  const auto body = opened(key, span_of(v));
  if (!body) {
    throw store_error(store_error::kind::damaged,
                      fmt::format("a record of table '{}' in {} failed its CRC32C check", table_name(t), file_));
  }
  return std::vector<std::uint8_t>(body->begin(), body->end());
}

void lmdb_store::scan(table t, byte_span prefix,
                      const std::function<void(byte_span, byte_span, bool)>& visit) const {
  if (dbi(t) == 0) return;
  reader rd(*this);
  MDB_cursor* cur = nullptr;
  mdb_cursor_open(rd.get(), dbi(t), &cur);
  MDB_val k = val(prefix.data(), prefix.size()), v;
  int c = prefix.empty() ? mdb_cursor_get(cur, &k, &v, MDB_FIRST) : mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
  for (; c == 0; c = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
    const auto key = span_of(k);
    if (key.size() < prefix.size() || !std::equal(prefix.begin(), prefix.end(), key.begin())) break;
    const auto body = opened(key, span_of(v));
    visit(key, body ? *body : byte_span{}, !body);
  }
  mdb_cursor_close(cur);
}

void lmdb_store::scan_from(table t, byte_span prefix, byte_span from, bool backward,
                           const std::function<bool(byte_span, byte_span, bool)>& visit) const {
  if (dbi(t) == 0) return;  // a table this (older) log does not have, opened read-only
  reader rd(*this);
  MDB_cursor* cur = nullptr;
  mdb_cursor_open(rd.get(), dbi(t), &cur);
  const auto has_prefix = [&](byte_span key) {
    return key.size() >= prefix.size() && std::equal(prefix.begin(), prefix.end(), key.begin());
  };
  std::vector<std::uint8_t> start(from.begin(), from.end());
  if (start.empty() || !has_prefix(start)) {
    start.assign(prefix.begin(), prefix.end());
    if (backward) {  // just past the last key with the prefix: the prefix's successor
      while (!start.empty() && start.back() == 0xff) start.pop_back();
      if (!start.empty()) ++start.back();
    }
  }
  MDB_val k = val(start.data(), start.size()), v;
  int c = start.empty() ? mdb_cursor_get(cur, &k, &v, backward ? MDB_LAST : MDB_FIRST)
                        : mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
  if (backward) {
    if (c == MDB_NOTFOUND) {
      c = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    } else if (c == 0) {
      const auto key = span_of(k);
      const bool exact = key.size() == start.size() && std::equal(start.begin(), start.end(), key.begin());
      if (!exact || from.empty()) c = mdb_cursor_get(cur, &k, &v, MDB_PREV);
    }
  }
  for (; c == 0; c = mdb_cursor_get(cur, &k, &v, backward ? MDB_PREV : MDB_NEXT)) {
    const auto key = span_of(k);
    if (!has_prefix(key)) break;
    const auto body = opened(key, span_of(v));
    if (!visit(key, body ? *body : byte_span{}, !body)) break;
  }
  mdb_cursor_close(cur);
}

// --- offline reading --------------------------------------------------------------

std::vector<topic_summary> lmdb_store::topics() const {
  std::vector<topic_summary> out;
  reader rd(*this);
  MDB_cursor* cur = nullptr;
  mdb_cursor_open(rd.get(), topics_, &cur);
  MDB_val k, v;
  for (int c = mdb_cursor_get(cur, &k, &v, MDB_FIRST); c == 0; c = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
    const auto key = span_of(k);
    if (key.size() < 8) continue;
    topic_summary s;
    s.epoch = get_be(key.data(), 8);
    s.topic.assign(reinterpret_cast<const char*>(key.data() + 8), key.size() - 8);
    const auto body = opened(key, span_of(v));
    if (const auto rec = body ? topic_record::parse(*body) : std::nullopt) {
      s.first_seq = rec->first;
      s.last_seq = rec->last;
      s.events = rec->events;
      s.bytes = rec->bytes;
    }
    out.push_back(std::move(s));
  }
  mdb_cursor_close(cur);
  return out;
}

void lmdb_store::read_epoch(std::uint64_t epoch, std::string_view topic, std::uint64_t from,
                            const std::function<bool(const history_batch&, bool)>& visit) const {
  reader rd(*this);
  const auto rec = find_topic(rd.get(), epoch, topic);
  if (!rec) return;
  MDB_cursor* cur = nullptr;
  mdb_cursor_open(rd.get(), batches_, &cur);
  auto key = batch_key(rec->id, 0);
  MDB_val k = val(key), v;
  for (int c = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); c == 0; c = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
    if (k.mv_size != 12 || get_be(static_cast<const std::uint8_t*>(k.mv_data), 4) != rec->id) break;
    history_batch hb;
    hb.topic = topic;
    hb.first_seq = get_be(static_cast<const std::uint8_t*>(k.mv_data) + 4, 8);
    const auto body = opened(span_of(k), span_of(v));
    const bool damaged = !body || body->size() < batch_head;
    if (!damaged) {
      hb.count = static_cast<std::uint32_t>(get_le(body->data(), 4));
      hb.timestamp_ns = get_le(body->data() + 4, 8);
      hb.frame = body->subspan(batch_head);
      if (hb.first_seq + hb.count - 1 < from) continue;
    }
    if (!visit(hb, damaged)) break;
  }
  mdb_cursor_close(cur);
}

}  // namespace

const char* to_string(durability d) noexcept {
  switch (d) {
    case durability::always: return "always";
    case durability::interval: return "interval";
    case durability::none: return "none";
  }
  return "?";
}

std::optional<durability> parse_durability(std::string_view text) noexcept {
  if (text == "always") return durability::always;
  if (text == "interval") return durability::interval;
  if (text == "none") return durability::none;
  return std::nullopt;
}

std::unique_ptr<log_store> log_store::open(const store_options& options) {
  auto s = std::make_unique<lmdb_store>(options);
  s->open();
  return s;
}

}  // namespace meshbus::store
