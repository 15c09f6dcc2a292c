// `meshbus dashboard --http ADDR`: joins the mesh and serves a web page of it (the page is
// dashboard_page.hpp, everything in the binary) with a JSON API (docs/observability.md):
// the nodes' reports and the streams between them, the dead letters of every node with
// replay, and the trace of a flow. Dead letters and traces are what `meshbus dlq list`,
// `dlq replay` and `trace` print with --json: the dashboard runs this program's own
// subcommands for them, with the same node flags, so each lives in one place.
#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <map>
#include <mutex>

#include "capture.hpp"
#include "commands.hpp"
#include "dashboard_page.hpp"
#include "lib/node/metrics_server.hpp"
#include "output.hpp"
#include "report_json.hpp"

namespace meshbus_tool {
namespace {

struct dashboard_flags {
  std::string http = "127.0.0.1:8470";
  std::int64_t wait_ms = -1;
  std::int64_t timeout_ms = 2000;  ///< for each round of reports
};

/// The node flags as arguments again, for the subcommands the dashboard runs.
std::vector<std::string> node_args(const node_flags& f) {
  std::vector<std::string> a;
  auto add = [&](const char* flag, const std::string& value) {
    if (!value.empty()) a.insert(a.end(), {flag, value});
  };
  add("--interface", f.interface);
  add("--cluster", f.cluster);
  add("--peers", f.peers);
  if (f.beacon_port != 0) add("--beacon-port", std::to_string(f.beacon_port));
  if (f.beacon_interval_ms != 0) add("--beacon-interval", std::to_string(f.beacon_interval_ms));
  if (f.max_message_bytes != 0) add("--max-message-bytes", std::to_string(f.max_message_bytes));
  return a;
}

/// stats --json's document, with the time, each node's non-zero fault counters and the
/// links between the nodes.
json mesh_json(const meshbus::MeshReport& mesh) {
  json doc = mesh_report_json(mesh);
  doc["time"] = std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  // The links: who receives what from whom, one per (publisher, receiver) pair.
  std::map<std::pair<std::string, std::string>, std::pair<double, std::vector<std::string>>> links;
  for (std::size_t i = 0; i < mesh.nodes.size(); ++i) {
    const auto& r = mesh.nodes[i];
    json faults = json::object();
    meshbus::for_each_stat(r.stats, [&](const meshbus::StatInfo& info, std::uint64_t v) {
      if (v != 0 && is_fault(info)) faults[std::string(info.name)] = v;
    });
    doc["nodes"][i]["fault_counters"] = faults;
    for (const auto& s : r.received) {
      if (!s.topic.empty() && s.topic.front() == '$') continue;  // meshbus's own
      auto& l = links[{s.publisher.to_string(), r.id.to_string()}];
      l.first += s.events_per_second;
      if (l.second.size() < 5) l.second.push_back(s.topic);
    }
  }
  json edges = json::array();
  for (const auto& [key, value] : links) {
    json e;
    e["from"] = key.first;
    e["to"] = key.second;
    e["topics"] = value.second;
    e["events_per_second"] = value.first;
    edges.push_back(e);
  }
  doc["links"] = edges;
  return doc;
}

void reply_json(httplib::Response& res, const json& body, int status = 200) {
  res.status = status;
  res.set_content(json_text(body), "application/json");  // names from other nodes: not always UTF-8
}

json error_json(const std::string& message) {
  json e;
  e["error"] = message;
  return e;
}

class dashboard {
 public:
  dashboard(meshbus::Node& node, const node_flags& node_opts, const dashboard_flags& flags)
      : node_(node), args_(node_args(node_opts)), flags_(flags) {}

  /// Only requests for this server's own address are served (a page elsewhere that
  /// points a name of its own at 127.0.0.1 — DNS rebinding — gets nothing), and a POST
  /// must carry the page's own header, which no other site's page can send here
  /// without a preflight this server never grants.
  void guard(httplib::Server& s, const std::string& host, int port) {
    allowed_hosts_ = {host + ":" + std::to_string(port), "localhost:" + std::to_string(port)};
    s.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      const auto h = req.get_header_value("Host");
      if (std::find(allowed_hosts_.begin(), allowed_hosts_.end(), h) == allowed_hosts_.end()) {
        reply_json(res, error_json("this dashboard answers requests for " + allowed_hosts_.front() + " only"), 403);
        return httplib::Server::HandlerResponse::Handled;
      }
      if (req.method == "POST" && req.get_header_value("X-Meshbus-Dashboard") != "1") {
        reply_json(res, error_json("a POST needs the header X-Meshbus-Dashboard: 1 (the page sends it)"), 403);
        return httplib::Server::HandlerResponse::Handled;
      }
      return httplib::Server::HandlerResponse::Unhandled;
    });
  }

