// `meshbus log`: the audit trail, read offline from a node's durable log (docs/store.md)
// without starting a node. Every stored event of every epoch is printed with its envelope:
// epochs in order, topics sorted, each stream in sequence order. The log is opened
// read-only (no lock taken, nothing written), so it can be read while its node runs. A
// record that fails its CRC32C or does not decode is never skipped silently: a line on
// stderr names its range and the file, the rest is printed, and the exit code is 1.
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <system_error>

#include "commands.hpp"
#include "lib/store/log_store.hpp"
#include "lib/wire/envelope.hpp"
#include "output.hpp"
#include "time_text.hpp"

namespace meshbus_tool {
namespace {

namespace wire = meshbus::wire;
namespace store = meshbus::store;

struct log_flags {
  std::string dir;
  std::string topic;  ///< a topic pattern; empty: every topic
  std::string since;  ///< parse_time() text; empty: from the beginning
  std::string until;  ///< parse_time() text; empty: to the end
  std::string correlation;
  bool correlation_given = false;  ///< --correlation '' takes the events without one
  bool json = false;
};

std::int64_t unix_ns(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

/// Which events are printed: --topic on whole streams, the others on each event.
struct event_filter {
  std::string pattern;                   ///< empty: every topic
  std::optional<std::int64_t> since_ns;  ///< inclusive
  std::optional<std::int64_t> until_ns;  ///< exclusive
  std::optional<std::string> correlation;

  bool takes_topic(std::string_view topic) const {
    return pattern.empty() || meshbus::topic_matches(pattern, topic);
  }
  bool takes(std::int64_t timestamp_ns, std::string_view correlation_id) const {
    if (since_ns && timestamp_ns < *since_ns) return false;
    if (until_ns && timestamp_ns >= *until_ns) return false;
    return !correlation || correlation_id == *correlation;
  }
};

/// One stored event, decoded; every view points into the batch being read.
struct stored_event {
  std::string_view topic;
  const std::string* publisher = nullptr;  ///< 32 hex digits
  std::uint64_t epoch = 0;
  std::uint64_t sequence = 0;
  std::int64_t timestamp_ns = 0;
  std::string_view payload;
  const wire::event_fields* fields = nullptr;

  /// As Event::id() gives it: the explicit id, else "<publisher>-<epoch>-<sequence>".
  std::string id() const {
    if (!fields->event_id.empty()) return std::string(fields->event_id);
    return *publisher + '-' + std::to_string(epoch) + '-' + std::to_string(sequence);
  }
  /// As Event::content_type() gives it: typed events without one are MessagePack.
  std::string_view content_type() const {
    if (fields->content_type.empty() && !fields->type_name.empty()) return "application/msgpack";
    return fields->content_type;
  }
  std::string timestamp() const {
    return format_time(static_cast<std::uint64_t>(std::max<std::int64_t>(0, timestamp_ns)));
  }
};

/// "[<publisher> e<epoch> #<sequence> <time> id=<id> type=<name>/<version> correlation=...
/// causation=... content_type=... header.<name>=<value>...] <topic> <payload>": what
/// `meshbus sub --meta` prints, with the whole envelope in the brackets.
std::string text_line(const stored_event& e) {
  const auto& f = *e.fields;
  std::string line = "[" + *e.publisher + " e" + std::to_string(e.epoch) + " #" + std::to_string(e.sequence) +
                     " " + e.timestamp() + " id=";
  append_display_text(line, e.id());
  if (!f.type_name.empty()) {
    line += " type=";
    append_display_text(line, f.type_name);
    line += "/" + std::to_string(f.type_version);
  }
  auto field = [&line](std::string_view name, std::string_view value) {
    if (value.empty()) return;
    line += ' ';
    line += name;
    line += '=';
    append_display_text(line, value);
  };
  field("correlation", f.correlation_id);
  field("causation", f.causation_id);
  field("content_type", e.content_type());
  wire::header_iterator headers(f);
  for (wire::header_view h; headers.next(h);) {
    line += " header.";
    append_display_text(line, h.name);
    line += '=';
    append_display_text(line, h.value);
  }
  line += "] ";
  line += e.topic;
  line += ' ';
  append_display_text(line, e.payload);
  return line;
}

/// The fields of `meshbus sub --json`, then the rest of the envelope (optional ones only
/// when the event has them).
json event_json(const stored_event& e) {
  const auto& f = *e.fields;
  json object;
  object["topic"] = e.topic;
  set_payload(object, e.payload);
  object["publisher"] = *e.publisher;
  object["epoch"] = e.epoch;
  object["sequence"] = e.sequence;
  object["timestamp"] = e.timestamp();
  object["id"] = e.id();
  if (!f.type_name.empty()) {
    object["type_name"] = f.type_name;
    object["type_version"] = f.type_version;
  }
  if (!f.correlation_id.empty()) object["correlation_id"] = f.correlation_id;
  if (!f.causation_id.empty()) object["causation_id"] = f.causation_id;
  if (const auto ct = e.content_type(); !ct.empty()) object["content_type"] = ct;
  if (f.header_count > 0) {
    auto& headers = object["headers"] = json::object();
    wire::header_iterator it(f);
    for (wire::header_view h; it.next(h);) headers[std::string(h.name)] = h.value;
  }
  return object;
}

/// "events 5-7", "event 5", "events from 5 on".
std::string range_text(std::uint64_t from, std::optional<std::uint64_t> to) {
  if (!to) return "events from " + std::to_string(from) + " on";
  if (*to == from) return "event " + std::to_string(from);
  return "events " + std::to_string(from) + "-" + std::to_string(*to);
}

/// Reads the log and prints what the filter takes. Damage is reported as it is found and
/// counted; the caller turns the count into the exit code.
class log_printer {
 public:
  log_printer(const store::log_store& log, const log_flags& flags, const event_filter& filter,
              const exit_latch& latch)
      : log_(log), flags_(flags), filter_(filter), latch_(latch) {}

  /// Prints every stream the filter takes; returns the exit code.
  int run() {
    for (const auto& stream : log_.topics()) {
      if (stopped()) break;
      if (!filter_.takes_topic(stream.topic)) continue;
      print_stream(stream);
    }
    if (!stdout_gone_ && std::fflush(stdout) != 0) stdout_failed(errno);
    if (damaged_ > 0) {
      print_error(std::to_string(damaged_) + " damaged record" + (damaged_ == 1 ? "" : "s") + " in " +
                  log_.path() + ": the events named above were not printed, every other one was");
      return exit_code::failure;
    }
    if (write_failed_) return exit_code::failure;
    return latch_.finished() ? latch_.code() : exit_code::ok;
  }

 private:
  bool stopped() const { return stdout_gone_ || latch_.finished(); }

  void print_stream(const store::topic_summary& stream) {
    // A topic record is written with its first batch, so its last sequence is at least 1;
    // topics() gives 0 only for a record that failed its CRC32C (or did not parse), and
    // read_epoch() cannot find the batches of such a record.
    if (stream.last_seq == 0) {
      report("damaged record in " + log_.path() + " (CRC32C mismatch): the record of topic " +
             display_text(stream.topic) + " (epoch " + std::to_string(stream.epoch) +
             "), so none of its events can be read");
      return;
    }
    std::optional<std::uint64_t> damaged_from;  // a damaged batch whose end the next batch tells
    auto close_damage = [&](std::optional<std::uint64_t> to) {
      if (!damaged_from) return;
      report("damaged record in " + log_.path() + " (CRC32C mismatch): " + range_text(*damaged_from, to) +
             " of " + display_text(stream.topic) + " (epoch " + std::to_string(stream.epoch) +
             ") not printed");
      damaged_from.reset();
    };
    log_.read_epoch(stream.epoch, stream.topic, 0, [&](const store::history_batch& batch, bool damaged) {
      close_damage(batch.first_seq - 1);
      if (damaged) {
        damaged_from = batch.first_seq;
      } else {
        print_batch(stream, batch);
      }
      return !stopped();
    });
    close_damage(stream.last_seq >= damaged_from.value_or(0) ? std::optional(stream.last_seq) : std::nullopt);
  }

  void print_batch(const store::topic_summary& stream, const store::history_batch& batch) {
    // The batch's events from `from` on (all of them unless some were printed) are not printed.
    auto undecodable = [&](const std::string& why, std::uint64_t from = 0) {
      const auto last = batch.first_seq + std::max<std::uint32_t>(batch.count, 1) - 1;
      report("record in " + log_.path() + " does not decode (" + why +
             "): " + range_text(std::max(from, batch.first_seq), last) + " of " + display_text(stream.topic) +
             " (epoch " + std::to_string(stream.epoch) + ") not printed");
    };
    std::string_view topic;
    wire::data_kind kind{};
    std::size_t body = 0;
    wire::batch_header h;
    if (const auto s = wire::decode_data_prefix(batch.frame, topic, kind, body);
        s != wire::decode_status::ok) {
      return undecodable(std::string("frame ") + wire::to_string(s));
    }
    if (kind != wire::data_kind::batch) return undecodable("not a batch frame");
    if (topic != stream.topic) return undecodable("the frame is of topic " + display_text(topic));
    if (const auto s = wire::decode_batch(batch.frame, body, h); s != wire::decode_status::ok) {
      return undecodable(std::string("batch ") + wire::to_string(s));
    }
    if (h.epoch != stream.epoch || h.first_seq != batch.first_seq || h.count != batch.count) {
      return undecodable("its header says epoch " + std::to_string(h.epoch) + ", events " +
                         std::to_string(h.first_seq) + "+" + std::to_string(h.count));
    }
    meshbus::NodeId publisher_id;
    publisher_id.bytes = h.publisher;
    const auto publisher = publisher_id.to_string();
    wire::mp_reader r(batch.frame.subspan(h.events_offset));
    wire::event_fields fields;
    wire::byte_view payload;
    stored_event e;
    e.topic = topic;
    e.publisher = &publisher;
    e.epoch = h.epoch;
    e.fields = &fields;
    for (std::uint32_t i = 0; i < h.count && !stopped(); ++i) {
      if (!wire::read_event(r, payload, fields)) {
        // decode_batch() validated every event, so this is not expected; never silent.
        return undecodable("event " + std::to_string(h.first_seq + i) + " is malformed", h.first_seq + i);
      }
      e.sequence = h.first_seq + i;
      e.timestamp_ns = (fields.flags & wire::event_flag::timestamp) != 0
                           ? fields.timestamp_ns
                           : static_cast<std::int64_t>(h.timestamp_ns);
      if (!filter_.takes(e.timestamp_ns, fields.correlation_id)) continue;
      e.payload = std::string_view(reinterpret_cast<const char*>(payload.data()), payload.size());
      write_line(flags_.json ? json_text(event_json(e)) : text_line(e));
    }
  }

  void report(const std::string& sentence) {
    ++damaged_;
    std::fflush(stdout);  // the report follows the events printed before it
    print_error(sentence);
  }

  void write_line(std::string line) {
    line += '\n';
    if (std::fwrite(line.data(), 1, line.size(), stdout) != line.size()) stdout_failed(errno);
  }

  void stdout_failed(int err) {
    stdout_gone_ = true;
    if (err == EPIPE) return;  // the reader (head, ...) has all it wanted
    print_error("writing to stdout: " + std::generic_category().message(err));
    write_failed_ = true;
  }

  const store::log_store& log_;
  const log_flags& flags_;
  const event_filter& filter_;
  const exit_latch& latch_;
  std::uint64_t damaged_ = 0;
  bool stdout_gone_ = false;
  bool write_failed_ = false;
};

event_filter filter_of(const log_flags& flags) {
  event_filter filter;
  if (!flags.topic.empty()) {
    if (auto err = meshbus::pattern_error(flags.topic); !err.empty()) throw usage_error(err);
    filter.pattern = flags.topic;
  }
  // The validators accepted both; relative times ("-2h") are read once, here.
  if (!flags.since.empty()) filter.since_ns = unix_ns(*parse_time(flags.since));
  if (!flags.until.empty()) filter.until_ns = unix_ns(*parse_time(flags.until));
  if (filter.since_ns && filter.until_ns && *filter.since_ns >= *filter.until_ns) {
    throw usage_error("--since " + flags.since + " is not before --until " + flags.until +
                      ": no event could be printed (give the earlier time to --since)");
  }
  if (flags.correlation_given) filter.correlation = flags.correlation;
  return filter;
}

int run_log(const log_flags& flags, exit_latch& latch) {
  const auto filter = filter_of(flags);
  std::error_code ec;
  if (!std::filesystem::exists(flags.dir, ec)) {
    print_error(flags.dir + " does not exist: give the data directory of a node (its --data-dir)");
    return exit_code::failure;
  }
  store::store_options options;
  options.dir = flags.dir;
  options.read_only = true;
  const auto log = store::log_store::open(options);  // store_error says what is wrong and what to do
  return log_printer(*log, flags, filter, latch).run();
}

CLI::Validator time_check() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        return parse_time(text)
                   ? std::string()
                   : "must be a time: ISO 8601 such as 2026-12-02T17:05:00Z (UTC unless an offset "
                     "is given), or -15m for 15 minutes ago; not " +
                         text;
      },
      "", "");
}

