// Encoding of process reports as one JSON line (nlohmann-json); see report.hpp.
#include "report.hpp"

#include <nlohmann/json.hpp>

#include "console.hpp"

namespace sensors_demo {
namespace {
constexpr std::size_t max_note = 1024;  // keeps the line well below PIPE_BUF (4096)
}  // namespace

std::string encode_report(const process_report& r) {
  const nlohmann::ordered_json report{{"name", r.name},
                                      {"role", r.role},
                                      {"sent", r.sent},
                                      {"received", r.received},
                                      {"out_of_order", r.out_of_order},
                                      {"ok", r.ok},
                                      {"note", std::string_view(r.note).substr(0, max_note)}};
  // The note may be cut inside a character: such bytes become U+FFFD.
  return report.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

std::optional<process_report> decode_report(std::string_view line) {
  const auto fields = nlohmann::json::parse(line, nullptr, false);  // no exceptions: discarded when malformed
  if (!fields.is_object()) return std::nullopt;
  auto count = [&](const char* key) -> std::optional<std::uint64_t> {
    const auto it = fields.find(key);
    if (it == fields.end() || !it->is_number_unsigned()) return std::nullopt;
    return it->get<std::uint64_t>();
  };
  auto text = [&](const char* key) {
    const auto it = fields.find(key);
    return it != fields.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  process_report r;
  r.name = text("name");
  r.role = text("role");
  const auto sent = count("sent");
  const auto received = count("received");
  const auto out_of_order = count("out_of_order");
  const auto ok = fields.find("ok");
  if (r.name.empty() || !sent || !received || !out_of_order || ok == fields.end() || !ok->is_boolean()) {
    return std::nullopt;
  }
  r.sent = *sent;
  r.received = *received;
  r.out_of_order = *out_of_order;
  r.ok = ok->get<bool>();
  r.note = text("note");
  return r;
}

bool send_report(int fd, const process_report& r) {
  return write_all(fd, encode_report(r));
}

}  // namespace sensors_demo
