// What `meshbus trace` prints: the causation tree of the events the nodes reported
// (built by lib/toolkit/trace_tree, one event once however many nodes reported it), then
// the nodes that answered and those that did not. Text: one line per event, indented two
// spaces per level of causation; --json: one document with the same tree nested.
#include <algorithm>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <map>
#include <tuple>

#include "lib/toolkit/trace_tree.hpp"
#include "output.hpp"
#include "trace.hpp"

namespace meshbus_tool {
namespace {

namespace wire = meshbus::wire;

/// One event to print, and the node that reported it.
struct held_event {
  const wire::trace_record* record = nullptr;
  const trace_answer* holder = nullptr;
  std::string tiebreak;  ///< holder's id, topic: a stable order for events sent at the same time
};

/// The events of every answer, each (publisher, epoch, topic, sequence) once.
std::vector<held_event> distinct_events(const std::vector<trace_answer>& answers) {
  std::vector<held_event> out;
  std::map<std::tuple<wire::node_id_bytes, std::uint64_t, std::string_view, std::uint64_t>, bool> seen;
  for (const auto& a : answers) {
    for (const auto& r : a.records) {
      if (!seen.emplace(std::make_tuple(r.publisher, r.epoch, std::string_view(r.topic), r.sequence), true)
               .second) {
        continue;
      }
      out.push_back({&r, &a, a.node.to_string() + " " + r.topic});
    }
  }
  return out;
}

/// The node's name, or its short id when it has none.
std::string node_text(const trace_answer& a) {
  return a.name.empty() ? a.node.short_string() : display_text(a.name);
}

std::string type_text(const wire::trace_record& r) {
  if (r.type_name.empty()) return "-";
  return display_text(r.type_name) + "/" + std::to_string(r.type_version);
}

std::string events_text(std::size_t n) {
  return std::to_string(n) + (n == 1 ? " event" : " events");
}

meshbus::NodeId node_id_of(const wire::node_id_bytes& bytes) {
  meshbus::NodeId id;
  id.bytes = bytes;
  return id;
}

json event_json(const held_event& e, const meshbus::detail::trace_line& line) {
  const auto& r = *e.record;
  json j;
  j["id"] = r.event_id;
  if (!r.causation_id.empty()) j["causation_id"] = r.causation_id;
  if (!r.correlation_id.empty()) j["correlation_id"] = r.correlation_id;
  j["timestamp"] = format_time_ms(r.timestamp_ns);
  j["timestamp_ns"] = r.timestamp_ns;
  j["node"] = e.holder->node.to_string();
  j["node_name"] = e.holder->name;
  j["topic"] = r.topic;
  if (!r.type_name.empty()) {
    j["type_name"] = r.type_name;
    j["type_version"] = r.type_version;
  }
  j["publisher"] = node_id_of(r.publisher).to_string();
  j["epoch"] = r.epoch;
  j["sequence"] = r.sequence;
  if (line.cycle) j["cycle"] = true;
  if (line.ambiguous_cause > 0) j["cause_ambiguous"] = line.ambiguous_cause;
  j["children"] = json::array();
  return j;
}

json nodes_json(const std::vector<trace_answer>& answers) {
  json answered = json::array();
  json silent = json::array();
  for (const auto& a : answers) {
    json j;
    j["id"] = a.node.to_string();
    j["name"] = a.name;
    if (!a.done) {
      silent.push_back(std::move(j));
      continue;
    }
    j["events"] = a.records.size();
    j["status"] = wire::to_string(a.status);
    if (!a.note.empty()) j["note"] = a.note;
    answered.push_back(std::move(j));
  }
  json nodes;
  nodes["answered"] = std::move(answered);
  nodes["silent"] = std::move(silent);
  return nodes;
}

void print_nodes_text(const std::vector<trace_answer>& answers, std::string& out) {
  std::vector<const trace_answer*> answered, silent;
  for (const auto& a : answers) (a.done ? answered : silent).push_back(&a);
  out += "\nnodes that answered (" + std::to_string(answered.size()) + "):\n";
  for (const auto* a : answered) {
    out +=
        "  " + a->node.short_string() + " " + display_text(a->name) + ": " + events_text(a->records.size());
    if (a->status != wire::trace_status::complete) out += ", " + std::string(wire::to_string(a->status));
    if (!a->note.empty()) out += ": " + display_text(a->note);
    out += '\n';
  }
  if (silent.empty()) return;
  out += "nodes that did not answer (" + std::to_string(silent.size()) + "):\n";
  for (const auto* a : silent) out += "  " + a->node.short_string() + " " + display_text(a->name) + "\n";
}

}  // namespace

std::string format_time_ms(std::int64_t unix_ns) {
  const auto ns = static_cast<std::uint64_t>(std::max<std::int64_t>(0, unix_ns));
  const auto secs = static_cast<std::time_t>(ns / 1'000'000'000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03lluZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<unsigned long long>(ns % 1'000'000'000 / 1'000'000));
  return buf;
}

std::size_t print_trace(const std::string& correlation_id, const std::vector<trace_answer>& answers,
                        bool as_json) {
  const auto events = distinct_events(answers);
  std::vector<meshbus::detail::trace_item> items;
  items.reserve(events.size());
  for (const auto& e : events) {
    items.push_back({e.record->event_id, e.record->causation_id, e.record->timestamp_ns, e.tiebreak});
  }
  const auto lines = meshbus::detail::build_trace_tree(items);

  if (as_json) {
    json doc;
    doc["correlation_id"] = correlation_id;
    doc["events"] = events.size();
    // The lines come in pre-order with their depth: path[d] is the children array that a
    // line of depth d goes into.
    json tree = json::array();
    std::vector<json*> path{&tree};
    for (const auto& line : lines) {
      path.resize(line.depth + 1);
      json node;
      if (line.event) {
        node = event_json(events[*line.event], line);
      } else {
        node["not_held"] = line.missing_id;
        node["children"] = json::array();
      }
      auto& siblings = *path[line.depth];
      siblings.push_back(std::move(node));
      path.push_back(&siblings.back()["children"]);
    }
    doc["tree"] = std::move(tree);
    doc["nodes"] = nodes_json(answers);
    std::cout << doc.dump(2, ' ', false, json::error_handler_t::replace) << '\n' << std::flush;
    return events.size();
  }

  std::string out;
  for (const auto& line : lines) {
    out.append(2 * line.depth, ' ');
    if (!line.event) {
      out += "(not held: " + display_text(line.missing_id) + ")\n";
      continue;
    }
    const auto& e = events[*line.event];
    const auto& r = *e.record;
    out += format_time_ms(r.timestamp_ns) + " " + node_text(*e.holder) + " " + display_text(r.topic) + " " +
           type_text(r) + " id=" + display_text(r.event_id);
    if (line.cycle) out += " (cycle: its causes lead back to it)";
    if (line.ambiguous_cause > 0) {
      out += " (cause ambiguous: " + std::to_string(line.ambiguous_cause) + " earlier events have id " +
             display_text(r.causation_id) + ")";
    }
    out += '\n';
  }
  print_nodes_text(answers, out);
  std::cout << out << std::flush;
  return events.size();
}

}  // namespace meshbus_tool
