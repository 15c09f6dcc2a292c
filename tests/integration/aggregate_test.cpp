// meshbus::Aggregate on a real node's log: commands decided on the version loaded,
// concurrent commands with no lost update, snapshot + events equal to a full replay for
// random histories, snapshots of older state layouts upcast or ignored, damaged
// snapshots ignored, old event versions upcast, and events that cannot be applied named.
#include <catch2/catch.hpp>

#include <meshbus/aggregate.hpp>

#include <map>
#include <random>
#include <thread>

#include "tests/support/node_helpers.hpp"

using namespace meshbus;
using namespace meshbus::test;

namespace {

struct Deposited {
  static constexpr std::string_view event_name = "agg.deposited";
  static constexpr std::uint32_t event_version = 2;
  std::int64_t cents = 0;
  std::string memo;
  MSGPACK_DEFINE_MAP(cents, memo)
};
struct DepositedV1 {  // the older layout: whole units, no memo
  static constexpr std::string_view event_name = "agg.deposited";
  static constexpr std::uint32_t event_version = 1;
  std::int64_t units = 0;
  MSGPACK_DEFINE_MAP(units)
};
struct Withdrawn {
  static constexpr std::string_view event_name = "agg.withdrawn";
  static constexpr std::uint32_t event_version = 1;
  std::int64_t cents = 0;
  MSGPACK_DEFINE_MAP(cents)
};
struct Frozen {
  static constexpr std::string_view event_name = "agg.frozen";
  static constexpr std::uint32_t event_version = 1;
  std::string reason;
  MSGPACK_DEFINE_MAP(reason)
};

struct Other {
  static constexpr std::string_view event_name = "agg.other";
  static constexpr std::uint32_t event_version = 1;
  int x = 0;
  MSGPACK_DEFINE_MAP(x)
};

struct Account {
  std::int64_t balance = 0;
  std::uint64_t operations = 0;
  std::vector<std::string> memos;
  bool frozen = false;
  MSGPACK_DEFINE_MAP(balance, operations, memos, frozen)
  bool operator==(const Account&) const = default;
};
struct AccountV1 {  // state layout 1: no memos
  std::int64_t balance = 0;
  std::uint64_t operations = 0;
  bool frozen = false;
  MSGPACK_DEFINE_MAP(balance, operations, frozen)
};

void define(Aggregate<Account>& accounts) {
  accounts.apply<Deposited>([](Account& a, const Deposited& e) {
    a.balance += e.cents;
    ++a.operations;
    if (!e.memo.empty()) a.memos.push_back(e.memo);
  });
  accounts.apply<Withdrawn>([](Account& a, const Withdrawn& e) {
    a.balance -= e.cents;
    ++a.operations;
  });
  accounts.apply<Frozen>([](Account& a, const Frozen&) { a.frozen = true; });
}

/// The account folded from every event of its stream, no snapshot involved.
Account full_replay(const EventStore& store, const std::string& stream) {
  Account a;
  for (const auto& e : store.read(stream)) {
    if (e.is<Deposited>()) {
      const auto d = e.as<Deposited>();
      a.balance += d.cents;
      ++a.operations;
      if (!d.memo.empty()) a.memos.push_back(d.memo);
    } else if (e.is<Withdrawn>()) {
      a.balance -= e.as<Withdrawn>().cents;
      ++a.operations;
    } else if (e.is<Frozen>()) {
      a.frozen = true;
    }
  }
  return a;
}

Options store_options(const std::string& name, const temp_dir& dir) {
  auto o = fast_options(unique_cluster("agg"), name);
  o.data_dir = dir.str();
  return o;
}

struct registered_upcaster {
  registered_upcaster() {
    register_upcaster<DepositedV1, Deposited>([](const DepositedV1& v1) { return Deposited{v1.units * 100, ""}; });
  }
};

}  // namespace

TEST_CASE("an aggregate decides commands on the state it loaded and refuses what its rules refuse",
          "[integration][aggregate]") {
  temp_dir dir("meshbus-agg");
  Node node(store_options("a", dir));
  EventStore store(node);
  Aggregate<Account> accounts(store, "account");
  define(accounts);

  const auto withdraw = [&](std::int64_t cents) {
    return accounts.execute("7", [&](const Account& a, Changes& out) {
      if (a.frozen) throw std::runtime_error("account 7 is frozen");
      if (a.balance < cents) throw std::runtime_error("insufficient funds");
      out.emit(Withdrawn{cents});
    });
  };
  auto r = accounts.execute("7", [](const Account&, Changes& out) { out.emit(Deposited{500, "salary"}); });
  CHECK(r.version == 1);
  CHECK(r.state.balance == 500);
  CHECK(withdraw(200).state.balance == 300);
  CHECK_THROWS_WITH(withdraw(1000), "insufficient funds");
  CHECK(store.version("account-7") == 2);  // nothing appended by the refused command
  r = accounts.execute("7", [](const Account&, Changes&) {});
  CHECK(r.appended == 0);
  CHECK(r.version == 2);
  accounts.execute("7", [](const Account&, Changes& out) { out.emit(Frozen{"audit"}); });
  CHECK_THROWS_WITH(withdraw(1), "account 7 is frozen");

  const auto loaded = accounts.load("7");
  CHECK(loaded.stream == "account-7");
  CHECK(loaded.version == 3);
  CHECK(loaded.state == Account{300, 2, {"salary"}, true});
  CHECK(accounts.load("nobody").version == 0);

  // Its category takes its event types only.
  CHECK_THROWS_AS(store.append("account-7", ExpectedVersion::any(), Other{1}), error);
}

