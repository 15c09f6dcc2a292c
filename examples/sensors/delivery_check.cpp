// Sequence and completeness checking for one subscriber; see delivery_check.hpp.
// A stream's first event sets its start; after that anything but last + 1 is counted
// as out of order, and only numbers beyond the last one count as received.
#include "delivery_check.hpp"

#include <algorithm>
#include <charconv>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "config.hpp"

namespace sensors_demo {
namespace {

struct topic_parts {
  std::string_view sensor;
  std::string_view kind;
};

// "sensors.<sensor>.<kind>"
std::optional<topic_parts> split_topic(std::string_view topic) {
  constexpr std::string_view prefix = "sensors.";
  if (topic.substr(0, prefix.size()) != prefix) return std::nullopt;
  topic.remove_prefix(prefix.size());
  const auto dot = topic.find('.');
  if (dot == std::string_view::npos) return std::nullopt;
  return topic_parts{topic.substr(0, dot), topic.substr(dot + 1)};
}

}  // namespace

delivery_check::delivery_check(int sensors, std::vector<std::string_view> kinds)
    : sensors_(sensors), kinds_(std::move(kinds)) {}

std::optional<reading> delivery_check::on_event(const meshbus::Event& event) {
  const auto parts = split_topic(event.topic());
  if (!parts) return std::nullopt;
  const auto index = sensor_index(parts->sensor);
  if (!index || *index > sensors_) return std::nullopt;

  if (parts->kind == done) {
    std::uint64_t count = 0;
    const auto text = event.text();
    const auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), count);
    if (ec != std::errc{} || p != text.data() + text.size()) return std::nullopt;
    {
      std::lock_guard lock(mutex_);
      done_.insert_or_assign(std::string(parts->sensor), count);
    }
    changed_.notify_all();
    return std::nullopt;
  }
  const auto kind = std::find(kinds_.begin(), kinds_.end(), parts->kind);
  if (kind == kinds_.end()) return std::nullopt;

  check_sequence(event.topic(), event.sequence());
  changed_.notify_all();
  const auto fields = nlohmann::json::parse(event.text(), nullptr, false);  // discarded when malformed
  const auto value = fields.is_object() ? fields.find("value") : fields.end();
  if (value == fields.end() || !value->is_number()) return std::nullopt;
  return reading{std::string(parts->sensor), *kind, value->get<double>()};
}

void delivery_check::check_sequence(std::string_view topic, std::uint64_t sequence) {
  std::lock_guard lock(mutex_);
  auto it = streams_.find(topic);
  if (it == streams_.end()) it = streams_.emplace(std::string(topic), stream_state{}).first;
  auto& s = it->second;
  if (s.first_sequence == 0) {
    s.first_sequence = sequence;
  } else if (sequence != s.last_sequence + 1) {
    ++s.out_of_order;
  }
  if (sequence > s.last_sequence) {
    s.last_sequence = sequence;
    ++s.received;
  }
}

bool delivery_check::complete_locked() const {
  if (done_.size() < static_cast<std::size_t>(sensors_)) return false;
  for (const auto& [sensor, count] : done_) {
    for (const auto kind : kinds_) {
      const auto it = streams_.find(sensor_topic(sensor, kind));
      const std::uint64_t received = it == streams_.end() ? 0 : it->second.received;
      if (received < count) return false;
    }
  }
  return true;
}

bool delivery_check::wait_complete(std::chrono::steady_clock::time_point until) {
  std::unique_lock lock(mutex_);
  return changed_.wait_until(lock, until, [this] { return complete_locked(); });
}

delivery_check::totals delivery_check::sum() const {
  std::lock_guard lock(mutex_);
  totals t;
  for (const auto& [topic, s] : streams_) {
    t.received += s.received;
    t.out_of_order += s.out_of_order;
  }
  return t;
}

std::string delivery_check::missing() const {
  std::lock_guard lock(mutex_);
  std::vector<std::string> gaps;
  for (int i = 1; i <= sensors_; ++i) {
    const auto sensor = sensor_name(i);
    const auto d = done_.find(sensor);
    if (d == done_.end()) {
      gaps.push_back(fmt::format("no done from {}", sensor));
      continue;
    }
    for (const auto kind : kinds_) {
      const auto topic = sensor_topic(sensor, kind);
      const auto it = streams_.find(topic);
      const std::uint64_t received = it == streams_.end() ? 0 : it->second.received;
      if (received < d->second) gaps.push_back(fmt::format("{} {} of {}", topic, received, d->second));
    }
  }
  return fmt::format("{}", fmt::join(gaps, "; "));
}

}  // namespace sensors_demo