CLI::Validator pattern_check() {
  return CLI::Validator([](std::string& text) { return meshbus::pattern_error(text); }, "", "");
}

/// The options; the runner learns from `correlation` whether it was given.
void add_log_options(CLI::App& app, log_flags& flags, CLI::Option*& correlation) {
  app.add_option("dir", flags.dir, "The node's data directory (its --data-dir), holding log.mdb")
      ->type_name("DIR")
      ->required();
  app.add_option("--topic", flags.topic,
                 "Only topics that match PATTERN; '*' matches one segment, '**' any number")
      ->type_name("PATTERN")
      ->check(pattern_check());
  app.add_option("--since", flags.since,
                 "Only events stamped at or after TIME (ISO 8601, UTC unless an offset is given, e.g. "
                 "2026-12-02T17:05:00Z; or -15m, -2h, -7d for that long ago)")
      ->type_name("TIME")
      ->check(time_check());
  app.add_option("--until", flags.until, "Only events stamped before TIME (as --since)")
      ->type_name("TIME")
      ->check(time_check());
  correlation =
      app.add_option("--correlation", flags.correlation, "Only events whose correlation id is exactly ID")
          ->type_name("ID");
  app.add_flag("--json", flags.json,
               "One JSON object per line: topic, payload (payload_base64 if not UTF-8), publisher, epoch, "
               "sequence, timestamp, id, then type_name, type_version, correlation_id, causation_id, "
               "content_type and headers when the event has them");
}

}  // namespace

