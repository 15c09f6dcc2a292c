// seed_list: the configured seeds of one node (MESHBUS_PEERS, Options::seeds), for
// networks without broadcast. Until a seed answers with a HELLO, the node sends its
// HELLO to the seed's address once per beacon interval on a DEALER of its own; once
// it answers, it is an ordinary peer. Host names are resolved on a thread of this
// part, never on the I/O thread (a slow DNS must not stall I/O); that thread only
// writes results into state it shares with this part, so a node that stops does not
// wait for a resolution in progress (the thread finishes it and exits). Each change
// of a seed's state (unresolvable, unreachable, answered) is logged once, at warn
// level for the bad ones. The I/O thread calls everything but state(), which any
// thread may call.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "discovery/seeds.hpp"
#include "lib/node/node_context.hpp"
#include "lib/transport/transport.hpp"

namespace meshbus::detail {

class seed_list {
 public:
  seed_list(node_context& ctx, transport::transport& transport, std::vector<discovery::seed_address> seeds);
  ~seed_list();
  seed_list(const seed_list&) = delete;
  seed_list& operator=(const seed_list&) = delete;

  /// True when some seed has not answered, or the peer it turned out to be is no
  /// longer known (`known`: whether the peer table has a node).
  bool any_unanswered(const std::function<bool(const wire::node_id_bytes&)>& known);
  /// Sends `hello` to every seed that has not answered.
  void send_hellos(const wire::bytes& hello);
  /// A HELLO from `from` at `ip` with ROUTER port `router_port`: if it is a seed's,
  /// that seed has answered.
  void answered(const wire::node_id_bytes& from, const std::string& ip, std::uint16_t router_port);
  /// The node stops: no more resolutions.
  void stop();
  /// Every seed and its state, for Node::seeds(). Any thread.
  std::vector<SeedInfo> state() const;

 private:
  struct seed {
    discovery::seed_address address;
    std::string endpoint;
    std::uint32_t ip = 0;  ///< resolved IPv4 (host order), 0 until then
    std::optional<wire::node_id_bytes> identified;
    SeedState state = SeedState::resolving;
    bool warned_unreachable = false;  ///< since it last answered
  };
  struct resolutions;  // shared with the resolver thread
  /// Takes the resolver thread's results (I/O thread).
  void collect();
  void set_state(seed& s, SeedState state);

  node_context& ctx_;
  transport::transport& transport_;
  mutable std::mutex mu_;  ///< guards seeds_ against state()
  std::vector<seed> seeds_;
  std::shared_ptr<resolutions> resolver_;
};

}  // namespace meshbus::detail