TEST_CASE("commands on one aggregate from four threads at once: every one is applied once, none lost",
          "[integration][aggregate]") {
  temp_dir dir("meshbus-agg");
  Node node(store_options("a", dir));
  EventStore store(node);
  Aggregate<Account> accounts(store, "account", {.snapshot_every = 10, .max_retries = 1000});
  define(accounts);
  constexpr int threads = 4, per_thread = 50;
  std::vector<std::thread> writers;
  for (int t = 0; t < threads; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i) {
        accounts.execute("shared", [&](const Account& a, Changes& out) {
          // A rule on the loaded state: operation n deposits n cents.
          out.emit(Deposited{static_cast<std::int64_t>(a.operations + 1), "t" + std::to_string(t)});
        });
      }
    });
  }
  for (auto& w : writers) w.join();
  const auto l = accounts.load("shared");
  constexpr std::uint64_t total = threads * per_thread;
  CHECK(l.version == total);
  CHECK(l.state.operations == total);
  CHECK(l.state.balance == static_cast<std::int64_t>(total * (total + 1) / 2));  // 1 + 2 + ... + total
  CHECK(l.state == full_replay(store, "account-shared"));
  INFO("conflicts " << accounts.stats().conflicts);
  CHECK(accounts.stats().snapshots_saved >= 1);
}

TEST_CASE("snapshot plus the events after it equals a full replay, for random histories",
          "[integration][aggregate]") {
  temp_dir dir("meshbus-agg");
  Node node(store_options("a", dir));
  EventStore store(node);
  const auto seed = std::random_device{}();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  for (const std::uint64_t every : {1u, 2u, 3u, 7u, 16u, 50u}) {
    Aggregate<Account> accounts(store, "acct" + std::to_string(every), {.snapshot_every = every});
    define(accounts);
    for (int id = 0; id < 5; ++id) {
      const auto commands = std::uniform_int_distribution<int>(0, 120)(rng);
      for (int c = 0; c < commands; ++c) {
        const auto kind = std::uniform_int_distribution<int>(0, 9)(rng);
        const auto amount = std::uniform_int_distribution<std::int64_t>(1, 1000)(rng);
        const auto count = std::uniform_int_distribution<int>(1, 4)(rng);  // several events per command
        accounts.execute(std::to_string(id), [&](const Account&, Changes& out) {
          for (int k = 0; k < count; ++k) {
            if (kind < 5) out.emit(Deposited{amount, kind == 0 ? "m" + std::to_string(c) : ""});
            else if (kind < 9) out.emit(Withdrawn{amount});
            else out.emit(Frozen{"r"});
          }
        });
      }
      const auto stream = accounts.stream_of(std::to_string(id));
      const auto l = accounts.load(std::to_string(id));
      CHECK(l.version == store.version(stream));
      CHECK(l.state == full_replay(store, stream));
      if (l.version >= every && every > 1) {
        CHECK(l.snapshot_version > 0);
        CHECK(l.snapshot_version <= l.version);
        CHECK(l.events_applied == l.version - l.snapshot_version);
      }
    }
    CHECK(accounts.stats().snapshots_ignored == 0);
  }
}