  void routes(httplib::Server& s) {
    s.Get("/", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(std::string(dashboard_page), "text/html; charset=utf-8");
    });
    s.Get("/api/mesh", [this](const httplib::Request&, httplib::Response& res) { reply_json(res, mesh()); });
    s.Get("/api/dead-letters", [this](const httplib::Request&, httplib::Response& res) {
      const auto c = tool({"dlq", "list", "--json"}, {});
      if (c.status != 0) return reply_json(res, error_json(trimmed(c.err, "dlq list failed")), 502);
      try {
        reply_json(res, json::parse(c.out));
      } catch (const json::exception&) {
        reply_json(res, error_json("dlq list printed something that is not JSON"), 502);
      }
    });
    s.Post("/api/dead-letters/replay", [this](const httplib::Request& req, httplib::Response& res) {
      const auto node = req.get_param_value("node");
      const auto id = req.get_param_value("id");
      if (node.empty() || id.empty() || node.size() > 32 || id.size() > 20) {
        return reply_json(res, error_json("replay needs node (an id) and id (a number)"), 400);
      }
      const auto c = tool({"dlq", "replay"}, {node, id});
      json body;
      body["ok"] = c.status == 0;
      body["message"] = trimmed(c.out + c.err, "");
      reply_json(res, body);
    });
    s.Get("/api/trace", [this](const httplib::Request& req, httplib::Response& res) {
      const auto id = req.get_param_value("id");
      if (id.empty() || id.size() > 255) return reply_json(res, error_json("trace needs id (1 to 255 bytes)"), 400);
      const auto c = tool({"trace", "--json"}, {id});
      try {
        auto doc = json::parse(c.out);
        if (c.status != 0 && doc.value("events", 0) == 0) {
          return reply_json(res, error_json(trimmed(c.err, "no events of that flow")), 404);
        }
        reply_json(res, doc);
      } catch (const json::exception&) {
        reply_json(res, error_json(trimmed(c.err, "trace failed")), 502);
      }
    });
  }

 private:
  /// The reports, at most one round per 500 ms whatever the number of viewers.
  json mesh() {
    std::lock_guard lock(mu_);
    const auto now = steady::now();
    if (cached_.is_null() || now - cached_at_ >= milliseconds(500)) {
      auto reports = node_.reports(milliseconds(flags_.timeout_ms));
      reports.nodes.erase(reports.nodes.begin());  // the dashboard's own node
      cached_ = mesh_json(reports);
      cached_at_ = now;
    }
    return cached_;
  }

  /// Runs this program's subcommand `command` with the dashboard's node flags, then
  /// `values` from the request as positionals only (after "--").
  captured tool(std::vector<std::string> command, const std::vector<std::string>& values) {
    meshbus::support::spawn_options o;
    o.program = "/proc/self/exe";
    o.argv = {"meshbus"};
    o.argv.insert(o.argv.end(), command.begin(), command.end());
    o.argv.insert(o.argv.end(), args_.begin(), args_.end());
    o.argv.emplace_back("--");
    o.argv.insert(o.argv.end(), values.begin(), values.end());
    // Its own node: not the dashboard's metrics port, data directory or name.
    o.env = {{"MESHBUS_METRICS", ""}, {"MESHBUS_DATA_DIR", ""}, {"MESHBUS_NAME", ""}};
    return run_captured(o, "", milliseconds(30000));
  }

  static std::string trimmed(std::string s, const std::string& otherwise) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s.empty() ? otherwise : s;
  }

  meshbus::Node& node_;
  std::vector<std::string> args_;
  std::vector<std::string> allowed_hosts_;
  const dashboard_flags& flags_;
  std::mutex mu_;
  json cached_;
  steady::time_point cached_at_{};
};

int run_dashboard(const node_flags& node_opts, const dashboard_flags& flags, exit_latch& latch) {
  const auto where = meshbus::detail::check_listen_address(flags.http, "--http");
  auto node = start_node(node_opts, {});
  dashboard d(*node, node_opts, flags);
  httplib::Server server;
  server.set_read_timeout(5, 0);
  server.set_payload_max_length(64 << 10);
  const auto port = meshbus::detail::bind_http(server, where, flags.http);  // port 0: a free one, printed below
  d.guard(server, where.host, port);
  d.routes(server);
  auto serving = meshbus::detail::listen_http(server);
  std::cout << "meshbus dashboard on http://" << where.host << ':' << port << "/" << std::endl;
  latch.wait();
  server.stop();
  serving.join();
  node->stop();
  return latch.code();
}

}  // namespace

command add_dashboard_command(CLI::App& parent, node_flags& node) {
  auto flags = std::make_shared<dashboard_flags>();
  auto* app = parent.add_subcommand(
      "dashboard", "Serve a live web page of the mesh: nodes and streams, topics, lag, faults, dead letters, traces");
  add_node_flags(*app, node);
  app->add_option("--http", flags->http, "Where to serve the page: HOST:PORT (default 127.0.0.1:8470; port 0: any)")
      ->type_name("ADDR");
  app->add_option("--timeout", flags->timeout_ms, "How long each node has to answer a round, in ms (default 2000)")
      ->type_name("MS")
      ->check(positive_number());
  app->footer("\nThe page updates itself every second; its JSON API (/api/mesh, /api/dead-letters,\n"
              "/api/dead-letters/replay, /api/trace) is described in docs/observability.md.\n" +
              footer("  meshbus dashboard\n  meshbus dashboard --http 127.0.0.1:9000 --cluster shop\n"));
  return {app, [flags, &node](exit_latch& latch) { return run_dashboard(node, *flags, latch); }};
}

}  // namespace meshbus_tool
