// Topic syntax and wildcard matching. Matching is the classic greedy glob walk
// over segments (`*` = exactly one segment, `**` = any number), linear in the
// common case and O(n*m) at worst, with no allocation per match.
#include "lib/wire/topic.hpp"

#include <fmt/format.h>

namespace meshbus::wire {
namespace {

// Length of the UTF-8 sequence starting at s[i], or 0 when it is not valid UTF-8.
std::size_t utf8_length(std::string_view s, std::size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  std::size_t n = 0;
  std::uint32_t cp = 0;
  if (c < 0x80) return 1;
  if ((c & 0xe0) == 0xc0) {
    n = 2;
    cp = c & 0x1fu;
  } else if ((c & 0xf0) == 0xe0) {
    n = 3;
    cp = c & 0x0fu;
  } else if ((c & 0xf8) == 0xf0) {
    n = 4;
    cp = c & 0x07u;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    const auto cc = static_cast<unsigned char>(s[i + k]);
    if ((cc & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (cc & 0x3fu);
  }
  // Overlong forms, surrogates and values past U+10FFFF are not valid UTF-8.
  if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
      cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
    return 0;
  }
  return n;
}

std::string syntax_error(std::string_view what, std::string_view text, bool is_pattern) {
  std::string shown(text.substr(0, 64));
  for (auto& ch : shown) {
    if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) ch = '?';
  }
  return fmt::format("invalid {} '{}'{}: {}", is_pattern ? "pattern" : "topic", shown,
                     text.size() > 64 ? "..." : "", what);
}

// Shared rules of topics and patterns; wildcards are judged by the caller.
std::string check_common(std::string_view text, bool is_pattern, bool allow_reserved) {
  if (text.empty()) return syntax_error("it is empty", text, is_pattern);
  if (text.size() > max_topic_length) {
    return syntax_error(fmt::format("it is {} bytes long, the limit is {}", text.size(),
                                    max_topic_length),
                        text, is_pattern);
  }
  if (text.front() == '$' && !allow_reserved) {
    return syntax_error("topics starting with '$' are reserved for meshbus", text, is_pattern);
  }
  std::size_t segment_start = 0;
  std::size_t segments = 1;
  for (std::size_t i = 0; i < text.size();) {
    const char ch = text[i];
    const auto uc = static_cast<unsigned char>(ch);
    if (ch == '.') {
      if (i == segment_start) {
        return syntax_error("segments between dots must not be empty", text, is_pattern);
      }
      segment_start = i + 1;
      ++segments;
      ++i;
      continue;
    }
    if (uc < 0x20 || uc == 0x7f || ch == ' ') {
      return syntax_error("spaces and control characters are not allowed", text, is_pattern);
    }
    const auto len = utf8_length(text, i);
    if (len == 0) return syntax_error("it is not valid UTF-8", text, is_pattern);
    i += len;
  }
  if (segment_start == text.size()) {
    return syntax_error("it must not end with a dot", text, is_pattern);
  }
  if (segments > max_topic_segments) {
    return syntax_error("it has too many segments", text, is_pattern);
  }
  return {};
}

}  // namespace

std::string topic_error(std::string_view topic, bool allow_reserved) {
  auto err = check_common(topic, false, allow_reserved);
  if (!err.empty()) return err;
  if (topic.find('*') != std::string_view::npos) {
    return syntax_error("'*' is a wildcard and may appear only in subscription patterns", topic,
                        false);
  }
  return {};
}

std::size_t split_topic(std::string_view topic, std::string_view* out) noexcept {
  std::size_t n = 0;
  std::size_t start = 0;
  for (std::size_t i = 0; i <= topic.size() && n < max_topic_segments; ++i) {
    if (i == topic.size() || topic[i] == '.') {
      out[n++] = topic.substr(start, i - start);
      start = i + 1;
    }
  }
  return n;
}

bool pattern::compile(std::string_view text, pattern& out, std::string& error) {
  // Reserved '$' topics cannot be published on, but may be subscribed to ("$dlq.**").
  error = check_common(text, true, true);
  if (!error.empty()) return false;
  pattern p;
  p.text_ = std::string(text);
  std::string_view parts[max_topic_segments];
  const auto n = split_topic(p.text_, parts);
  p.segments_.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    const auto s = parts[i];
    const auto offset = static_cast<std::uint16_t>(s.data() - p.text_.data());
    const auto length = static_cast<std::uint16_t>(s.size());
    if (s == "*") {
      p.segments_.push_back({segment_kind::one, offset, length});
      p.literal_ = false;
    } else if (s == "**") {
      p.segments_.push_back({segment_kind::any, offset, length});
      p.literal_ = false;
    } else if (s.find('*') != std::string_view::npos) {
      error = syntax_error("a wildcard must be a whole segment ('*' or '**')", text, true);
      return false;
    } else {
      p.segments_.push_back({segment_kind::literal, offset, length});
    }
  }
  out = std::move(p);
  return true;
}

bool pattern::matches(std::string_view topic) const noexcept {
  if (topic.empty()) return false;
  // Reserved topics are reached only by patterns that name them literally.
  if (topic.front() == '$' && (segments_.empty() || segments_[0].kind != segment_kind::literal)) {
    return false;
  }
  std::string_view t[max_topic_segments];
  const std::size_t tn = split_topic(topic, t);
  const std::size_t pn = segments_.size();
  std::size_t i = 0;
  std::size_t j = 0;
  std::size_t star = SIZE_MAX;
  std::size_t mark = 0;
  while (j < tn) {
    if (i < pn && segments_[i].kind == segment_kind::any) {
      star = i++;
      mark = j;
    } else if (i < pn && (segments_[i].kind == segment_kind::one || segment_text(segments_[i]) == t[j])) {
      ++i;
      ++j;
    } else if (star != SIZE_MAX) {
      i = star + 1;
      j = ++mark;
    } else {
      return false;
    }
  }
  while (i < pn && segments_[i].kind == segment_kind::any) ++i;
  return i == pn;
}

std::string pattern::zmq_prefix() const {
  if (literal_) {
    std::string prefix = text_;
    prefix.push_back('\0');
    return prefix;
  }
  std::string prefix;
  for (const auto& s : segments_) {
    if (s.kind == segment_kind::literal) {
      prefix.append(segment_text(s));
      prefix.push_back('.');
      continue;
    }
    // `**` may match zero segments, so "a.**" must also let the bare topic "a" through.
    if (s.kind == segment_kind::any && !prefix.empty()) prefix.pop_back();
    break;
  }
  return prefix;
}

}  // namespace meshbus::wire
