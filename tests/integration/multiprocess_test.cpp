// Real processes (fork + exec): three peers find each other by beacon and exchange
// 10,000 events each; every event arrives once and in order per stream. A peer
// killed with SIGKILL is seen as suspect, then gone, by the others.
#include <catch2/catch.hpp>

#include <signal.h>

#include <memory>

#include "tests/support/node_helpers.hpp"

using namespace meshbus;
using namespace meshbus::test;
using namespace std::chrono_literals;

namespace {
std::vector<std::string> peer_args(const std::string& name, const std::string& cluster, int peers, int events) {
  return {MESHBUS_TEST_PEER, "--name", name, "--cluster", cluster, "--peers", std::to_string(peers),
          "--events", std::to_string(events), "--timeout-ms", "90000"};
}
}  // namespace

TEST_CASE("three processes discover each other by beacon and exchange 10,000 events each",
          "[multiprocess]") {
  const auto cluster = unique_cluster("mp3");
  std::vector<std::unique_ptr<child_process>> procs;
  for (const char* name : {"p1", "p2", "p3"}) {
    procs.push_back(std::make_unique<child_process>(peer_args(name, cluster, 2, 10000)));
  }
  for (auto& p : procs) {
    const auto code = p->wait(120s);
    INFO("stdout: " << p->out() << "\nstderr: " << p->err());
    REQUIRE(code.has_value());
    CHECK(*code == 0);
    CHECK_THAT(p->out(), Catch::Contains("\"ok\":true") && Catch::Contains("\"received\":20000") &&
                             Catch::Contains("\"out_of_order\":0"));
  }
}

TEST_CASE("a peer killed with SIGKILL turns suspect and then gone", "[multiprocess]") {
  const auto cluster = unique_cluster("mpkill");
  auto o = fast_options(cluster, "observer");
  Node observer(o);
  std::mutex mu;
  std::vector<PeerEvent::Kind> kinds;
  observer.on_peer([&](const PeerEvent& e) {
    std::lock_guard lock(mu);
    kinds.push_back(e.kind);
  });
  // mesh_peer uses a 200 ms beacon interval and a 3 s expiry.
  child_process victim(peer_args("victim", cluster, 5, 1));
  REQUIRE(observer.wait_for_peers(1, 10s));
  victim.signal(SIGKILL);
  REQUIRE(victim.wait(5s).has_value());
  const auto killed_at = std::chrono::steady_clock::now();
  auto saw = [&](PeerEvent::Kind k) {
    std::lock_guard lock(mu);
    return std::find(kinds.begin(), kinds.end(), k) != kinds.end();
  };
  REQUIRE(eventually([&] { return saw(PeerEvent::Kind::suspect); }, 5s));
  REQUIRE(eventually([&] { return saw(PeerEvent::Kind::left); }, 8s));
  CHECK(std::chrono::steady_clock::now() - killed_at >= 500ms);  // by expiry, not by goodbye
  CHECK(observer.peers().empty());
}