TEST_CASE("snapshots of an older state layout are upcast or ignored, and damaged or foreign ones ignored",
          "[integration][aggregate]") {
  temp_dir dir("meshbus-agg");
  Node node(store_options("a", dir));
  EventStore store(node);
  {
    Aggregate<Account> v1(store, "account", {.snapshot_every = 5, .state_version = 1});
    define(v1);
    for (int i = 0; i < 7; ++i) {
      v1.execute("1", [&](const Account&, Changes& out) { out.emit(Deposited{10, i == 0 ? "first" : ""}); });
    }
    REQUIRE(store.snapshot("account-1")->version == 5);
  }
  const auto truth = full_replay(store, "account-1");
  REQUIRE(truth.balance == 70);

  SECTION("a newer layout without an upcaster ignores it and rebuilds from the events") {
    Aggregate<Account> v2(store, "account", {.snapshot_every = 5, .state_version = 2});
    define(v2);
    const auto l = v2.load("1");
    CHECK(l.snapshot_version == 0);
    CHECK(l.events_applied == 7);
    CHECK(l.state == truth);
    CHECK(v2.stats().snapshots_ignored == 1);
  }
  SECTION("a newer layout with an upcaster starts from the upcast snapshot") {
    // Pretend layout 1 had no memos: write such a snapshot at version 5.
    msgpack::sbuffer b;
    msgpack::pack(b, AccountV1{50, 5, false});
    store.save_snapshot("account-1", {5, 1, std::string(b.data(), b.size())});
    Aggregate<Account> v2(store, "account", {.snapshot_every = 5, .state_version = 2});
    define(v2);
    v2.upcast_snapshot<AccountV1>(1, [](const AccountV1& old) {
      return Account{old.balance, old.operations, {"(from v1)"}, old.frozen};
    });
    const auto l = v2.load("1");
    CHECK(l.snapshot_version == 5);
    CHECK(l.events_applied == 2);
    CHECK(l.state.balance == 70);
    CHECK(l.state.memos == std::vector<std::string>{"(from v1)"});
  }
  SECTION("a snapshot that does not decode is ignored") {
    store.save_snapshot("account-1", {5, 1, std::string("\xc1 not msgpack", 13)});
    Aggregate<Account> v1(store, "account", {.snapshot_every = 5});
    define(v1);
    const auto l = v1.load("1");
    CHECK(l.snapshot_version == 0);
    CHECK(l.state == truth);
    CHECK(v1.stats().snapshots_ignored == 1);
  }
  SECTION("a snapshot ahead of the stream is not this stream's and is ignored") {
    msgpack::sbuffer b;
    msgpack::pack(b, Account{999999, 99, {}, true});
    store.save_snapshot("account-1", {99, 1, std::string(b.data(), b.size())});
    Aggregate<Account> v1(store, "account", {.snapshot_every = 5});
    define(v1);
    CHECK(v1.load("1").state == truth);
    CHECK(v1.stats().snapshots_ignored == 1);
  }
}

TEST_CASE("old event versions are upcast on load, and an event that does not decode or has no apply is named",
          "[integration][aggregate]") {
  static registered_upcaster upcaster;
  temp_dir dir("meshbus-agg");
  Node node(store_options("a", dir));
  EventStore store(node);
  {
    // Written by an older build: DepositedV1, and one event of a type since dropped.
    NewEvent v1;
    v1.type_name = "agg.deposited";
    v1.type_version = 1;
    v1.payload = encode_event(DepositedV1{3});
    store.append("account-old", std::vector<NewEvent>{v1}, ExpectedVersion::no_stream());
  }
  Aggregate<Account> accounts(store, "account");
  define(accounts);
  const auto l = accounts.load("old");
  CHECK(l.state.balance == 300);

  NewEvent broken;
  broken.type_name = "agg.withdrawn";
  broken.type_version = 1;
  broken.payload = "\x81\xa5" "cents\xa3" "ten";  // {"cents": "ten"}
  store.append("account-old", std::vector<NewEvent>{broken});
  try {
    accounts.load("old");
    FAIL("an event that does not decode was applied");
  } catch (const poison_event& e) {
    const std::string what = e.what();
    CHECK(what.find("event 2 of stream 'account-old' does not decode") != std::string::npos);
    CHECK(what.find("cents") != std::string::npos);
  }

  Aggregate<Account> deposits_only(store, "wallet");
  deposits_only.apply<Deposited>([](Account& a, const Deposited& e) { a.balance += e.cents; });
  store.append("wallet-1", ExpectedVersion::any(), Deposited{1, ""});
  NewEvent unknown;
  unknown.type_name = "agg.audited";
  EventStore plain(node);  // a store where "wallet" is not declared: the type gets in
  plain.append("wallet-1", std::vector<NewEvent>{unknown});
  CHECK_THROWS_WITH(deposits_only.load("1"), Catch::Contains("event 2 of stream 'wallet-1' is of type 'agg.audited'"));
}

TEST_CASE("an aggregate refuses snapshots of a state MessagePack cannot pack", "[integration][aggregate]") {
  temp_dir dir("meshbus-agg");
  Node node(store_options("a", dir));
  EventStore store(node);
  struct Opaque {
    int n = 0;
  };
  CHECK_THROWS_WITH((Aggregate<Opaque>(store, "opaque", {.snapshot_every = 10})), Catch::Contains("MSGPACK_DEFINE_MAP"));
  Aggregate<Opaque> no_snapshots(store, "opaque");
  CHECK_THROWS_AS((Aggregate<Opaque>(store, "bad category")), error);
}
