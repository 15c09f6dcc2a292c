// Answers and asks for node reports; see status_office.hpp.
#include "lib/node/status_office.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "lib/node/counters.hpp"
#include "lib/node/faults.hpp"
#include "lib/wire/report.hpp"

namespace meshbus::detail {
namespace {

std::string stream_key(const NodeId& publisher, std::string_view topic) {
  std::string key(reinterpret_cast<const char*>(publisher.bytes.data()), publisher.bytes.size());
  key.append(topic);
  return key;
}

void busiest_first(std::vector<StreamReport>& v, std::uint64_t& omitted) {
  std::sort(v.begin(), v.end(), [](const StreamReport& a, const StreamReport& b) {
    if (a.events_per_second != b.events_per_second) return a.events_per_second > b.events_per_second;
    return a.last_seq > b.last_seq;
  });
  if (v.size() > wire::max_report_entries) {
    omitted += v.size() - wire::max_report_entries;
    v.resize(wire::max_report_entries);
  }
}

}  // namespace

status_office::status_office(node_context& ctx, control_sender& control, build_report build)
    : ctx_(ctx), control_(control), build_(std::move(build)), started_(clock::now()) {}

NodeReport status_office::report(clock::time_point now) {
  std::lock_guard lock(mu_);
  return make_report(now);
}

NodeReport status_office::make_report(clock::time_point now) {
  NodeReport r = build_();
  r.uptime_ms = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(now - started_).count());
  r.unix_ms = unix_ns() / 1'000'000;
  fill_rates(r, now);
  busiest_first(r.published, r.streams_omitted);
  busiest_first(r.received, r.streams_omitted);
  return r;
}

// Rates since the previous sample, taken at most every min_rate_interval; between
// samples the last rates stand. The samples cover exactly the streams reported, so
// the map holds no stream that is gone.
void status_office::fill_rates(NodeReport& r, clock::time_point now) {
  const bool first = sampled_ == clock::time_point{};
  const bool resample = first || now - sampled_ >= min_rate_interval;
  const double seconds = first ? std::max(1e-3, static_cast<double>(r.uptime_ms) / 1000.0)
                               : std::chrono::duration<double>(now - sampled_).count();
  std::unordered_map<std::string, sample> next;
  auto rate_of = [&](StreamReport& s) {
    const auto key = stream_key(s.publisher, s.topic);
    const auto prev = samples_.find(key);
    if (!resample) {
      s.events_per_second = prev == samples_.end() ? 0 : prev->second.rate;
      return;
    }
    const std::uint64_t before = first || prev == samples_.end() ? 0 : prev->second.seq;
    s.events_per_second = s.last_seq > before ? static_cast<double>(s.last_seq - before) / seconds : 0.0;
    next.emplace(key, sample{s.last_seq, s.events_per_second});
  };
  for (auto& s : r.published) rate_of(s);
  for (auto& s : r.received) rate_of(s);
  if (resample) {
    samples_ = std::move(next);
    sampled_ = now;
  }
}

std::future<MeshReport> status_office::ask(const std::vector<PeerInfo>& peers, std::chrono::milliseconds timeout,
                                           clock::time_point now) {
  std::lock_guard lock(mu_);
  const auto id = next_id_++;
  auto& p = pending_[id];
  p.asked = peers;
  p.deadline = now + timeout;
  p.result.nodes.push_back(make_report(now));
  auto future = p.done.get_future();
  for (const auto& peer : peers) {
    p.waiting.insert(peer.id.bytes);
    control_.send(peer.id.bytes, wire::status_request_msg{id});
  }
  if (p.waiting.empty()) finish(id);
  return future;
}

