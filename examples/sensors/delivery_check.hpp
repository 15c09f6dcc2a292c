// What a subscriber checks about the sensors' events: per topic (one publisher each, so
// one stream) that sequence numbers arrive contiguous from the first one seen, and, from
// the counts the `done` events announce, whether every reading has arrived.
// on_event() runs on meshbus handler threads, the rest on main: every member locks.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <meshbus/event.hpp>

namespace sensors_demo {

/// One sensor reading, parsed from its topic and payload.
struct reading {
  std::string sensor;
  std::string_view kind;  ///< temperature or humidity (static storage)
  double value = 0.0;
};

class delivery_check {
 public:
  /// `sensors`: how many sensors (s1..sN) to expect; `kinds`: which of their reading
  /// topics this subscriber receives.
  delivery_check(int sensors, std::vector<std::string_view> kinds);

  /// Takes one event. A reading has its sequence number checked and is returned; a
  /// `done` records how many readings its sensor sent per topic; nullopt for those and
  /// for anything else.
  std::optional<reading> on_event(const meshbus::Event& event);

  /// Waits until every sensor has said done and every reading it announced arrived, or
  /// until `until`. True when complete.
  bool wait_complete(std::chrono::steady_clock::time_point until);

  struct totals {
    std::uint64_t received = 0;      ///< readings, each counted once
    std::uint64_t out_of_order = 0;  ///< readings not numbered last + 1 of their stream
  };
  totals sum() const;
  /// What is still missing ("no done from s3; sensors.s1.humidity 58 of 60"); empty when
  /// complete.
  std::string missing() const;

 private:
  struct stream_state {
    std::uint64_t first_sequence = 0;  ///< 0: nothing seen yet
    std::uint64_t last_sequence = 0;
    std::uint64_t received = 0;
    std::uint64_t out_of_order = 0;
  };

  void check_sequence(std::string_view topic, std::uint64_t sequence);
  bool complete_locked() const;

  const int sensors_;
  const std::vector<std::string_view> kinds_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::map<std::string, stream_state, std::less<>> streams_;  ///< by topic
  std::map<std::string, std::uint64_t, std::less<>> done_;    ///< sensor -> readings per topic
};

}  // namespace sensors_demo
