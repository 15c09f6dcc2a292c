// Encoding of process reports as one JSON line; see report.hpp.
#include "report.hpp"

#include "console.hpp"
#include "flat_json.hpp"

namespace sensors_demo {
namespace {
constexpr std::size_t max_note = 1024;  // keeps the line well below PIPE_BUF (4096)
}  // namespace

std::string encode_report(const process_report& r) {
  return json_object()
             .add("name", r.name)
             .add("role", r.role)
             .add("sent", r.sent)
             .add("received", r.received)
             .add("out_of_order", r.out_of_order)
             .add("ok", r.ok)
             .add("note", std::string_view(r.note).substr(0, max_note))
             .str() +
         "\n";
}

std::optional<process_report> decode_report(std::string_view line) {
  const auto fields = parse_json_object(line);
  if (!fields) return std::nullopt;
  process_report r;
  r.name = string_field(*fields, "name");
  r.role = string_field(*fields, "role");
  const auto sent = count_field(*fields, "sent");
  const auto received = count_field(*fields, "received");
  const auto out_of_order = count_field(*fields, "out_of_order");
  const auto ok = bool_field(*fields, "ok");
  if (r.name.empty() || !sent || !received || !out_of_order || !ok) return std::nullopt;
  r.sent = *sent;
  r.received = *received;
  r.out_of_order = *out_of_order;
  r.ok = *ok;
  r.note = string_field(*fields, "note");
  return r;
}

bool send_report(int fd, const process_report& r) {
  return write_all(fd, encode_report(r));
}

}  // namespace sensors_demo
