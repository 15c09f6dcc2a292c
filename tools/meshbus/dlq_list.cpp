// `meshbus dlq list`: subscribes "$dlq.**" from the earliest event each node's history
// still holds, listens until every node's history arrived and nothing new came for a
// moment, then prints one row (or JSON object) per dead letter, sorted by node and id.
#include <algorithm>
#include <array>
#include <charconv>
#include <map>
#include <mutex>
#include <optional>

#include "commands.hpp"
#include "dlq.hpp"
#include "output.hpp"

namespace meshbus_tool {
namespace {

struct dlq_list_flags {
  std::int64_t wait_ms = -1;  ///< -1: discovery_wait's default
  bool json = false;
};

std::optional<std::uint64_t> number_of(std::string_view text) {
  std::uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
  return value;
}

/// One announcement from "$dlq.**".
struct dead_letter_entry {
  std::string node;  ///< the node that holds it (32 hex digits)
  std::uint64_t id = 0;
  std::string topic;
  std::uint64_t attempts = 0;
  std::string reason;
  std::string pattern;
  std::string publisher;
  std::uint64_t sequence = 0;
  std::string payload;
  std::chrono::system_clock::time_point failed_at;
};

/// Collects announcements on a handler thread for the main thread, one per (node, id), sorted.
class dead_letter_collector {
 public:
  void add(const meshbus::Event& event) {
    received_.fetch_add(1, std::memory_order_release);
    const auto id = number_of(event.header(dlq_header::id).value_or(""));
    const auto node = event.header(dlq_header::node);
    if (!id || !node) return;  // not an announcement meshbus made
    dead_letter_entry e;
    e.node = std::string(*node);
    e.id = *id;
    e.topic = std::string(event.header(dlq_header::original_topic).value_or(event.topic()));
    e.attempts = number_of(event.header(dlq_header::attempts).value_or("")).value_or(0);
    e.reason = std::string(event.header(dlq_header::reason).value_or(""));
    e.pattern = std::string(event.header(dlq_header::pattern).value_or(""));
    e.publisher = std::string(event.header(dlq_header::original_publisher).value_or(""));
    e.sequence = number_of(event.header(dlq_header::original_sequence).value_or("")).value_or(0);
    e.payload = std::string(event.text());
    e.failed_at = event.timestamp();
    std::lock_guard lock(mu_);
    entries_.insert_or_assign({e.node, e.id}, std::move(e));
  }
  std::vector<dead_letter_entry> entries() const {
    std::lock_guard lock(mu_);
    std::vector<dead_letter_entry> out;
    for (const auto& [key, entry] : entries_) out.push_back(entry);
    return out;
  }
  /// Events received so far, well-formed or not: tells the main thread that history still flows.
  std::uint64_t received() const noexcept { return received_.load(std::memory_order_acquire); }

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::uint64_t>, dead_letter_entry> entries_;
  std::atomic<std::uint64_t> received_{0};
};

/// After discovery: waits until every known peer has completed its handshake with this node and
/// then nothing new (a peer, an announcement, a repair) came for `quiet`. There is no API that
/// says a publisher's READY (and so its history) reached us; a handshake shows up as the peer
/// being a ready subscriber of the replay requests (every node subscribes them), and the READY
/// goes out in the same exchange. False when still busy after `limit`.
bool wait_until_settled(meshbus::Node& node, const dead_letter_collector& letters, exit_latch& latch,
                        milliseconds quiet, milliseconds limit) {
  const auto deadline = steady::now() + limit;
  auto activity_of = [&] {
    const auto stats = node.stats();
    return std::array<std::uint64_t, 5>{static_cast<std::uint64_t>(node.peers().size()), letters.received(),
                                        stats.batches_received, stats.repairs_received, stats.nacks_sent};
  };
  auto last = activity_of();
  auto quiet_since = steady::now();
  while (!latch.finished()) {
    const auto now = steady::now();
    const auto peers = node.peers().size();
    if (now - quiet_since >= quiet && node.wait_for_subscribers(wire::dead_letter_replay_topic, peers, milliseconds(0))) {
      return true;
    }
    if (now >= deadline) return false;
    latch.wait_until(std::min(deadline, now + milliseconds(50)));
    if (const auto current = activity_of(); current != last) {
      last = current;
      quiet_since = steady::now();
    }
  }
  return true;
}

const meshbus::PeerInfo* find_peer(const std::vector<meshbus::PeerInfo>& peers, std::string_view node_hex) {
  const auto it = std::find_if(peers.begin(), peers.end(),
                               [&](const meshbus::PeerInfo& p) { return p.id.to_string() == node_hex; });
  return it == peers.end() ? nullptr : &*it;
}

void print_dead_letter_table(const std::vector<dead_letter_entry>& entries) {
  std::vector<std::vector<std::string>> rows{{"NODE", "ID", "TOPIC", "ATTEMPTS", "REASON", "PAYLOAD"}};
  for (const auto& e : entries) {
    rows.push_back({e.node.substr(0, 8), std::to_string(e.id), display_text(e.topic), std::to_string(e.attempts),
                    display_text(e.reason), display_text(e.payload)});
  }
  print_table(rows);
}

json dead_letter_json(const dead_letter_entry& e, const std::vector<meshbus::PeerInfo>& peers) {
  json object;
  object["node"] = e.node;
  object["node_short_id"] = e.node.substr(0, 8);
  if (const auto* peer = find_peer(peers, e.node)) object["node_name"] = peer->name;
  object["id"] = e.id;
  object["topic"] = e.topic;
  object["attempts"] = e.attempts;
  object["reason"] = e.reason;
  object["pattern"] = e.pattern;
  object["publisher"] = e.publisher;
  object["sequence"] = e.sequence;
  object["failed_at"] = iso8601_utc(e.failed_at);
  set_payload(object, e.payload);
  return object;
}

int run_dlq_list(const node_flags& node_opts, const dlq_list_flags& flags, exit_latch& latch) {
  // After discovery: quiet this long with every handshake done, but not longer than the limit.
  constexpr milliseconds settle_quiet{250};
  constexpr milliseconds settle_limit{10'000};
  dead_letter_collector letters;  // before the node, so the node goes first
  auto node = start_node(node_opts, {});
  meshbus::SubscribeOptions subscribe_options;
  subscribe_options.start = meshbus::StartFrom::earliest();  // what each node's history still holds
  node->subscribe(
      wire::dead_letter_pattern, [&letters](const meshbus::Event& event) { letters.add(event); }, subscribe_options);
  const auto wait = discovery_wait(node_opts, flags.wait_ms);
  latch.wait_until(steady::now() + wait);  // every live node, as `peers` waits
  const bool settled = wait_until_settled(*node, letters, latch, settle_quiet, settle_limit);
  const auto peers = node->peers();
  const auto entries = letters.entries();
  const auto cluster = node->cluster();
  node->stop();
  if (flags.json) {
    std::vector<json> objects;
    for (const auto& e : entries) objects.push_back(dead_letter_json(e, peers));
    print_json_array(objects);
  } else if (!entries.empty()) {
    print_dead_letter_table(entries);
  }
  if (!settled && !latch.finished()) {
    print_error("warning: dead letters were still arriving after " + to_ms_text(wait + settle_limit) +
                "; the list may be incomplete");
  }
  if (entries.empty() && !flags.json && !latch.finished()) {
    print_error("no dead letters in the history of the " + std::to_string(peers.size()) + " node" +
                (peers.size() == 1 ? "" : "s") + " of cluster '" + cluster + "'");
  }
  return exit_code::ok;
}

}  // namespace

command add_dlq_list_command(CLI::App& dlq, node_flags& node) {
  auto flags = std::make_shared<dlq_list_flags>();
  auto* app = dlq.add_subcommand(
      "list",
      "List the dead letters announced on '$dlq.<topic>' that the nodes' history still holds,\n"
      "one line each: NODE ID TOPIC ATTEMPTS REASON PAYLOAD (one replayed since is still listed)");
  add_node_flags(*app, node);
  app->add_option("--wait", flags->wait_ms,
                  "How long to listen for nodes, in ms (default: 1.5 x beacon interval); then until every "
                  "node's history arrived and nothing new came for 250 ms")
      ->type_name("MS")
      ->check(non_negative_number());
  app->add_flag("--json", flags->json, "Print one JSON array of objects");
  app->footer(
      footer("  meshbus dlq list\n"
             "  meshbus dlq list --cluster orders --wait 3000 --json\n"));
  return {app, [flags, &node](exit_latch& latch) { return run_dlq_list(node, *flags, latch); }};
}

}  // namespace meshbus_tool
