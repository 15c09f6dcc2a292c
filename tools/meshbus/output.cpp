// Formatting for the tool's output; see output.hpp. JSON goes through nlohmann-json; what
// it does not cover stays here: UTF-8 checks for the one-line text form, base64 for
// payloads that are not text, and the one-object-per-line array layout.
#include "output.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <iostream>

namespace meshbus_tool {
namespace {

/// Length of the valid UTF-8 sequence at s[i] (its code point in `cp`), or 0 if invalid.
std::size_t utf8_sequence(std::string_view s, std::size_t i, char32_t& cp) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  std::size_t len = 0;
  char32_t min = 0;
  if (b0 < 0x80) {
    cp = b0;
    return 1;
  } else if ((b0 & 0xE0) == 0xC0) {
    len = 2, cp = b0 & 0x1Fu, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3, cp = b0 & 0x0Fu, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4, cp = b0 & 0x07u, min = 0x10000;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  for (std::size_t k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b & 0x3Fu);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}

bool is_printable(char32_t cp) {
  return cp >= 0x20 && cp != 0x7F && !(cp >= 0x80 && cp <= 0x9F);
}

/// True when every character of `s` is valid UTF-8 and, with `printable`, printable.
bool is_utf8(std::string_view s, bool printable) {
  char32_t cp = 0;
  for (std::size_t i = 0; i < s.size();) {
    const auto len = utf8_sequence(s, i, cp);
    if (len == 0 || (printable && !is_printable(cp))) return false;
    i += len;
  }
  return true;
}

void append_hex_byte(std::string& out, unsigned char b) {
  constexpr std::string_view digits = "0123456789abcdef";
  out += "\\x";
  out += digits[b >> 4];
  out += digits[b & 0x0F];
}

std::string base64(std::string_view s) {
  constexpr std::string_view alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((s.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= s.size(); i += 3) {
    const auto v = (std::uint32_t{static_cast<unsigned char>(s[i])} << 16) |
                   (std::uint32_t{static_cast<unsigned char>(s[i + 1])} << 8) |
                   static_cast<unsigned char>(s[i + 2]);
    for (int shift = 18; shift >= 0; shift -= 6) out += alphabet[(v >> shift) & 0x3F];
  }
  const auto rest = s.size() - i;
  if (rest == 0) return out;
  std::uint32_t v = std::uint32_t{static_cast<unsigned char>(s[i])} << 16;
  if (rest == 2) v |= std::uint32_t{static_cast<unsigned char>(s[i + 1])} << 8;
  out += alphabet[(v >> 18) & 0x3F];
  out += alphabet[(v >> 12) & 0x3F];
  out += rest == 2 ? alphabet[(v >> 6) & 0x3F] : '=';
  out += '=';
  return out;
}

}  // namespace

void print_error(std::string_view message) {
  std::cerr << "meshbus: " << message << std::endl;
}

std::string to_ms_text(std::chrono::milliseconds d) {
  return std::to_string(d.count()) + " ms";
}

void append_display_text(std::string& out, std::string_view s) {
  if (is_utf8(s, true)) {
    out += s;
    return;
  }
  char32_t cp = 0;
  for (std::size_t i = 0; i < s.size();) {
    const auto len = utf8_sequence(s, i, cp);
    if (len != 0 && is_printable(cp)) {
      if (cp == U'\\') {
        out += "\\\\";
      } else {
        out.append(s.substr(i, len));
      }
      i += len;
      continue;
    }
    const auto b = static_cast<unsigned char>(s[i]);
    switch (b) {
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default: {
        // An invalid byte, or every byte of a non-printable character.
        const std::size_t n = len == 0 ? 1 : len;
        for (std::size_t k = 0; k < n; ++k) append_hex_byte(out, static_cast<unsigned char>(s[i + k]));
        i += n;
        continue;
      }
    }
    ++i;
  }
}

std::string display_text(std::string_view s) {
  std::string out;
  append_display_text(out, s);
  return out;
}

std::string iso8601_utc(std::chrono::system_clock::time_point t) {
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  auto seconds = us / 1'000'000;
  auto fraction = us % 1'000'000;
  if (fraction < 0) {
    fraction += 1'000'000;
    --seconds;
  }
  const auto tt = static_cast<std::time_t>(seconds);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<long long>(fraction));
  return buf;
}

std::string human_duration(std::chrono::steady_clock::duration d) {
  const auto ms = std::max<std::int64_t>(0, std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
  char buf[64];
  if (ms < 1000) {
    std::snprintf(buf, sizeof buf, "%lldms", static_cast<long long>(ms));
  } else if (ms < 60'000) {
    std::snprintf(buf, sizeof buf, "%.1fs", static_cast<double>(ms) / 1000.0);
  } else if (ms < 3'600'000) {
    std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(ms / 60'000),
                  static_cast<long long>(ms / 1000 % 60));
  } else {
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", static_cast<long long>(ms / 3'600'000),
                  static_cast<long long>(ms / 60'000 % 60));
  }
  return buf;
}

std::string join(const std::vector<std::string>& items, std::string_view separator) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += separator;
    out += item;
  }
  return out;
}

void print_table(const std::vector<std::vector<std::string>>& rows) { std::cout << table_text(rows) << std::flush; }

std::string table_text(const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> widths;
  for (const auto& row : rows) {
    widths.resize(std::max(widths.size(), row.size()), 0);
    for (std::size_t c = 0; c < row.size(); ++c) widths[c] = std::max(widths[c], row[c].size());
  }
  std::string out;
  for (const auto& row : rows) {
    for (std::size_t c = 0; c < row.size(); ++c) {
      out += row[c];
      if (c + 1 < row.size()) out.append(widths[c] - row[c].size() + 2, ' ');
    }
    out += '\n';
  }
  return out;
}

void set_payload(json& object, std::string_view payload) {
  if (is_utf8(payload, false)) {
    object["payload"] = payload;
  } else {
    object["payload_base64"] = base64(payload);
  }
}

std::string json_text(const json& value) {
  auto text = value.dump(-1, ' ', false, json::error_handler_t::replace);
  // DEL is escaped as the other control characters are (nlohmann-json leaves it raw). A 0x7F
  // byte in UTF-8 is always DEL, and JSON has it only inside strings.
  for (auto at = text.find('\x7f'); at != std::string::npos; at = text.find('\x7f', at)) {
    text.replace(at, 1, "\\u007f");
  }
  return text;
}

void print_json_array(const std::vector<json>& objects) {
  std::string out = "[";
  for (std::size_t i = 0; i < objects.size(); ++i) {
    out += i == 0 ? "\n  " : ",\n  ";
    out += json_text(objects[i]);
  }
  out += objects.empty() ? "]\n" : "\n]\n";
  std::cout << out << std::flush;
}

}  // namespace meshbus_tool
