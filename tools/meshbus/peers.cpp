// `meshbus peers`: listens for the nodes of a cluster for a while (or until --expect of
// them joined) and prints them as a table or as JSON, sorted by name, followed by the
// configured seeds (--peers, MESHBUS_PEERS) and where each stands, when there are any.
#include <algorithm>
#include <iostream>
#include <tuple>

#include "commands.hpp"
#include "output.hpp"

namespace meshbus_tool {
namespace {

struct peers_flags {
  std::int64_t wait_ms = -1;  ///< -1: discovery_wait's default
  std::size_t expect = 0;     ///< 0: no expectation
  bool json = false;
};

const char* state_text(const meshbus::PeerInfo& p) {
  return p.state == meshbus::PeerState::alive ? "alive" : "suspect";
}

void print_peer_table(const std::vector<meshbus::PeerInfo>& peers, steady::time_point now) {
  std::vector<std::vector<std::string>> rows{
      {"ID", "NAME", "ADDRESS", "STATE", "AGE", "LAST SEEN", "SUBSCRIPTIONS"}};
  for (const auto& p : peers) {
    rows.push_back({p.id.short_string(), display_text(p.name), p.address + ":" + std::to_string(p.router_port),
                    state_text(p), human_duration(now - p.joined_at), human_duration(now - p.last_heard) + " ago",
                    p.subscriptions.empty() ? "-" : display_text(join(p.subscriptions, ","))});
  }
  print_table(rows);
}

const char* seed_state_text(meshbus::SeedState state) {
  switch (state) {
    case meshbus::SeedState::resolving: return "resolving";
    case meshbus::SeedState::unresolvable: return "unresolvable";
    case meshbus::SeedState::unreachable: return "unreachable";
    case meshbus::SeedState::answered: return "answered";
  }
  return "unknown";
}

/// A blank line, then SEED STATE NODE; nothing when no seed is configured.
void print_seed_table(const std::vector<meshbus::SeedInfo>& seeds) {
  if (seeds.empty()) return;
  std::vector<std::vector<std::string>> rows{{"SEED", "STATE", "NODE"}};
  for (const auto& s : seeds) {
    rows.push_back({display_text(s.address), seed_state_text(s.state), s.node ? s.node->short_string() : "-"});
  }
  std::cout << '\n';
  print_table(rows);
}

json peer_json(const meshbus::PeerInfo& p, steady::time_point now) {
  json object;
  object["id"] = p.id.to_string();
  object["short_id"] = p.id.short_string();
  object["name"] = p.name;
  object["address"] = p.address;
  object["router_port"] = p.router_port;
  object["pub_port"] = p.pub_port;
  object["epoch"] = p.epoch;
  object["state"] = state_text(p);
  object["age_ms"] = std::chrono::duration_cast<milliseconds>(now - p.joined_at).count();
  object["last_seen_ms"] = std::chrono::duration_cast<milliseconds>(now - p.last_heard).count();
  object["subscriptions"] = p.subscriptions;
  object["metadata"] = json::object();
  for (const auto& [key, value] : p.metadata) object["metadata"][key] = value;
  return object;
}

/// A seed's object in the --json array: "seed" (its configured address) tells it from a peer's;
/// "id" and "short_id" name the peer it turned out to be, once it answered.
json seed_json(const meshbus::SeedInfo& s) {
  json object;
  object["seed"] = s.address;
  object["state"] = seed_state_text(s.state);
  if (s.node) {
    object["id"] = s.node->to_string();
    object["short_id"] = s.node->short_string();
  }
  return object;
}

/// Waits (until `deadline` at most) for every seed's host name to resolve or fail, so that
/// none is reported as still resolving when the answer is only a moment away.
void wait_for_seed_resolution(meshbus::Node& node, exit_latch& latch, steady::time_point deadline) {
  constexpr milliseconds step{20};
  auto resolving = [&] {
    const auto seeds = node.seeds();
    return std::any_of(seeds.begin(), seeds.end(),
                       [](const meshbus::SeedInfo& s) { return s.state == meshbus::SeedState::resolving; });
  };
  while (resolving() && !latch.finished()) {
    const auto now = steady::now();
    if (now >= deadline) return;
    latch.wait_until(std::min(deadline, now + step));
  }
}

int run_peers(const node_flags& node_opts, const peers_flags& flags, exit_latch& latch) {
  auto node = start_node(node_opts, {});
  const auto wait = discovery_wait(node_opts, flags.wait_ms);
  const auto deadline = steady::now() + wait;
  bool expected_met = true;
  if (flags.expect > 0) {
    expected_met = wait_interruptibly(
        latch, deadline, [&](milliseconds step) { return node->wait_for_peers(flags.expect, step); });
  } else {
    latch.wait_until(deadline);
  }
  wait_for_seed_resolution(*node, latch, deadline);
  auto peers = node->peers();
  const auto seeds = node->seeds();
  std::sort(peers.begin(), peers.end(), [](const meshbus::PeerInfo& a, const meshbus::PeerInfo& b) {
    return std::tie(a.name, a.id) < std::tie(b.name, b.id);
  });
  const auto now = steady::now();
  if (flags.json) {
    std::vector<json> objects;
    for (const auto& p : peers) objects.push_back(peer_json(p, now));
    for (const auto& s : seeds) objects.push_back(seed_json(s));
    print_json_array(objects);
  } else {
    print_peer_table(peers, now);
    print_seed_table(seeds);
    if (peers.empty() && !latch.finished()) {
      print_error("no peers in cluster '" + node->cluster() + "' within " + to_ms_text(wait));
    }
  }
  const auto cluster = node->cluster();
  node->stop();
  if (!expected_met && !latch.finished()) {
    print_error("expected " + std::to_string(flags.expect) + " peers in cluster '" + cluster + "', " +
                std::to_string(peers.size()) + " joined within " + to_ms_text(wait));
    return exit_code::timeout;
  }
  return exit_code::ok;
}

}  // namespace

command add_peers_command(CLI::App& parent, node_flags& node) {
  auto flags = std::make_shared<peers_flags>();
  auto* app = parent.add_subcommand("peers", "List the live peers of the cluster and the configured seeds");
  add_node_flags(*app, node);
  app->add_option("--wait", flags->wait_ms, "How long to listen, in ms (default: 1.5 x beacon interval)")
      ->type_name("MS")
      ->check(non_negative_number());
  app->add_option("--expect", flags->expect, "Stop as soon as N peers joined; exit 3 if fewer do")
      ->type_name("N")
      ->check(positive_number());
  app->add_flag("--json", flags->json,
                "Print one JSON array of objects: the peers, then one per seed (with a \"seed\" key)");
  app->footer(
      footer("  meshbus peers\n"
             "  meshbus peers --cluster demo --expect 3 --wait 5000 --json\n"));
  return {app, [flags, &node](exit_latch& latch) { return run_peers(node, *flags, latch); }};
}

}  // namespace meshbus_tool