void status_office::on_request(const wire::node_id_bytes& from, const wire::status_request_msg& m,
                               clock::time_point now) {
  std::lock_guard lock(mu_);
  auto it = buckets_.find(from);
  if (it == buckets_.end()) {
    if (buckets_.size() >= max_status_askers) {
      // Forget the asker heard from longest ago.
      auto oldest = std::min_element(buckets_.begin(), buckets_.end(), [](const auto& a, const auto& b) {
        return a.second.refilled < b.second.refilled;
      });
      buckets_.erase(oldest);
    }
    it = buckets_.emplace(from, bucket{status_burst, now}).first;
  }
  auto& b = it->second;
  b.tokens = std::min(status_burst, b.tokens + std::chrono::duration<double>(now - b.refilled).count() * status_rate);
  b.refilled = now;
  if (b.tokens < 1.0) {
    bump(ctx_.counters.status_requests_refused);
    return;
  }
  b.tokens -= 1.0;
  bump(ctx_.counters.status_requests_answered);
  auto r = make_report(now);
  auto bytes = wire::encode_report(r);
  // Within the message size every node accepts (Options::max_message_bytes, the same on
  // every node): the longest lists are halved until it fits; cut streams are counted.
  constexpr std::size_t envelope = 64;
  while (bytes.size() + envelope > ctx_.opts.max_message_bytes) {
    auto halve = [](auto& v) { v.resize(v.size() / 2); };
    const auto before = r.published.size() + r.received.size();
    const auto longest = std::max({r.peers.size(), r.published.size(), r.received.size(), r.lagging.size(),
                                   r.subscriptions.size(), r.services.size()});
    if (longest == 0) break;  // cannot happen: the fixed part is far below any allowed limit
    if (r.published.size() == longest) halve(r.published);
    else if (r.received.size() == longest) halve(r.received);
    else if (r.peers.size() == longest) halve(r.peers);
    else if (r.lagging.size() == longest) halve(r.lagging);
    else if (r.subscriptions.size() == longest) halve(r.subscriptions);
    else halve(r.services);
    r.streams_omitted += before - (r.published.size() + r.received.size());
    bytes = wire::encode_report(r);
  }
  control_.send(from, wire::status_reply_msg{m.id, std::string(bytes.begin(), bytes.end())});
}

void status_office::on_reply(const wire::node_id_bytes& from, wire::status_reply_msg&& m) {
  std::lock_guard lock(mu_);
  auto it = pending_.find(m.id);
  if (it == pending_.end() || it->second.waiting.count(from) == 0) {
    bump(ctx_.counters.late_replies);
    return;
  }
  NodeReport r;
  const auto* data = reinterpret_cast<const std::uint8_t*>(m.report.data());
  if (wire::decode_report(wire::byte_view(data, m.report.size()), r) != wire::decode_status::ok ||
      r.id.bytes != from) {
    bump(ctx_.counters.malformed_messages);
    ctx_.faults.report(fault::malformed_control,
                       fmt::format("dropped a status report from {} that did not decode", short_id(from)));
    return;  // it stays unanswered
  }
  auto& p = it->second;
  p.waiting.erase(from);
  p.result.nodes.push_back(std::move(r));
  if (p.waiting.empty()) finish(it->first);
}

void status_office::finish(std::uint64_t id) {
  auto it = pending_.find(id);
  if (it == pending_.end()) return;
  auto& p = it->second;
  for (const auto& peer : p.asked) {
    if (p.waiting.count(peer.id.bytes) != 0) p.result.unanswered.push_back(peer);
  }
  // This node first, then the others by name.
  std::sort(p.result.nodes.begin() + 1, p.result.nodes.end(), [](const NodeReport& a, const NodeReport& b) {
    return a.name != b.name ? a.name < b.name : a.id < b.id;
  });
  p.done.set_value(std::move(p.result));
  pending_.erase(it);
}

void status_office::expire(clock::time_point now) {
  std::lock_guard lock(mu_);
  std::vector<std::uint64_t> due;
  for (const auto& [id, p] : pending_) {
    if (p.deadline <= now) due.push_back(id);
  }
  for (auto id : due) finish(id);
}

clock::time_point status_office::next_due() const {
  std::lock_guard lock(mu_);
  auto next = clock::time_point::max();
  for (const auto& [id, p] : pending_) next = std::min(next, p.deadline);
  return next;
}

void status_office::finish_all() {
  std::lock_guard lock(mu_);
  while (!pending_.empty()) finish(pending_.begin()->first);
}

}  // namespace meshbus::detail
