// What the tool prints: errors on stderr, text that stays on one line whatever the bytes,
// aligned tables, times, and JSON (nlohmann-json, keys in the order they were added).
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace meshbus_tool {

/// JSON values whose objects keep their keys in insertion order, as the tool documents them.
using json = nlohmann::ordered_json;

/// "meshbus: <message>" on stderr.
void print_error(std::string_view message);

/// "250 ms".
std::string to_ms_text(std::chrono::milliseconds d);

/// Printable UTF-8 as it is; anything else with \\, \n, \r, \t and \xNN escapes, so that an
/// event is always one line.
std::string display_text(std::string_view s);
void append_display_text(std::string& out, std::string_view s);

/// ISO-8601 UTC with microseconds: 2024-05-01T12:34:56.789012Z.
std::string iso8601_utc(std::chrono::system_clock::time_point t);

/// "850ms", "3.2s", "4m05s", "2h07m".
std::string human_duration(std::chrono::steady_clock::duration d);

std::string join(const std::vector<std::string>& items, std::string_view separator);

/// Rows as columns aligned with two spaces between them; the first row is the header.
void print_table(const std::vector<std::vector<std::string>>& rows);
/// The same table as text.
std::string table_text(const std::vector<std::vector<std::string>>& rows);

/// Sets "payload" for UTF-8 text, else "payload_base64" (standard alphabet, padded).
void set_payload(json& object, std::string_view payload);

/// `value` as compact JSON text; bytes that are not UTF-8 come out as U+FFFD.
std::string json_text(const json& value);

/// An array of objects, one per line: "[\n  {...},\n  {...}\n]\n", or "[]\n" when empty.
void print_json_array(const std::vector<json>& objects);

}  // namespace meshbus_tool
