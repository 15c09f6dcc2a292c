// A mesh participant for multi-process tests: joins a cluster, waits until its K
// peers are ready subscribers, publishes E numbered events on its own topic,
// checks that every event of every peer arrives once and in order, then waits
// until every peer is done. Prints one JSON summary line; exit 0 only when all held.
#include <meshbus/meshbus.hpp>

#include <atomic>
#include <charconv>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <string>

using namespace std::chrono_literals;

namespace {

struct args {
  std::string name = "peer";
  std::string cluster = "mesh-test";
  std::size_t peers = 2;
  std::uint64_t events = 10000;
  std::chrono::milliseconds timeout{60000};
  std::string interface;
  std::string seeds;
  std::uint16_t port = 0;
  std::uint16_t beacon_port = 0;
};

args parse(int argc, char** argv) {
  args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const std::string v = argv[i + 1];
    if (k == "--name") a.name = v;
    else if (k == "--cluster") a.cluster = v;
    else if (k == "--peers") a.peers = std::stoul(v);
    else if (k == "--events") a.events = std::stoull(v);
    else if (k == "--timeout-ms") a.timeout = std::chrono::milliseconds(std::stol(v));
    else if (k == "--interface") a.interface = v;
    else if (k == "--seeds") a.seeds = v;
    else if (k == "--port") a.port = static_cast<std::uint16_t>(std::stoul(v));
    else if (k == "--beacon-port") a.beacon_port = static_cast<std::uint16_t>(std::stoul(v));
    else {
      std::fprintf(stderr, "mesh_peer: unknown option %s\n", k.c_str());
      std::exit(2);
    }
  }
  return a;
}

// Per publisher: what arrived, checked in order.
struct stream_check {
  std::uint64_t received = 0;
  std::uint64_t last_value = 0;
  std::uint64_t last_sequence = 0;
  std::uint64_t out_of_order = 0;
};

}  // namespace

int main(int argc, char** argv) {
  const auto a = parse(argc, argv);
  meshbus::Options o;
  o.name = a.name;
  o.cluster = a.cluster;
  o.interface = a.interface;
  o.router_port = a.port;
  o.beacon_port = a.beacon_port;
  o.beacon_interval = 200ms;
  o.peer_expiry = 3s;
  if (!a.seeds.empty()) o.seeds = {a.seeds};

  std::mutex mu;
  std::condition_variable cv;
  std::map<std::string, stream_check> streams;  // by publisher topic
  std::set<std::string> done;
  std::uint64_t total = 0;

  try {
    meshbus::Node node(o);
    // Local delivery is on by default: a node's own events reach it too; skip them.
    node.subscribe("mesh.data.*", [&](const meshbus::Event& e) {
      if (e.publisher() == node.id()) return;
      std::uint64_t value = 0;
      const auto text = e.text();
      std::from_chars(text.data(), text.data() + text.size(), value);
      std::lock_guard lock(mu);
      auto& s = streams[std::string(e.topic())];
      if (value != s.last_value + 1 || (s.last_sequence != 0 && e.sequence() != s.last_sequence + 1)) {
        ++s.out_of_order;
      }
      s.last_value = value;
      s.last_sequence = e.sequence();
      ++s.received;
      ++total;
      cv.notify_all();
    });
    node.subscribe("mesh.done.*", [&](const meshbus::Event& e) {
      if (e.publisher() == node.id()) return;
      std::lock_guard lock(mu);
      done.insert(std::string(e.topic()));
      cv.notify_all();
    });

    const auto deadline = std::chrono::steady_clock::now() + a.timeout;
    const std::string my_topic = "mesh.data." + a.name;
    const bool peers_ok = node.wait_for_peers(a.peers, a.timeout);
    const bool subs_ok = peers_ok && node.wait_for_subscribers(my_topic, a.peers, a.timeout);
    if (subs_ok) {
      for (std::uint64_t i = 1; i <= a.events; ++i) {
        const auto text = std::to_string(i);
        while (node.publish(my_topic, text) != meshbus::PublishResult::ok) {
        }
      }
      (void)node.flush(a.timeout);
    }
    bool all_received = false;
    {
      std::unique_lock lock(mu);
      all_received = cv.wait_until(lock, deadline, [&] { return total >= a.peers * a.events; });
    }
    (void)node.publish("mesh.done." + a.name, std::to_string(total));
    bool all_done = false;
    {
      std::unique_lock lock(mu);
      all_done = cv.wait_until(lock, deadline, [&] { return done.size() >= a.peers; });
    }
    (void)node.flush(5s);
    const auto st = node.stats();
    node.stop();

    std::lock_guard lock(mu);
    std::uint64_t out_of_order = 0;
    std::string per_stream;
    for (const auto& [topic, s] : streams) {
      out_of_order += s.out_of_order;
      per_stream += (per_stream.empty() ? "" : ",") + std::string("\"") + topic + "\":" + std::to_string(s.received);
    }
    const bool ok = peers_ok && subs_ok && all_received && all_done && out_of_order == 0 &&
                    streams.size() == a.peers && total == a.peers * a.events && st.gaps == 0 &&
                    st.duplicates_dropped == 0;
    std::printf(
        "{\"name\":\"%s\",\"ok\":%s,\"sent\":%llu,\"received\":%llu,\"streams\":{%s},\"out_of_order\":%llu,"
        "\"peers_ok\":%s,\"subscribers_ok\":%s,\"all_done\":%s,\"gaps\":%llu,\"duplicates\":%llu,"
        "\"malformed\":%llu}\n",
        a.name.c_str(), ok ? "true" : "false", static_cast<unsigned long long>(subs_ok ? a.events : 0),
        static_cast<unsigned long long>(total), per_stream.c_str(), static_cast<unsigned long long>(out_of_order),
        peers_ok ? "true" : "false", subs_ok ? "true" : "false", all_done ? "true" : "false",
        static_cast<unsigned long long>(st.gaps), static_cast<unsigned long long>(st.duplicates_dropped),
        static_cast<unsigned long long>(st.malformed_messages + st.malformed_beacons));
    std::fflush(stdout);
    return ok ? 0 : 1;
  } catch (const meshbus::error& e) {
    std::fprintf(stderr, "mesh_peer %s: %s\n", a.name.c_str(), e.what());
    return 3;
  }
}
