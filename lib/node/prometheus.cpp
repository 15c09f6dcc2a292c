// Prometheus text rendering; see prometheus.hpp.
#include "lib/node/prometheus.hpp"

#include <fmt/format.h>

namespace meshbus::detail {
namespace {

/// The length of the valid UTF-8 sequence at the start of `v`, 0 when there is none.
std::size_t utf8_length(std::string_view v) {
  const auto b0 = static_cast<unsigned char>(v[0]);
  const std::size_t n = b0 < 0x80 ? 1 : (b0 >> 5) == 0x6 ? 2 : (b0 >> 4) == 0xe ? 3 : (b0 >> 3) == 0x1e ? 4 : 0;
  if (n == 0 || n > v.size()) return 0;
  for (std::size_t i = 1; i < n; ++i) {
    if ((static_cast<unsigned char>(v[i]) >> 6) != 0x2) return 0;
  }
  return n;
}

/// A label value: backslash, double quote and newline escaped; bytes that are not
/// UTF-8 (names come from other nodes) replaced by U+FFFD, which Prometheus requires.
std::string escaped(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  while (!v.empty()) {
    const auto n = utf8_length(v);
    if (n == 0) {
      out += "\xef\xbf\xbd";
      v.remove_prefix(1);
      continue;
    }
    if (n > 1) {
      out.append(v.substr(0, n));
      v.remove_prefix(n);
      continue;
    }
    const char c = v.front();
    v.remove_prefix(1);
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

/// HELP text: backslash and newline escaped.
std::string help_text(std::string_view v) {
  std::string out;
  for (const char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

class writer {
 public:
  explicit writer(const NodeReport& r)
      : node_(fmt::format("node=\"{}\",node_id=\"{}\"", escaped(r.name), r.id.to_string())) {}

  void family(std::string_view name, std::string_view type, std::string_view help) {
    out_ += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help_text(help), name, type);
  }
  void sample(std::string_view name, std::string_view labels, double value) {
    out_ += fmt::format("{}{{{}{}{}}} {}\n", name, node_, labels.empty() ? "" : ",", labels, value);
  }
  void sample(std::string_view name, std::string_view labels, std::uint64_t value) {
    out_ += fmt::format("{}{{{}{}{}}} {}\n", name, node_, labels.empty() ? "" : ",", labels, value);
  }
  void histogram(std::string_view name, std::string_view help, const LatencyHistogram& h) {
    family(name, "histogram", help);
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < h.counts.size(); ++i) {
      cumulative += h.counts[i];
      const auto le = i < LatencyHistogram::bounds_ns.size()
                          ? fmt::format("{}", static_cast<double>(LatencyHistogram::bounds_ns[i]) / 1e9)
                          : std::string("+Inf");
      sample(fmt::format("{}_bucket", name), fmt::format("le=\"{}\"", le), cumulative);
    }
    sample(fmt::format("{}_sum", name), "", static_cast<double>(h.sum_ns) / 1e9);
    sample(fmt::format("{}_count", name), "", cumulative);
  }
  std::string take() { return std::move(out_); }

 private:
  std::string node_;
  std::string out_;
};

}  // namespace

std::string prometheus_text(const NodeReport& r) {
  writer w(r);
  w.family("meshbus_info", "gauge", "This node: 1, with its cluster and epoch as labels");
  w.sample("meshbus_info", fmt::format("cluster=\"{}\",epoch=\"{}\"", escaped(r.cluster), r.epoch), std::uint64_t{1});
  w.family("meshbus_uptime_seconds", "gauge", "Seconds since the node started");
  w.sample("meshbus_uptime_seconds", "", static_cast<double>(r.uptime_ms) / 1000.0);
  for_each_stat(r.stats, [&](const StatInfo& info, std::uint64_t v) {
    const bool counter = info.kind == StatKind::counter;
    const auto name = fmt::format("meshbus_{}{}", info.name, counter ? "_total" : "");
    w.family(name, counter ? "counter" : "gauge", info.doc);
    w.sample(name, "", v);
  });

  w.family("meshbus_stream_events_total", "counter",
           "Events of a stream: its last sequence, sent (direction out) or delivered in order (in)");
  for (const auto& s : r.published) {
    w.sample("meshbus_stream_events_total",
             fmt::format("direction=\"out\",topic=\"{}\",publisher=\"{}\"", escaped(s.topic), s.publisher.to_string()),
             s.last_seq);
  }
  for (const auto& s : r.received) {
    w.sample("meshbus_stream_events_total",
             fmt::format("direction=\"in\",topic=\"{}\",publisher=\"{}\"", escaped(s.topic), s.publisher.to_string()),
             s.last_seq);
  }
  w.family("meshbus_streams_omitted", "gauge", "Streams beyond the 1000 busiest each way, not listed");
  w.sample("meshbus_streams_omitted", "", r.streams_omitted);

  w.family("meshbus_subscriber_lag_events", "gauge",
           "Events of this node's streams a subscriber has not acknowledged");
  for (const auto& l : r.lagging) {
    w.sample("meshbus_subscriber_lag_events",
             fmt::format("subscriber=\"{}\",subscriber_id=\"{}\"", escaped(l.name), l.node.to_string()), l.events);
  }
  w.family("meshbus_subscriber_lag_seconds", "gauge",
           "How long ago a subscriber's oldest unacknowledged event was published");
  for (const auto& l : r.lagging) {
    w.sample("meshbus_subscriber_lag_seconds",
             fmt::format("subscriber=\"{}\",subscriber_id=\"{}\"", escaped(l.name), l.node.to_string()),
             static_cast<double>(l.lag_ms) / 1000.0);
  }
  w.family("meshbus_peer_last_heard_seconds", "gauge", "Seconds since a peer was last heard from");
  for (const auto& p : r.peers) {
    w.sample("meshbus_peer_last_heard_seconds",
             fmt::format("peer=\"{}\",peer_id=\"{}\",state=\"{}\"", escaped(p.name), p.id.to_string(),
                         p.state == PeerState::alive ? "alive" : "suspect"),
             static_cast<double>(p.last_heard_ms) / 1000.0);
  }
  w.histogram("meshbus_delivery_latency_seconds",
              "From publish (the publisher's clock) to the start of the handlers here, per event",
              r.delivery_latency);
  w.histogram("meshbus_handler_seconds", "Handler time per event", r.handler_time);
  return w.take();
}

}  // namespace meshbus::detail
