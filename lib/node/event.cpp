// Event accessors and the small public value types.
#include <charconv>
#include <cstring>
#include <thread>

#include <fmt/format.h>

#include "lib/node/dispatcher.hpp"
#include "lib/wire/envelope.hpp"
#include "meshbus/error.hpp"
#include "meshbus/event.hpp"
#include "meshbus/node.hpp"
#include "meshbus/types.hpp"

namespace meshbus {

const Event* handled_event() noexcept { return detail::current_event; }

std::string NodeId::to_string() const {
  static constexpr char digits[] = "0123456789abcdef";
  std::string s(32, '0');
  for (std::size_t i = 0; i < 16; ++i) {
    s[2 * i] = digits[bytes[i] >> 4];
    s[2 * i + 1] = digits[bytes[i] & 0xf];
  }
  return s;
}

std::string NodeId::short_string() const { return to_string().substr(0, 8); }

NodeId NodeId::parse(std::string_view hex) {
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  NodeId id;
  bool ok = hex.size() == 32;
  for (std::size_t i = 0; ok && i < 16; ++i) {
    const int hi = nibble(hex[2 * i]);
    const int lo = nibble(hex[2 * i + 1]);
    ok = hi >= 0 && lo >= 0;
    if (ok) id.bytes[i] = static_cast<std::uint8_t>((hi << 4) | lo);
  }
  if (!ok) {
    throw error(errc::invalid_argument,
                fmt::format("node id '{}' is not 32 hexadecimal digits", hex.substr(0, 64)));
  }
  return id;
}

bool NodeId::is_zero() const noexcept {
  for (const auto b : bytes) {
    if (b != 0) return false;
  }
  return true;
}

const char* to_string(LossNotice::Reason r) noexcept {
  switch (r) {
    case LossNotice::Reason::gap: return "gap";
    case LossNotice::Reason::not_in_history: return "no longer in the publisher's history";
    case LossNotice::Reason::publisher_gone: return "publisher gone";
  }
  return "?";
}

const char* to_string(UnacknowledgedSubscriber::State s) noexcept {
  switch (s) {
    case UnacknowledgedSubscriber::State::connected: return "connected";
    case UnacknowledgedSubscriber::State::absent: return "absent";
    case UnacknowledgedSubscriber::State::gone: return "gone";
  }
  return "?";
}

std::string FlushResult::describe() const {
  if (flushed) return "everything published was acknowledged";
  if (unacknowledged.empty()) return "not everything published was handed to ZeroMQ and acknowledged in time";
  std::string out = std::to_string(unacknowledged.size()) +
                    (unacknowledged.size() == 1 ? " subscriber" : " subscribers") +
                    " did not acknowledge everything:";
  const char* sep = " ";
  for (const auto& u : unacknowledged) {
    out += sep;
    sep = ", ";
    out += u.id.short_string();
    if (!u.name.empty()) out += " '" + u.name + "'";
    out += std::string(" (") + to_string(u.state) + ") " +
           (u.state == UnacknowledgedSubscriber::State::gone ? "never got " : "lacks ") + std::to_string(u.events) +
           (u.events == 1 ? " event" : " events");
  }
  return out;
}

const char* to_string(PeerEvent::Kind k) noexcept {
  switch (k) {
    case PeerEvent::Kind::joined: return "joined";
    case PeerEvent::Kind::suspect: return "suspect";
    case PeerEvent::Kind::alive_again: return "alive again";
    case PeerEvent::Kind::left: return "left";
  }
  return "?";
}

std::chrono::system_clock::time_point Event::timestamp() const noexcept {
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::nanoseconds(f_->timestamp_ns)));
}

std::string_view Event::id() const noexcept {
  if (!f_->explicit_id.empty()) return f_->explicit_id;
  auto& state = f_->id_state;
  std::uint8_t expected = 0;
  if (state.load(std::memory_order_acquire) != 2 &&
      state.compare_exchange_strong(expected, 1, std::memory_order_acquire)) {
    static constexpr char digits[] = "0123456789abcdef";
    char* out = f_->id_text.data();
    char* const end = out + f_->id_text.size();
    if (f_->publisher != nullptr) {
      for (const auto b : f_->publisher->bytes) {
        *out++ = digits[b >> 4];
        *out++ = digits[b & 0xf];
      }
    }
    *out++ = '-';
    out = std::to_chars(out, end, f_->epoch).ptr;
    *out++ = '-';
    out = std::to_chars(out, end, f_->sequence).ptr;
    f_->id_size = static_cast<std::uint8_t>(out - f_->id_text.data());
    state.store(2, std::memory_order_release);
  } else {
    while (state.load(std::memory_order_acquire) != 2) std::this_thread::yield();  // another thread writes it
  }
  return {f_->id_text.data(), f_->id_size};
}

namespace {
wire::event_fields header_fields(std::span<const std::byte> raw, std::uint32_t count) {
  wire::event_fields f;
  f.headers_raw = wire::byte_view(reinterpret_cast<const std::uint8_t*>(raw.data()), raw.size());
  f.header_count = count;
  return f;
}
}  // namespace

std::optional<std::string_view> Event::header(std::string_view name) const {
  const auto f = header_fields(f_->headers_raw, f_->header_count);
  wire::header_iterator it(f);
  wire::header_view h;
  while (it.next(h)) {
    if (h.name == name) return h.value;
  }
  return std::nullopt;
}

std::vector<Header> Event::headers() const {
  std::vector<Header> out;
  const auto f = header_fields(f_->headers_raw, f_->header_count);
  wire::header_iterator it(f);
  wire::header_view h;
  while (it.next(h)) out.push_back({h.name, h.value});
  return out;
}

}  // namespace meshbus
