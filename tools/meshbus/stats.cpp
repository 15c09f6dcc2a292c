// `meshbus stats` and `meshbus top`: the reports of the live nodes (Node::reports(),
// docs/protocol.md §11). stats prints them once (or every --watch seconds) as text or
// JSON; top redraws a live view in place (plain ANSI), sortable by key, until `q`.
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <map>
#include <sstream>

#include <fmt/format.h>

#include "commands.hpp"
#include "output.hpp"
#include "report_json.hpp"

namespace meshbus_tool {
namespace {

struct stats_flags {
  std::string node;            ///< a name, or a prefix of an id; empty: every node
  double watch_s = 0;          ///< 0: once
  bool json = false;
  std::int64_t wait_ms = -1;   ///< discovery
  std::int64_t timeout_ms = 2000;
  std::int64_t iterations = 0;  ///< top: refreshes before exiting (0: until q)
  double interval_s = 1;       ///< top
  std::string sort = "name";   ///< top
};

std::string rate_text(double per_second) {
  if (per_second >= 1e6) return fmt::format("{:.2f}M/s", per_second / 1e6);
  if (per_second >= 1e4) return fmt::format("{:.1f}k/s", per_second / 1e3);
  if (per_second >= 10) return fmt::format("{:.0f}/s", per_second);
  return fmt::format("{:.1f}/s", per_second);
}

std::string ns_text(std::uint64_t ns) {
  if (ns >= 1'000'000'000) return fmt::format("{:.1f}s", static_cast<double>(ns) / 1e9);
  if (ns >= 1'000'000) return fmt::format("{:.1f}ms", static_cast<double>(ns) / 1e6);
  return fmt::format("{}us", ns / 1000);
}

bool matches(const meshbus::NodeReport& r, const std::string& want) {
  if (want.empty()) return true;
  return r.name == want || r.id.to_string().rfind(want, 0) == 0;
}

std::uint64_t faults_of(const meshbus::NodeReport& r) {
  std::uint64_t n = 0;
  meshbus::for_each_stat(r.stats, [&](const meshbus::StatInfo& info, std::uint64_t v) {
    if (is_fault(info)) n += v;
  });
  return n;
}

double published_rate(const meshbus::NodeReport& r) {
  double sum = 0;
  for (const auto& s : r.published) sum += s.events_per_second;
  return sum;
}

double received_rate(const meshbus::NodeReport& r) {
  double sum = 0;
  for (const auto& s : r.received) sum += s.events_per_second;
  return sum;
}

json histogram_json(const meshbus::LatencyHistogram& h) {
  json o;
  o["count"] = h.count;
  o["sum_ns"] = h.sum_ns;
  o["p50_ns"] = h.quantile_ns(0.5);
  o["p99_ns"] = h.quantile_ns(0.99);
  json buckets = json::array();
  for (std::size_t i = 0; i < h.counts.size(); ++i) {
    json b;
    b["le_ns"] = i < meshbus::LatencyHistogram::bounds_ns.size() ? json(meshbus::LatencyHistogram::bounds_ns[i])
                                                                  : json("+Inf");
    b["count"] = h.counts[i];
    buckets.push_back(b);
  }
  o["buckets"] = buckets;
  return o;
}

json stream_json(const meshbus::StreamReport& s, bool with_publisher) {
  json o;
  if (with_publisher) o["publisher"] = s.publisher.to_string();
  o["topic"] = s.topic;
  o["last_seq"] = s.last_seq;
  o["events_per_second"] = std::round(s.events_per_second * 1000) / 1000;
  return o;
}

}  // namespace

bool is_fault(const meshbus::StatInfo& info) {
  if (info.name == "foreign_cluster_beacons" || info.name == "foreign_network_beacons") return false;
  return info.section == meshbus::StatSection::bad_input || info.name == "handler_errors" ||
         info.name == "dead_letters" || info.name == "events_lost";
}

json report_json(const meshbus::NodeReport& r) {
  json o;
  o["id"] = r.id.to_string();
  o["short_id"] = r.id.short_string();
  o["name"] = r.name;
  o["cluster"] = r.cluster;
  o["epoch"] = r.epoch;
  o["address"] = r.address;
  o["router_port"] = r.router_port;
  o["pub_port"] = r.pub_port;
  o["uptime_ms"] = r.uptime_ms;
  o["unix_ms"] = r.unix_ms;
  json stats = json::object();
  meshbus::for_each_stat(r.stats, [&](const meshbus::StatInfo& info, std::uint64_t v) {
    stats[std::string(info.name)] = v;
  });
  o["stats"] = stats;
  o["faults"] = faults_of(r);
  json peers = json::array();
  for (const auto& p : r.peers) {
    json e;
    e["id"] = p.id.to_string();
    e["name"] = p.name;
    e["address"] = p.address;
    e["state"] = p.state == meshbus::PeerState::alive ? "alive" : "suspect";
    e["last_heard_ms"] = p.last_heard_ms;
    peers.push_back(e);
  }
  o["peers"] = peers;
  json published = json::array();
  for (const auto& s : r.published) published.push_back(stream_json(s, false));
  o["published"] = published;
  json received = json::array();
  for (const auto& s : r.received) received.push_back(stream_json(s, true));
  o["received"] = received;
  o["streams_omitted"] = r.streams_omitted;
  json lagging = json::array();
  for (const auto& l : r.lagging) {
    json e;
    e["node"] = l.node.to_string();
    e["name"] = l.name;
    e["events"] = l.events;
    e["lag_ms"] = l.lag_ms;
    e["absent"] = l.absent;
    lagging.push_back(e);
  }
  o["lagging"] = lagging;
  o["subscriptions"] = r.subscriptions;
  o["services"] = r.services;
  o["delivery_latency"] = histogram_json(r.delivery_latency);
  o["handler_time"] = histogram_json(r.handler_time);
  return o;
}

json mesh_report_json(const meshbus::MeshReport& mesh) {
  json doc;
  json nodes = json::array();
  for (const auto& r : mesh.nodes) nodes.push_back(report_json(r));
  doc["nodes"] = nodes;
  json silent = json::array();
  for (const auto& p : mesh.unanswered) {
    json e;
    e["id"] = p.id.to_string();
    e["name"] = p.name;
    silent.push_back(e);
  }
  doc["unanswered"] = silent;
  return doc;
}

namespace {

void print_report_text(const meshbus::NodeReport& r) {
  std::size_t alive = 0;
  for (const auto& p : r.peers) alive += p.state == meshbus::PeerState::alive ? 1 : 0;
  std::cout << fmt::format("node {} '{}' (cluster '{}') {} ROUTER {} PUB {}, up {}\n", r.id.short_string(),
                           display_text(r.name), display_text(r.cluster), display_text(r.address), r.router_port,
                           r.pub_port,
                           human_duration(std::chrono::milliseconds(r.uptime_ms)));
  std::cout << fmt::format("  peers: {} alive, {} suspect; publishes {}, receives {}, faults {}\n", alive,
                           r.peers.size() - alive, rate_text(published_rate(r)), rate_text(received_rate(r)),
                           faults_of(r));
  if (r.delivery_latency.count != 0) {
    std::cout << fmt::format("  publish to handler: p50 {} p99 {} ({} events); handler p50 {} p99 {}\n",
                             ns_text(r.delivery_latency.quantile_ns(0.5)), ns_text(r.delivery_latency.quantile_ns(0.99)),
                             r.delivery_latency.count, ns_text(r.handler_time.quantile_ns(0.5)),
                             ns_text(r.handler_time.quantile_ns(0.99)));
  }
  std::vector<std::vector<std::string>> rows{{"  STREAM", "PUBLISHER", "LAST SEQ", "RATE"}};
  for (const auto& s : r.published) {
    rows.push_back({"  out " + display_text(s.topic), "self", std::to_string(s.last_seq), rate_text(s.events_per_second)});
  }
  for (const auto& s : r.received) {
    rows.push_back({"  in  " + display_text(s.topic), s.publisher.short_string(), std::to_string(s.last_seq),
                    rate_text(s.events_per_second)});
  }
  if (rows.size() > 1) print_table(rows);
  if (r.streams_omitted != 0) std::cout << "  (" << r.streams_omitted << " quieter streams not listed)\n";
  if (!r.lagging.empty()) {
    std::vector<std::vector<std::string>> lag{{"  BEHIND ON ITS STREAMS", "ID", "EVENTS", "LAG"}};
    for (const auto& l : r.lagging) {
      lag.push_back({"  " + display_text(l.name.empty() ? "?" : l.name), l.node.short_string(),
                     std::to_string(l.events), std::to_string(l.lag_ms) + " ms" + (l.absent ? " (absent)" : "")});
    }
    print_table(lag);
  }
  std::vector<std::string> nonzero;
  meshbus::for_each_stat(r.stats, [&](const meshbus::StatInfo& info, std::uint64_t v) {
    if (v != 0) nonzero.push_back(fmt::format("{}={}", info.name, v));
  });
  if (!nonzero.empty()) std::cout << "  " << join(nonzero, " ") << '\n';
}

/// The reports of the nodes wanted, and the live ones that did not answer.
meshbus::MeshReport take(meshbus::Node& node, const stats_flags& flags) {
  auto mesh = node.reports(milliseconds(flags.timeout_ms));
  // The asking node itself is a tool, not part of the mesh being looked at.
  mesh.nodes.erase(mesh.nodes.begin());
  std::erase_if(mesh.nodes, [&](const meshbus::NodeReport& r) { return !matches(r, flags.node); });
  if (!flags.node.empty()) {
    std::erase_if(mesh.unanswered, [&](const meshbus::PeerInfo& p) {
      return p.name != flags.node && p.id.to_string().rfind(flags.node, 0) != 0;
    });
  }
  return mesh;
}

void print_unanswered(const meshbus::MeshReport& mesh) {
  for (const auto& p : mesh.unanswered) {
    print_error("node " + p.id.short_string() + " '" + display_text(p.name) + "' did not answer in time");
  }
}

int run_stats(const node_flags& node_opts, const stats_flags& flags, exit_latch& latch) {
  auto node = start_node(node_opts, {});
  discover_peers(*node, discovery_wait(node_opts, flags.wait_ms), latch);
  int code = exit_code::ok;
  for (bool first = true; !latch.finished(); first = false) {
    if (!first && !latch.wait_until(steady::now() + std::chrono::duration_cast<milliseconds>(
                                                        std::chrono::duration<double>(flags.watch_s)))) {
      // the interval passed
    }
    if (latch.finished()) break;
    const auto mesh = take(*node, flags);
    if (flags.json) {
      const auto doc = mesh_report_json(mesh);
      // Watching: one document per line; once: indented. Names from other nodes may
      // be any bytes: what is not UTF-8 is replaced.
      std::cout << (flags.watch_s > 0 ? json_text(doc) : doc.dump(2, ' ', false, json::error_handler_t::replace))
                << std::endl;
    } else {
      if (!first) std::cout << '\n';
      for (const auto& r : mesh.nodes) print_report_text(r);
      std::cout.flush();
    }
    print_unanswered(mesh);
    code = mesh.nodes.empty() ? exit_code::failure : exit_code::ok;
    if (mesh.nodes.empty()) {
      print_error(flags.node.empty() ? "no node of cluster '" + node->cluster() + "' answered"
                                     : "no node named '" + display_text(flags.node) + "' answered");
    }
    if (flags.watch_s <= 0) break;
  }
  node->stop();
  return code;
}

// --- top ---

/// Raw keyboard input while top runs, when stdin is a terminal; restored on exit.
class raw_terminal {
 public:
  raw_terminal() {
    if (::isatty(STDIN_FILENO) == 0 || ::tcgetattr(STDIN_FILENO, &saved_) != 0) return;
    termios raw = saved_;
    raw.c_lflag &= static_cast<tcflag_t>(~(ICANON | ECHO));
    raw.c_cc[VMIN] = 0;
    raw.c_cc[VTIME] = 0;
    active_ = ::tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
  }
  ~raw_terminal() {
    if (active_) ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
  }
  raw_terminal(const raw_terminal&) = delete;
  raw_terminal& operator=(const raw_terminal&) = delete;
  /// A key pressed since the last call, or 0.
  char key() const {
    if (!active_) return 0;
    char c = 0;
    return ::read(STDIN_FILENO, &c, 1) == 1 ? c : 0;
  }
  bool active() const { return active_; }