command add_log_command(CLI::App& parent) {
  auto flags = std::make_shared<log_flags>();
  CLI::Option* correlation = nullptr;
  auto* app = parent.add_subcommand("log",
                                    "Print the events kept in a node's durable log (its --data-dir) without "
                                    "starting a node, also while it\n"
                                    "runs: [<publisher> e<epoch> #<sequence> <timestamp> id=<id> type=... "
                                    "correlation=...] <topic> <payload>");
  add_log_options(*app, *flags, correlation);
  app->footer(
      "\nEvery epoch in the log is printed, epochs in order, topics sorted, each stream in sequence order;\n"
      "the line also shows causation=, content_type= and header.<name>= when the event has them. A record\n"
      "that fails its CRC32C or does not decode is reported on stderr (its events and the file): the rest\n"
      "is still printed, and the exit code is 1.\n" +
      footer("  meshbus log /var/lib/orders\n"
             "  meshbus log /var/lib/orders --topic 'orders.**' --since -2h\n"
             "  meshbus log /var/lib/orders --since 2026-12-02T17:00:00Z --until 2026-12-02T18:00:00Z\n"
             "  meshbus log /var/lib/orders --correlation checkout-42 --json\n"));
  return {app, [flags, correlation](exit_latch& latch) {
            flags->correlation_given = correlation->count() > 0;
            return run_log(*flags, latch);
          }};
}

}  // namespace meshbus_tool
