// Node report codec; see report.hpp. Reports are rare (one per request), so decoding
// into owning structures is fine. Top level: a map of string keys (unknown keys are
// skipped); each list entry is an array whose extra elements are skipped and whose
// missing ones are malformed.
#include "lib/wire/report.hpp"

#include <algorithm>
#include <cmath>
#include <string_view>

#include "lib/wire/envelope.hpp"
#include "lib/wire/topic.hpp"

namespace meshbus::wire {
namespace {

constexpr std::uint32_t max_top_keys = 256;
constexpr std::uint32_t max_entry = 16;
constexpr std::size_t max_key = 64;
constexpr std::uint32_t max_stats = 1024;
constexpr std::uint32_t max_patterns_listed = 4096;

std::uint64_t milli(double v) {
  return v <= 0 || !std::isfinite(v) ? 0 : static_cast<std::uint64_t>(std::llround(v * 1000.0));
}

void write_id(mp_writer& w, const NodeId& id) { w.bin(id.bytes.data(), id.bytes.size()); }

bool read_id(mp_reader& r, NodeId& id) { return r.read_fixed_bin(id.bytes.data(), id.bytes.size()); }

bool read_text(mp_reader& r, std::string& out, std::size_t max) {
  std::string_view v;
  if (!r.read_str(v, max)) return false;
  out.assign(v);
  return true;
}

/// Opens a list entry of at least `min` elements; returns its count (0 on failure).
std::uint32_t open(mp_reader& r, std::uint32_t min) {
  std::uint32_t n = 0;
  if (!r.read_array(n, max_entry) || n < min) {
    r.fail();
    return 0;
  }
  return n;
}

void skip_rest(mp_reader& r, std::uint32_t n, std::uint32_t known) {
  if (!r.failed() && n > known) r.skip_n(n - known);
}

template <class T, class Write>
void write_list(mp_writer& w, const std::vector<T>& v, std::uint32_t max, Write&& write) {
  const auto n = static_cast<std::uint32_t>(std::min<std::size_t>(v.size(), max));
  w.array(n);
  for (std::uint32_t i = 0; i < n; ++i) write(v[i]);
}

template <class T, class Read>
bool read_list(mp_reader& r, std::vector<T>& out, std::uint32_t max, Read&& read) {
  std::uint32_t n = 0;
  if (!r.read_array(n, max)) return false;
  out.clear();
  out.reserve(n);
  for (std::uint32_t i = 0; i < n && !r.failed(); ++i) {
    T item{};
    read(item);
    out.push_back(std::move(item));
  }
  return !r.failed();
}

void write_histogram(mp_writer& w, const LatencyHistogram& h) {
  // [bounds (ns), counts (one more than bounds), count, sum (ns)]
  w.array(4);
  w.array(static_cast<std::uint32_t>(LatencyHistogram::bounds_ns.size()));
  for (auto b : LatencyHistogram::bounds_ns) w.uint(b);
  w.array(static_cast<std::uint32_t>(h.counts.size()));
  for (auto c : h.counts) w.uint(c);
  w.uint(h.count);
  w.uint(h.sum_ns);
}

// Buckets are matched by bound: a histogram of other bounds puts each count in the
// first local bucket whose bound is at least its own.
void read_histogram(mp_reader& r, LatencyHistogram& h) {
  const auto n = open(r, 4);
  if (n == 0) return;
  std::uint32_t nb = 0;
  std::vector<std::uint64_t> bounds;
  if (!r.read_array(nb, 64)) return;
  for (std::uint32_t i = 0; i < nb; ++i) {
    std::uint64_t b = 0;
    r.read_uint(b);
    if (!bounds.empty() && b <= bounds.back()) r.fail();  // bounds ascend
    bounds.push_back(b);
  }
  std::uint32_t nc = 0;
  if (!r.read_array(nc, 65) || nc != nb + 1) {
    r.fail();
    return;
  }
  h.counts.fill(0);
  for (std::uint32_t i = 0; i < nc; ++i) {
    std::uint64_t c = 0;
    r.read_uint(c);
    std::size_t at = h.counts.size() - 1;
    if (i < nb) {
      const auto it = std::lower_bound(LatencyHistogram::bounds_ns.begin(), LatencyHistogram::bounds_ns.end(),
                                       bounds[i]);
      at = static_cast<std::size_t>(it - LatencyHistogram::bounds_ns.begin());
    }
    h.counts[at] += c;
  }
  r.read_uint(h.count);
  r.read_uint(h.sum_ns);
  skip_rest(r, n, 4);
}

void write_stream(mp_writer& w, const StreamReport& s, bool with_publisher) {
  w.array(with_publisher ? 4 : 3);
  if (with_publisher) write_id(w, s.publisher);
  w.str(s.topic);
  w.uint(s.last_seq);
  w.uint(milli(s.events_per_second));
}

void read_stream(mp_reader& r, StreamReport& s, bool with_publisher) {
  const std::uint32_t known = with_publisher ? 4 : 3;
  const auto n = open(r, known);
  if (n == 0) return;
  if (with_publisher) read_id(r, s.publisher);
  read_text(r, s.topic, max_topic_length);
  r.read_uint(s.last_seq);
  std::uint64_t rate = 0;
  r.read_uint(rate);
  s.events_per_second = static_cast<double>(rate) / 1000.0;
  skip_rest(r, n, known);
}

void key(mp_writer& w, std::string_view k) { w.str(k); }

}  // namespace

bytes encode_report(const NodeReport& rep) {
  bytes out;
  out.reserve(4096);
  mp_writer w(out);
  w.map(19);
  key(w, "id");
  write_id(w, rep.id);
  key(w, "name");
  w.str(rep.name);
  key(w, "cluster");
  w.str(rep.cluster);
  key(w, "epoch");
  w.uint(rep.epoch);
  key(w, "address");
  w.str(rep.address);
  key(w, "router_port");
  w.uint(rep.router_port);
  key(w, "pub_port");
  w.uint(rep.pub_port);
  key(w, "uptime_ms");
  w.uint(rep.uptime_ms);
  key(w, "unix_ms");
  w.uint(rep.unix_ms);
  key(w, "stats");
  w.map(static_cast<std::uint32_t>(stat_fields.size()));
  for_each_stat(rep.stats, [&](const StatInfo& info, std::uint64_t v) {
    w.str(info.name);
    w.uint(v);
  });
  key(w, "peers");
  write_list(w, rep.peers, max_report_peers, [&](const PeerReport& p) {
    w.array(5);
    write_id(w, p.id);
    w.str(p.name);
    w.str(p.address);
    w.uint(static_cast<std::uint8_t>(p.state));
    w.uint(p.last_heard_ms);
  });
  key(w, "published");
  write_list(w, rep.published, max_report_entries, [&](const StreamReport& s) { write_stream(w, s, false); });
  key(w, "received");
  write_list(w, rep.received, max_report_entries, [&](const StreamReport& s) { write_stream(w, s, true); });
  key(w, "streams_omitted");
  w.uint(rep.streams_omitted + (rep.published.size() > max_report_entries ? rep.published.size() - max_report_entries : 0) +
         (rep.received.size() > max_report_entries ? rep.received.size() - max_report_entries : 0));
  key(w, "lagging");
  write_list(w, rep.lagging, max_report_entries, [&](const SubscriberLag& l) {
    w.array(5);
    write_id(w, l.node);
    w.str(l.name);
    w.uint(l.events);
    w.uint(l.lag_ms);
    w.boolean(l.absent);
  });
  key(w, "subscriptions");
  write_list(w, rep.subscriptions, max_patterns_listed, [&](const std::string& s) { w.str(s); });
  key(w, "services");
  write_list(w, rep.services, max_patterns_listed, [&](const std::string& s) { w.str(s); });
  key(w, "delivery_latency");
  write_histogram(w, rep.delivery_latency);
  key(w, "handler_time");
  write_histogram(w, rep.handler_time);
  return out;
}

decode_status decode_report(byte_view in, NodeReport& rep) {
  mp_reader r(in);
  std::uint32_t keys = 0;
  if (!r.read_map(keys, max_top_keys)) return decode_status::malformed;
  for (std::uint32_t i = 0; i < keys && !r.failed(); ++i) {
    std::string_view k;
    if (!r.read_str(k, max_key)) break;
    if (k == "id") {
      read_id(r, rep.id);
    } else if (k == "name") {
      read_text(r, rep.name, max_short_field);
    } else if (k == "cluster") {
      read_text(r, rep.cluster, max_short_field);
    } else if (k == "epoch") {
      r.read_uint(rep.epoch);
    } else if (k == "address") {
      read_text(r, rep.address, max_short_field);
    } else if (k == "router_port" || k == "pub_port") {
      std::uint64_t port = 0;
      r.read_uint(port, 65535);
      (k == "router_port" ? rep.router_port : rep.pub_port) = static_cast<std::uint16_t>(port);
    } else if (k == "uptime_ms") {
      r.read_uint(rep.uptime_ms);
    } else if (k == "unix_ms") {
      r.read_uint(rep.unix_ms);
    } else if (k == "stats") {
      std::uint32_t n = 0;
      if (!r.read_map(n, max_stats)) break;
      for (std::uint32_t j = 0; j < n && !r.failed(); ++j) {
        std::string_view name;
        std::uint64_t v = 0;
        if (!r.read_str(name, max_key) || !r.read_uint(v)) break;
        // Statistics this revision does not know are skipped.
        std::size_t at = 0;
        for (const auto& info : stat_fields) {
          if (info.name == name) break;
          ++at;
        }
        if (at == stat_fields.size()) continue;
        std::size_t field = 0;
#define MESHBUS_DETAIL_STAT_SET(section, kind, fname, doc) \
  if (field++ == at) rep.stats.fname = static_cast<decltype(rep.stats.fname)>(v);
        MESHBUS_STATS(MESHBUS_DETAIL_STAT_SET)
#undef MESHBUS_DETAIL_STAT_SET
      }
    } else if (k == "peers") {
      read_list(r, rep.peers, max_report_peers, [&](PeerReport& p) {
        const auto n = open(r, 5);
        if (n == 0) return;
        std::uint64_t state = 0;
        read_id(r, p.id);
        read_text(r, p.name, max_short_field);
        read_text(r, p.address, max_short_field);
        r.read_uint(state, 1);
        r.read_uint(p.last_heard_ms);
        p.state = static_cast<PeerState>(state);
        skip_rest(r, n, 5);
      });
    } else if (k == "published") {
      read_list(r, rep.published, max_report_entries, [&](StreamReport& s) {
        read_stream(r, s, false);
        s.publisher = rep.id;  // "id" may come later: fixed below
      });
    } else if (k == "received") {
      read_list(r, rep.received, max_report_entries, [&](StreamReport& s) { read_stream(r, s, true); });
    } else if (k == "streams_omitted") {
      r.read_uint(rep.streams_omitted);
    } else if (k == "lagging") {
      read_list(r, rep.lagging, max_report_entries, [&](SubscriberLag& l) {
        const auto n = open(r, 5);
        if (n == 0) return;
        read_id(r, l.node);
        read_text(r, l.name, max_short_field);
        r.read_uint(l.events);
        r.read_uint(l.lag_ms);
        r.read_bool(l.absent);
        skip_rest(r, n, 5);
      });
    } else if (k == "subscriptions" || k == "services") {
      // A group subscription reads "<pattern> (group <group>)": two names and 9 bytes.
      read_list(r, k == "subscriptions" ? rep.subscriptions : rep.services, max_patterns_listed,
                [&](std::string& s) { read_text(r, s, 2 * max_topic_length + 16); });
    } else if (k == "delivery_latency") {
      read_histogram(r, rep.delivery_latency);
    } else if (k == "handler_time") {
      read_histogram(r, rep.handler_time);
    } else {
      r.skip();
    }
  }
  if (r.failed() || !r.at_end()) return decode_status::malformed;
  for (auto& s : rep.published) s.publisher = rep.id;
  return decode_status::ok;
}

}  // namespace meshbus::wire

namespace meshbus {

std::uint64_t LatencyHistogram::quantile_ns(double q) const noexcept {
  if (count == 0) return 0;
  const auto target = static_cast<std::uint64_t>(std::ceil(std::clamp(q, 0.0, 1.0) * static_cast<double>(count)));
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    seen += counts[i];
    if (seen >= std::max<std::uint64_t>(target, 1)) return bounds_ns[std::min(i, bounds_ns.size() - 1)];
  }
  return bounds_ns.back();
}

}  // namespace meshbus
