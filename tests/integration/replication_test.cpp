// Ownership and replication between in-process instances: owners by rendezvous
// hashing move only when their instance goes, an append with too few replicas fails
// with its own error, and an append returns once the replica holds its events.
#include <catch2/catch.hpp>

#include <meshbus/aggregate.hpp>

#include <map>

#include "tests/support/node_helpers.hpp"

using namespace meshbus;
using namespace meshbus::test;
using namespace std::chrono_literals;

namespace {

struct Noted {
  static constexpr std::string_view event_name = "repl.noted";
  static constexpr std::uint32_t event_version = 1;
  std::string text;
  MSGPACK_DEFINE_MAP(text)
};

Options instance(const std::string& cluster, const std::string& name, const temp_dir& dir) {
  auto o = fast_options(cluster, name);
  o.data_dir = dir.str();
  return o;
}

/// The library's defaults (beacon interval, peer expiry), with a data directory.
Options default_instance(const std::string& cluster, const std::string& name, const temp_dir& dir) {
  Options o;
  o.cluster = cluster;
  o.name = name;
  o.use_environment = false;
  o.data_dir = dir.str();
  return o;
}

}  // namespace

TEST_CASE("owners by rendezvous hashing: when an instance goes, only its streams move",
          "[integration][replication]") {
  const auto cluster = unique_cluster("repl-own");
  temp_dir da("meshbus-repl"), db("meshbus-repl"), dc("meshbus-repl");
  Node a(instance(cluster, "a", da));
  Node b(instance(cluster, "b", db));
  auto c = std::make_unique<Node>(instance(cluster, "c", dc));
  EventStore sa(a, {.service = "ledger"});
  EventStore sb(b, {.service = "ledger"});
  auto sc = std::make_unique<EventStore>(*c, EventStoreOptions{.service = "ledger"});
  REQUIRE(eventually([&] { return sa.members().size() == 3 && sb.members().size() == 3; }, 10s));
  std::map<std::string, NodeId> before;
  std::map<NodeId, int> load;
  for (int i = 0; i < 3000; ++i) {
    const auto stream = "acct-" + std::to_string(i);
    before[stream] = sa.owner_of(stream);
    CHECK(sb.owner_of(stream) == before[stream]);  // every instance agrees
    ++load[before[stream]];
  }
  for (const auto& [id, n] : load) CHECK(n > 700);  // about a third each
  const auto gone = c->id();
  sc.reset();
  c.reset();
  REQUIRE(eventually([&] { return sa.members().size() == 2; }, 10s));
  int moved = 0;
  for (const auto& [stream, owner] : before) {
    const auto now = sa.owner_of(stream);
    if (owner == gone) {
      CHECK(now != gone);
      ++moved;
    } else {
      CHECK(now == owner);  // nothing else moves
    }
  }
  CHECK(moved == load[gone]);
}

TEST_CASE("an append with fewer live replicas than asked fails with not_enough_replicas, nothing committed",
          "[integration][replication]") {
  const auto cluster = unique_cluster("repl-short");
  temp_dir da("meshbus-repl");
  Node a(instance(cluster, "a", da));
  EventStore store(a, {.service = "ledger", .replicas = 1, .replication_timeout = 1s});
  try {
    store.append("note-1", ExpectedVersion::any(), Noted{"alone"});
    FAIL("appended without a replica");
  } catch (const error& e) {
    CHECK(e.code_value() == errc::not_enough_replicas);
    CHECK_THAT(e.what(), Catch::Contains("0 of the 0 other live instances of 'ledger' acknowledged") &&
                             Catch::Contains("replicas is 1"));
  }
  CHECK(store.version("note-1") == 0);
  CHECK(store.last_position() == 0);
  CHECK(store.stats().not_enough_replicas == 1);
}

