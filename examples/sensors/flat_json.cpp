// Writer and bounded parser for flat JSON objects; see flat_json.hpp. The parser walks
// the text once and never reads past its end; any surprise makes it return nullopt.
#include "flat_json.hpp"

#include <charconv>
#include <cstdlib>

#include <fmt/format.h>

namespace sensors_demo {
namespace {

std::string quoted(std::string_view s) {
  std::string out = "\"";
  for (const char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += fmt::format("\\u{:04x}", static_cast<unsigned>(static_cast<unsigned char>(c)));
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

class cursor {
 public:
  explicit cursor(std::string_view text) : rest_(text) {}

  void skip_space() {
    while (!rest_.empty() && (rest_.front() == ' ' || rest_.front() == '\t' || rest_.front() == '\n' ||
                              rest_.front() == '\r')) {
      rest_.remove_prefix(1);
    }
  }
  bool eat(char c) {
    skip_space();
    if (rest_.empty() || rest_.front() != c) return false;
    rest_.remove_prefix(1);
    return true;
  }
  bool at_end() {
    skip_space();
    return rest_.empty();
  }
  // A string with simple escapes (\uXXXX below 0x80 only: the demo writes nothing else).
  std::optional<std::string> string() {
    if (!eat('"')) return std::nullopt;
    std::string out;
    while (!rest_.empty()) {
      const char c = rest_.front();
      rest_.remove_prefix(1);
      if (c == '"') return out;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (rest_.empty()) return std::nullopt;
      const char e = rest_.front();
      rest_.remove_prefix(1);
      switch (e) {
        case '"':
        case '\\':
        case '/': out += e; break;
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case 'u': {
          unsigned code = 0;
          if (rest_.size() < 4) return std::nullopt;
          const auto [p, ec] = std::from_chars(rest_.data(), rest_.data() + 4, code, 16);
          if (ec != std::errc{} || p != rest_.data() + 4 || code >= 0x80) return std::nullopt;
          out += static_cast<char>(code);
          rest_.remove_prefix(4);
          break;
        }
        default: return std::nullopt;
      }
    }
    return std::nullopt;
  }
  // A number, true or false: kept as written.
  std::optional<std::string> scalar() {
    skip_space();
    std::size_t n = 0;
    while (n < rest_.size() && rest_[n] != ',' && rest_[n] != '}' && rest_[n] != ' ') ++n;
    const auto token = rest_.substr(0, n);
    if (token.empty() || token.find_first_of("\"{}[]:") != std::string_view::npos) return std::nullopt;
    rest_.remove_prefix(n);
    return std::string(token);
  }
  bool next_is_string() {
    skip_space();
    return !rest_.empty() && rest_.front() == '"';
  }

 private:
  std::string_view rest_;
};

}  // namespace

json_object& json_object::raw(std::string_view key, std::string_view value) {
  if (text_.size() > 1) text_ += ',';
  text_ += quoted(key);
  text_ += ':';
  text_ += value;
  return *this;
}

json_object& json_object::add(std::string_view key, std::string_view value) {
  return raw(key, quoted(value));
}
json_object& json_object::add(std::string_view key, std::uint64_t value) {
  return raw(key, std::to_string(value));
}
json_object& json_object::add(std::string_view key, int value) {
  return raw(key, std::to_string(value));
}
json_object& json_object::add(std::string_view key, double value) {
  return raw(key, fmt::format("{:.1f}", value));
}
json_object& json_object::add(std::string_view key, bool value) {
  return raw(key, value ? "true" : "false");
}

std::optional<json_fields> parse_json_object(std::string_view text) {
  cursor c(text);
  json_fields fields;
  if (!c.eat('{')) return std::nullopt;
  if (!c.eat('}')) {
    do {
      auto key = c.string();
      if (!key || !c.eat(':')) return std::nullopt;
      auto value = c.next_is_string() ? c.string() : c.scalar();
      if (!value) return std::nullopt;
      fields.insert_or_assign(std::move(*key), std::move(*value));
    } while (c.eat(','));
    if (!c.eat('}')) return std::nullopt;
  }
  if (!c.at_end()) return std::nullopt;
  return fields;
}

std::optional<double> number_field(const json_fields& fields, std::string_view key) {
  const auto it = fields.find(key);
  if (it == fields.end()) return std::nullopt;
  char* end = nullptr;
  const double v = std::strtod(it->second.c_str(), &end);
  if (end == it->second.c_str() || *end != '\0') return std::nullopt;
  return v;
}

std::optional<std::uint64_t> count_field(const json_fields& fields, std::string_view key) {
  const auto it = fields.find(key);
  if (it == fields.end()) return std::nullopt;
  std::uint64_t v = 0;
  const auto& s = it->second;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size()) return std::nullopt;
  return v;
}

std::optional<bool> bool_field(const json_fields& fields, std::string_view key) {
  const auto it = fields.find(key);
  if (it == fields.end() || (it->second != "true" && it->second != "false")) return std::nullopt;
  return it->second == "true";
}

std::string string_field(const json_fields& fields, std::string_view key) {
  const auto it = fields.find(key);
  return it == fields.end() ? std::string() : it->second;
}

}  // namespace sensors_demo
