// Just enough JSON for the demo's one-line messages (sensor readings, process reports):
// flat objects whose values are strings, numbers or booleans. Not a JSON library:
// nested objects and arrays are refused, and so is anything malformed.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace sensors_demo {

/// Builds one flat JSON object: json_object().add("a", 1).add("b", "x").str() == {"a":1,"b":"x"}
class json_object {
 public:
  json_object& add(std::string_view key, std::string_view value);
  json_object& add(std::string_view key, const char* value) { return add(key, std::string_view(value)); }
  json_object& add(std::string_view key, std::uint64_t value);
  json_object& add(std::string_view key, int value);
  /// Written with one decimal: readings are tenths of a degree or percent.
  json_object& add(std::string_view key, double value);
  json_object& add(std::string_view key, bool value);
  std::string str() const { return text_ + "}"; }

 private:
  json_object& raw(std::string_view key, std::string_view value);
  std::string text_ = "{";
};

/// The fields of a flat JSON object: strings unescaped, numbers and booleans as written.
using json_fields = std::map<std::string, std::string, std::less<>>;

/// Parses one flat JSON object (surrounding whitespace allowed); nullopt when malformed.
std::optional<json_fields> parse_json_object(std::string_view text);

std::optional<double> number_field(const json_fields& fields, std::string_view key);
std::optional<std::uint64_t> count_field(const json_fields& fields, std::string_view key);
std::optional<bool> bool_field(const json_fields& fields, std::string_view key);
std::string string_field(const json_fields& fields, std::string_view key);

}  // namespace sensors_demo
