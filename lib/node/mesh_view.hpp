// What API threads may know about the mesh: the joined peers, which of them
// subscribe what (and are ready), and which serve which request services. The I/O
// thread (peer sessions) writes it; API threads read it and wait on it
// (wait_for_peers, wait_for_subscribers). The peer handler is called from here, on a
// handler thread. Guarded by one mutex; every wait has a deadline.
#pragma once

#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "lib/node/dispatcher.hpp"
#include "lib/node/node_context.hpp"
#include "lib/wire/topic.hpp"

namespace meshbus::detail {

class mesh_view {
 public:
  mesh_view(node_context& ctx, dispatcher& handlers) : ctx_(ctx), handlers_(handlers) {}

  // --- I/O thread ---
  /// A peer joined (its first HELLO): listed from now on. Announced by
  /// announce_joined(), once its subscriptions are set too.
  void joined(const PeerInfo& info);
  void announce_joined(const PeerInfo& info);
  /// A peer's session closed: no longer listed by the time the application hears
  /// it left (`announced`: it had joined, so the application hears it).
  void left(const PeerInfo& info, bool announced);
  /// A joined peer became suspect, or alive again.
  void set_state(const PeerInfo& info, PeerState state);
  void heard(const wire::node_id_bytes& id, clock::time_point now);
  /// A peer's subscriptions (`visible`: those shown in PeerInfo) and readiness.
  void set_subscriber(const wire::node_id_bytes& id, std::vector<wire::pattern> patterns, bool ready,
                      std::vector<std::string> visible);
  /// A peer serves `now` instead of `before`.
  void set_services(const wire::node_id_bytes& id, const std::vector<std::string>& before,
                    const std::vector<std::string>& now);
  /// The node stopped: nobody is listed any more.
  void clear();

  // --- any thread ---
  void set_peer_handler(PeerHandler h);
  std::vector<PeerInfo> peers() const;
  /// Live (alive, not suspect) peers that serve `service`.
  std::vector<NodeId> instances(std::string_view service) const;
  void count(std::size_t& alive, std::size_t& suspect) const;
  bool wait_for_peers(std::size_t count, std::chrono::milliseconds timeout);
  bool wait_for_subscribers(std::string_view topic, std::size_t count, std::chrono::milliseconds timeout);

 private:
  struct subscriber {
    std::vector<wire::pattern> patterns;
    bool ready = false;
  };
  void announce(PeerEvent::Kind kind, const PeerInfo& info);
  /// Waits (under mu_) until `satisfied`, turning the loop when this thread drives it.
  bool wait(const std::function<bool()>& satisfied, clock::time_point deadline);

  node_context& ctx_;
  dispatcher& handlers_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<wire::node_id_bytes, PeerInfo> peers_;
  std::map<wire::node_id_bytes, subscriber> subscribers_;
  std::map<std::string, std::set<wire::node_id_bytes>, std::less<>> services_;  ///< service -> peers
  std::mutex handler_mu_;
  PeerHandler peer_handler_;
};

}  // namespace meshbus::detail
