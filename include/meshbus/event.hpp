/// @file
/// meshbus::Event — what a subscription handler receives.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "meshbus/types.hpp"

namespace meshbus {

/// One header of an event: a name and a value, both text.
struct Header {
  std::string_view name;
  std::string_view value;
};

/// A received event. It is a *view*: the topic, payload and every string it
/// returns point into the received message and are valid only while the handler
/// that got it is running. Copy what you keep.
class Event {
 public:
  struct fields;

  std::string_view topic() const noexcept;
  std::span<const std::byte> payload() const noexcept;
  /// The payload as text (no copy, no validation).
  std::string_view text() const noexcept;

  const NodeId& publisher() const noexcept;
  /// The publisher's epoch: changes when it restarts without durable state.
  std::uint64_t epoch() const noexcept;
  /// Position in the stream (publisher, epoch, topic); starts at 1, contiguous.
  std::uint64_t sequence() const noexcept;
  /// When the publisher sent the event (its wall clock).
  std::chrono::system_clock::time_point timestamp() const noexcept;

  /// The event id: the publisher's explicit id, or "<publisher>-<epoch>-<sequence>".
  /// Like every view of an Event, valid while the handler runs, so it can be given
  /// on as it is (`options.causation_id = e.id();`). The default id is written
  /// into the Event the first time it is asked for.
  std::string_view id() const noexcept;
  bool has_explicit_id() const noexcept;
  std::string_view type_name() const noexcept;
  std::uint32_t type_version() const noexcept;
  std::string_view correlation_id() const noexcept;
  std::string_view causation_id() const noexcept;
  /// The publisher's content type; for an event with a type name and none given,
  /// "application/msgpack" (what typed events are: docs/protocol.md §3.1).
  std::string_view content_type() const noexcept;
  /// The value of a header, if present.
  std::optional<std::string_view> header(std::string_view name) const;
  /// All headers, in the order the publisher gave them.
  std::vector<Header> headers() const;

  /// Made by meshbus's receive path; one view per handler call.
  explicit Event(const fields& f) noexcept : f_(&f) {}

 private:
  const fields* f_;
};

/// The event whose handler is running on this thread (a subscription's, a request's
/// or a saga step's), or null outside handlers. For code that publishes on behalf of
/// a handler from elsewhere and wants to carry its flow (correlation and causation).
const Event* handled_event() noexcept;

/// The decoded parts of an event, as the receive path fills them in.
struct Event::fields {
  std::string_view topic;
  std::span<const std::byte> payload;
  const NodeId* publisher = nullptr;
  std::uint64_t epoch = 0;
  std::uint64_t sequence = 0;
  std::int64_t timestamp_ns = 0;
  std::string_view explicit_id;
  std::string_view type_name;
  std::uint32_t type_version = 0;
  std::string_view correlation_id;
  std::string_view causation_id;
  std::string_view content_type;
  std::span<const std::byte> headers_raw;
  std::uint32_t header_count = 0;

  /// id() of an event without an explicit id, written on first use (by whichever
  /// thread asks first; the others wait for it). The receive path calls forget_id()
  /// whenever it refills these fields for another event.
  mutable std::atomic<std::uint8_t> id_state{0};  ///< 0 not written, 1 being written, 2 ready
  mutable std::uint8_t id_size = 0;
  mutable std::array<char, 80> id_text{};  ///< 32 hex digits, '-', two 20-digit numbers
  void forget_id() noexcept { id_state.store(0, std::memory_order_relaxed); }
};

inline std::string_view Event::topic() const noexcept { return f_->topic; }
inline std::span<const std::byte> Event::payload() const noexcept { return f_->payload; }
inline std::string_view Event::text() const noexcept {
  return {reinterpret_cast<const char*>(f_->payload.data()), f_->payload.size()};
}
inline const NodeId& Event::publisher() const noexcept { return *f_->publisher; }
inline std::uint64_t Event::epoch() const noexcept { return f_->epoch; }
inline std::uint64_t Event::sequence() const noexcept { return f_->sequence; }
inline bool Event::has_explicit_id() const noexcept { return !f_->explicit_id.empty(); }
inline std::string_view Event::type_name() const noexcept { return f_->type_name; }
inline std::uint32_t Event::type_version() const noexcept { return f_->type_version; }
inline std::string_view Event::correlation_id() const noexcept { return f_->correlation_id; }
inline std::string_view Event::causation_id() const noexcept { return f_->causation_id; }
inline std::string_view Event::content_type() const noexcept {
  if (f_->content_type.empty() && !f_->type_name.empty()) return "application/msgpack";
  return f_->content_type;
}

}  // namespace meshbus