TEST_CASE("an append with replicas = 1 returns once the other instance holds it, and the replica serves a takeover",
          "[integration][replication]") {
  const auto cluster = unique_cluster("repl-two");
  temp_dir da("meshbus-repl"), db("meshbus-repl");
  Node a(instance(cluster, "a", da));
  Node b(instance(cluster, "b", db));
  EventStore sa(a, {.service = "ledger", .replicas = 1});
  EventStore sb(b, {.service = "ledger", .replicas = 1});
  REQUIRE(eventually([&] { return sa.members().size() == 2 && sb.members().size() == 2; }, 10s));
  for (int i = 1; i <= 20; ++i) {
    CHECK(sa.append("note-1", ExpectedVersion::exactly(static_cast<std::uint64_t>(i - 1)),
                    Noted{std::to_string(i)}) == static_cast<std::uint64_t>(i));
    CHECK(sb.version("note-1") == static_cast<std::uint64_t>(i));  // held by the replica when it returned
  }
  CHECK(sb.stats().replicated_in == 20);
  CHECK(sa.stats().takeovers == 1);
  // b appends to the stream: it claims it (term 2); a is fenced from then on.
  CHECK(sb.append("note-1", ExpectedVersion::exactly(20), Noted{"b"}) == 21);
  CHECK(sb.stats().takeovers == 1);
  CHECK(sa.version("note-1") == 21);
  // a's own record knows b's term now (the claim reached it): its next append claims
  // anew (term 3) after catching up, instead of writing over version 21.
  CHECK(sa.append("note-1", ExpectedVersion::exactly(21), Noted{"a again"}) == 22);
  CHECK(sa.stats().takeovers == 2);
  const auto events = sb.read("note-1");
  REQUIRE(events.size() == 22);
  CHECK(events[20].as<Noted>().text == "b");
  CHECK(events[21].as<Noted>().text == "a again");
}

TEST_CASE("an instance that was away catches up when it comes back, also on streams nobody appends to any more",
          "[integration][replication]") {
  // With default options: what users run.
  const auto cluster = unique_cluster("repl-sync");
  temp_dir da("meshbus-repl"), db("meshbus-repl"), dc("meshbus-repl");
  Node a(default_instance(cluster, "a", da));
  Node b(default_instance(cluster, "b", db));
  auto c = std::make_unique<Node>(default_instance(cluster, "c", dc));
  EventStore sa(a, {.service = "ledger", .replicas = 1});
  EventStore sb(b, {.service = "ledger", .replicas = 1});
  auto sc = std::make_unique<EventStore>(*c, EventStoreOptions{.service = "ledger", .replicas = 1});
  REQUIRE(eventually([&] { return sa.members().size() == 3 && sb.members().size() == 3; }, 10s));
  // Streams of all three owners, each appended by its owner while c is there.
  std::vector<std::string> streams;
  for (int i = 0; i < 30; ++i) streams.push_back("note-" + std::to_string(i));
  const auto owner_store = [&](const std::string& s) -> EventStore& {
    const auto o = sa.owner_of(s);
    if (o == a.id()) return sa;
    if (o == b.id()) return sb;
    return *sc;
  };
  for (const auto& s : streams) CHECK(owner_store(s).append(s, ExpectedVersion::exactly(0), Noted{"1"}) == 1);
  const auto c_id = c->id();
  std::vector<std::string> of_c;
  for (const auto& s : streams) {
    if (sa.owner_of(s) == c_id) of_c.push_back(s);
  }
  REQUIRE(!of_c.empty());
  REQUIRE(eventually([&] {
    return std::all_of(streams.begin(), streams.end(), [&](const std::string& s) { return sc->version(s) >= 1; });
  }, 10s));
  sc.reset();
  c.reset();
  REQUIRE(eventually([&] { return sa.members().size() == 2 && sb.members().size() == 2; }, 10s));
  // While c is away: two more events on every stream (c's are taken over), then nothing.
  for (const auto& s : streams) {
    auto& store = sa.owner_of(s) == a.id() ? sa : sb;
    CHECK(store.append(s, ExpectedVersion::exactly(1), Noted{"2"}, Noted{"3"}) == 3);
  }
  c = std::make_unique<Node>(default_instance(cluster, "c", dc));
  REQUIRE(c->id() == c_id);  // the same instance, from its data directory
  sc = std::make_unique<EventStore>(*c, EventStoreOptions{.service = "ledger", .replicas = 1});
  REQUIRE(eventually([&] {
    return std::all_of(streams.begin(), streams.end(), [&](const std::string& s) { return sc->version(s) == 3; });
  }, 15s));
  CHECK(sc->stats().synced_in == 2 * streams.size());
  for (const auto& s : streams) {
    const auto events = sc->read(s);
    REQUIRE(events.size() == 3);
    CHECK(events[2].as<Noted>().text == "3");
  }
  // Its own streams again: it learnt the newer term, so it claims anew and appends after 3.
  REQUIRE(eventually([&] { return sa.members().size() == 3; }, 10s));
  const auto takeovers = sc->stats().takeovers;
  for (const auto& s : of_c) {
    REQUIRE(sc->owner_of(s) == c_id);
    CHECK(sc->append(s, ExpectedVersion::exactly(3), Noted{"4"}) == 4);
  }
  CHECK(sc->stats().takeovers == takeovers + of_c.size());
  CHECK(sc->stats().fenced == 0);
  for (const auto& s : of_c) CHECK(eventually([&] { return sa.version(s) == 4 || sb.version(s) == 4; }, 5s));
}
