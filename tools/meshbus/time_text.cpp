// Command-line times; see time_text.hpp.
#include "time_text.hpp"

#include <charconv>
#include <cstdint>
#include <cstdio>
#include <ctime>

namespace meshbus_tool {
namespace {

bool number(std::string_view& s, std::size_t digits, int& out) {
  if (s.size() < digits) return false;
  int v = 0;
  for (std::size_t i = 0; i < digits; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  out = v;
  s.remove_prefix(digits);
  return true;
}

bool take(std::string_view& s, char c) {
  if (s.empty() || s.front() != c) return false;
  s.remove_prefix(1);
  return true;
}

// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

std::optional<std::chrono::system_clock::time_point> relative(std::string_view s) {
  std::int64_t n = 0;
  const auto [end, ec] = std::from_chars(s.data() + 1, s.data() + s.size(), n);
  if (ec != std::errc{} || end != s.data() + s.size() - 1 || n < 0) return std::nullopt;
  std::chrono::seconds unit;
  switch (s.back()) {
    case 's': unit = std::chrono::seconds(1); break;
    case 'm': unit = std::chrono::minutes(1); break;
    case 'h': unit = std::chrono::hours(1); break;
    case 'd': unit = std::chrono::hours(24); break;
    default: return std::nullopt;
  }
  return std::chrono::system_clock::now() - unit * n;
}

}  // namespace

std::optional<std::chrono::system_clock::time_point> parse_time(std::string_view text) {
  if (text.size() >= 3 && text.front() == '-') return relative(text);
  std::string_view s = text;
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  if (!number(s, 4, year) || !take(s, '-') || !number(s, 2, month) || !take(s, '-') || !number(s, 2, day)) {
    return std::nullopt;
  }
  if (month < 1 || month > 12 || day < 1 || day > 31) return std::nullopt;
  std::int64_t nanos = 0;
  std::int64_t offset_s = 0;
  if (!s.empty()) {
    if (!take(s, 'T') && !take(s, ' ')) return std::nullopt;
    if (!number(s, 2, hour) || !take(s, ':') || !number(s, 2, minute)) return std::nullopt;
    if (take(s, ':')) {
      if (!number(s, 2, second)) return std::nullopt;
      if (take(s, '.') || take(s, ',')) {
        std::int64_t scale = 100'000'000;
        std::size_t digits = 0;
        while (!s.empty() && s.front() >= '0' && s.front() <= '9') {
          if (digits++ < 9) {
            nanos += (s.front() - '0') * scale;
            scale /= 10;
          }
          s.remove_prefix(1);
        }
        if (digits == 0) return std::nullopt;
      }
    }
    if (hour > 23 || minute > 59 || second > 60) return std::nullopt;
    if (take(s, 'Z')) {
    } else if (!s.empty() && (s.front() == '+' || s.front() == '-')) {
      const int sign = s.front() == '-' ? -1 : 1;
      s.remove_prefix(1);
      int oh = 0, om = 0;
      if (!number(s, 2, oh)) return std::nullopt;
      take(s, ':');
      if (!s.empty() && !number(s, 2, om)) return std::nullopt;
      offset_s = sign * (oh * 3600 + om * 60);
    }
    if (!s.empty()) return std::nullopt;
  }
  const auto days = days_from_civil(year, static_cast<unsigned>(month), static_cast<unsigned>(day));
  const std::int64_t secs = days * 86400 + hour * 3600 + minute * 60 + second - offset_s;
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::seconds(secs) +
                                                                      std::chrono::nanoseconds(nanos)));
}

std::string format_time(std::uint64_t unix_ns) {
  const auto secs = static_cast<std::time_t>(unix_ns / 1'000'000'000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%09lluZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<unsigned long long>(unix_ns % 1'000'000'000));
  return buf;
}

}  // namespace meshbus_tool
