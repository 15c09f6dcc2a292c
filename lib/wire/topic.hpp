// Topic and pattern syntax: dot-separated segments, `*` for one segment and `**`
// for any number (zero or more). Validation, matching and the ZeroMQ prefix that
// lets publishers filter. Topics starting with '$' are reserved for meshbus itself.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace meshbus::wire {

inline constexpr std::size_t max_topic_length = 255;
inline constexpr std::size_t max_topic_segments = 128;
/// Topics of meshbus's own subscriptions, which every node has (e.g. dead-letter
/// replay requests); a reserved ('$') prefix.
inline constexpr std::string_view internal_topic_prefix = "$meshbus.";

/// Returns an empty string when `topic` is a valid topic to publish on, otherwise
/// a sentence saying what is wrong. `allow_reserved` admits '$' topics.
std::string topic_error(std::string_view topic, bool allow_reserved = false);

/// A compiled subscription pattern.
class pattern {
 public:
  enum class segment_kind : unsigned char { literal, one, any };
  struct segment {
    segment_kind kind;
    std::uint16_t offset;  ///< of the segment's text in text()
    std::uint16_t length;
  };

  /// Compiles `text`; on failure returns false and sets `error` to a sentence.
  static bool compile(std::string_view text, pattern& out, std::string& error);

  pattern() = default;

  bool matches(std::string_view topic) const noexcept;
  const std::string& text() const noexcept { return text_; }
  bool is_literal() const noexcept { return literal_; }
  /// The bytes every matching data frame starts with: the literal segments before
  /// the first wildcard, or the whole topic plus its NUL terminator when the
  /// pattern has no wildcard.
  std::string zmq_prefix() const;

 private:
  std::string_view segment_text(const segment& s) const noexcept {
    return std::string_view(text_).substr(s.offset, s.length);
  }
  std::string text_;
  std::vector<segment> segments_;
  bool literal_ = true;
};

/// Splits a valid topic into at most max_topic_segments views; returns the count.
std::size_t split_topic(std::string_view topic, std::string_view* out) noexcept;

}  // namespace meshbus::wire
