// The summary a role process hands the launcher when it ends: one JSON line written with
// a single write(2) (shorter than PIPE_BUF, so reports of concurrent processes never mix)
// on a pipe the launcher lets it inherit; the fd number comes on the command line.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sensors_demo {

struct process_report {
  std::string name;
  std::string role;
  std::uint64_t sent = 0;          ///< readings published (sensors)
  std::uint64_t received = 0;      ///< readings received, each counted once (subscribers)
  std::uint64_t out_of_order = 0;  ///< readings whose sequence number was not the next one
  bool ok = false;                 ///< the process's own verdict
  std::string note;                ///< what went wrong, or a short remark
};

/// One line of JSON, ending in '\n'.
std::string encode_report(const process_report& r);
/// Parses one line made by encode_report; nullopt when malformed.
std::optional<process_report> decode_report(std::string_view line);
/// Writes the report to `fd` in one write. False when the launcher cannot be reached.
bool send_report(int fd, const process_report& r);

}  // namespace sensors_demo