 private:
  termios saved_{};
  bool active_ = false;
};

struct top_row {
  const meshbus::NodeReport* r;
  double out, in;
  std::uint64_t behind_events = 0, behind_ms = 0, faults = 0;
};

std::string draw_top(const meshbus::MeshReport& mesh, const std::string& sort, bool ansi) {
  std::vector<top_row> rows;
  for (const auto& r : mesh.nodes) {
    top_row t{&r, published_rate(r), received_rate(r)};
    for (const auto& l : r.lagging) {
      t.behind_events += l.events;
      t.behind_ms = std::max(t.behind_ms, l.lag_ms);
    }
    t.faults = faults_of(r);
    rows.push_back(t);
  }
  std::stable_sort(rows.begin(), rows.end(), [&](const top_row& a, const top_row& b) {
    if (sort == "rate") return a.out + a.in > b.out + b.in;
    if (sort == "lag") return a.behind_ms != b.behind_ms ? a.behind_ms > b.behind_ms : a.behind_events > b.behind_events;
    if (sort == "faults") return a.faults > b.faults;
    return a.r->name < b.r->name;
  });
  std::ostringstream out;
  if (ansi) out << "\033[H\033[2J";
  std::uint64_t total_faults = 0;
  double total_rate = 0;
  for (const auto& t : rows) {
    total_faults += t.faults;
    total_rate += t.out;
  }
  out << fmt::format("meshbus top - {} nodes, {} silent, publishing {}, faults {}   sort: {}  (n r l f sort, q quits)\n\n",
                     rows.size(), mesh.unanswered.size(), rate_text(total_rate), total_faults, sort);
  std::vector<std::vector<std::string>> table{
      {"NAME", "ID", "PEERS", "OUT", "IN", "BEHIND", "LAG", "P99 DELIVERY", "QUEUED", "FAULTS", "UP"}};
  for (const auto& t : rows) {
    const auto& r = *t.r;
    table.push_back({display_text(r.name), r.id.short_string(), std::to_string(r.peers.size()), rate_text(t.out),
                     rate_text(t.in), std::to_string(t.behind_events), std::to_string(t.behind_ms) + " ms",
                     r.delivery_latency.count == 0 ? "-" : ns_text(r.delivery_latency.quantile_ns(0.99)),
                     std::to_string(r.stats.send_queue_bytes + r.stats.receive_queue_bytes) + " B",
                     std::to_string(t.faults), human_duration(std::chrono::milliseconds(r.uptime_ms))});
  }
  for (const auto& p : mesh.unanswered) {
    table.push_back({display_text(p.name), p.id.short_string(), "?", "-", "-", "-", "-", "-", "-", "-", "silent"});
  }
  out << table_text(table);
  // The busiest streams of the mesh.
  std::vector<std::pair<const meshbus::NodeReport*, const meshbus::StreamReport*>> streams;
  for (const auto& r : mesh.nodes) {
    for (const auto& s : r.published) streams.emplace_back(&r, &s);
  }
  std::stable_sort(streams.begin(), streams.end(),
                   [](const auto& a, const auto& b) { return a.second->events_per_second > b.second->events_per_second; });
  if (streams.size() > 10) streams.resize(10);
  if (!streams.empty()) {
    out << '\n';
    std::vector<std::vector<std::string>> st{{"TOPIC", "PUBLISHER", "RATE", "LAST SEQ"}};
    for (const auto& [r, s] : streams) {
      st.push_back({display_text(s->topic), display_text(r->name), rate_text(s->events_per_second), std::to_string(s->last_seq)});
    }
    out << table_text(st);
  }
  return out.str();
}

int run_top(const node_flags& node_opts, const stats_flags& flags, exit_latch& latch) {
  if (flags.sort != "name" && flags.sort != "rate" && flags.sort != "lag" && flags.sort != "faults") {
    throw usage_error("--sort takes name, rate, lag or faults, not '" + flags.sort + "'");
  }
  auto node = start_node(node_opts, {});
  discover_peers(*node, discovery_wait(node_opts, flags.wait_ms), latch);
  raw_terminal terminal;
  const bool ansi = ::isatty(STDOUT_FILENO) != 0;
  std::string sort = flags.sort;
  const auto interval = std::chrono::duration_cast<milliseconds>(std::chrono::duration<double>(flags.interval_s));
  for (std::int64_t n = 0; !latch.finished() && (flags.iterations == 0 || n < flags.iterations); ++n) {
    const auto mesh = take(*node, flags);
    std::cout << draw_top(mesh, sort, ansi);
    if (!ansi) std::cout << "--\n";
    std::cout.flush();
    if (flags.iterations != 0 && n + 1 >= flags.iterations) break;
    // Wait for the next refresh, reading keys meanwhile.
    const auto next = steady::now() + interval;
    while (!latch.finished() && steady::now() < next) {
      switch (terminal.key()) {
        case 'q': latch.finish(exit_code::ok); break;
        case 'n': sort = "name"; break;
        case 'r': sort = "rate"; break;
        case 'l': sort = "lag"; break;
        case 'f': sort = "faults"; break;
        default: break;
      }
      latch.wait_until(std::min(next, steady::now() + milliseconds(50)));
    }
  }
  node->stop();
  return exit_code::ok;
}

void add_common(CLI::App& app, stats_flags& flags) {
  app.add_option("--wait", flags.wait_ms, "How long to look for nodes, in ms (default: 1.5 x beacon interval)")
      ->type_name("MS")
      ->check(non_negative_number());
  app.add_option("--timeout", flags.timeout_ms,
                 "How long each node has to answer, in ms (default 2000); the others are listed as silent")
      ->type_name("MS")
      ->check(positive_number());
}

}  // namespace

command add_stats_command(CLI::App& parent, node_flags& node) {
  auto flags = std::make_shared<stats_flags>();
  auto* app = parent.add_subcommand(
      "stats", "The reports of the live nodes: counters, peers, streams with rates, lag, latency histograms");
  add_node_flags(*app, node);
  app->add_option("node", flags->node, "Only this node: its name or a prefix of its id")->type_name("NODE");
  app->add_option("--watch", flags->watch_s, "Print again every SECONDS (JSON: one document per line)")
      ->type_name("SECONDS")
      ->check(positive_number());
  app->add_flag("--json", flags->json, "One JSON document: {\"nodes\": [...], \"unanswered\": [...]}");
  add_common(*app, *flags);
  app->footer("\nRates are events per second since the node's previous report (the first report of a node\n"
              "gives averages over its life). Exit 0 when some node answered, 1 when none did.\n" +
              footer("  meshbus stats\n  meshbus stats orders-1 --json\n  meshbus stats --watch 2\n"));
  return {app, [flags, &node](exit_latch& latch) { return run_stats(node, *flags, latch); }};
}

command add_top_command(CLI::App& parent, node_flags& node) {
  auto flags = std::make_shared<stats_flags>();
  auto* app = parent.add_subcommand("top", "A live view of the mesh: nodes, rates, lag, latency and faults");
  add_node_flags(*app, node);
  app->add_option("--interval", flags->interval_s, "Seconds between refreshes (default 1)")
      ->type_name("SECONDS")
      ->check(positive_number());
  app->add_option("--sort", flags->sort, "name, rate, lag or faults (keys n, r, l, f while running)")
      ->type_name("KEY");
  app->add_option("--iterations", flags->iterations, "Exit after this many refreshes (default: until q or Ctrl-C)")
      ->type_name("N")
      ->check(non_negative_number());
  add_common(*app, *flags);
  app->footer(footer("  meshbus top\n  meshbus top --sort lag --interval 0.5\n"));
  return {app, [flags, &node](exit_latch& latch) { return run_top(node, *flags, latch); }};
}

}  // namespace meshbus_tool
