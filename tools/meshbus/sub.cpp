// `meshbus sub`: subscribes the patterns and prints every event (and every loss notice) as
// one flushed line, as text or JSON, until --count events, --timeout, a signal or a closed
// stdout. Lines are written on the node's one handler thread, in the order events arrive.
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <mutex>
#include <optional>
#include <system_error>
#include <unordered_map>

#include "commands.hpp"
#include "output.hpp"
#include "time_text.hpp"

namespace meshbus_tool {
namespace {

struct sub_flags {
  std::vector<std::string> patterns;
  std::uint64_t count = 0;      ///< 0: unlimited
  std::int64_t timeout_ms = 0;  ///< 0: none
  bool json = false;
  bool meta = false;
  std::string mode = "reliable";  ///< best_effort | reliable | acknowledged (checked by CLI11)
  std::string start = "now";      ///< now | earliest | a sequence number | a time (checked by start_check)
  std::string durable;            ///< durable subscription name (needs --data-dir)
  std::string group;              ///< a service group: the group's events are shared among its members
};

/// True when the MessagePack items in `b` nest at most `max_depth` deep (a publisher
/// chooses the bytes; the JSON decoder recurses once per level). Anything malformed is
/// left to the decoder to refuse.
bool nesting_at_most(std::span<const std::byte> b, std::size_t max_depth) {
  std::vector<std::uint64_t> open;  // items still to come at each open level
  std::size_t i = 0;
  auto be = [&](std::size_t at, std::size_t n) {
    std::uint64_t v = 0;
    for (std::size_t k = 0; k < n && at + k < b.size(); ++k) v = (v << 8) | std::to_integer<std::uint8_t>(b[at + k]);
    return v;
  };
  auto item_done = [&] {
    while (!open.empty() && --open.back() == 0) open.pop_back();
  };
  while (i < b.size()) {
    const auto t = std::to_integer<std::uint8_t>(b[i]);
    std::uint64_t children = 0;
    std::size_t skip = 1;
    if (t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3) {
    } else if ((t & 0xf0) == 0x90) {
      children = t & 0x0f;
    } else if ((t & 0xf0) == 0x80) {
      children = std::uint64_t{t & 0x0fu} * 2;
    } else if ((t & 0xe0) == 0xa0) {
      skip = 1 + (t & 0x1f);
    } else {
      switch (t) {
        case 0xdc: children = be(i + 1, 2); skip = 3; break;
        case 0xdd: children = be(i + 1, 4); skip = 5; break;
        case 0xde: children = be(i + 1, 2) * 2; skip = 3; break;
        case 0xdf: children = be(i + 1, 4) * 2; skip = 5; break;
        case 0xc4: case 0xd9: skip = 2 + be(i + 1, 1); break;
        case 0xc5: case 0xda: skip = 3 + be(i + 1, 2); break;
        case 0xc6: case 0xdb: skip = 5 + be(i + 1, 4); break;
        case 0xcc: case 0xd0: skip = 2; break;
        case 0xcd: case 0xd1: skip = 3; break;
        case 0xca: case 0xce: case 0xd2: skip = 5; break;
        case 0xcb: case 0xcf: case 0xd3: skip = 9; break;
        case 0xd4: skip = 3; break;
        case 0xd5: skip = 4; break;
        case 0xd6: skip = 6; break;
        case 0xd7: skip = 10; break;
        case 0xd8: skip = 18; break;
        case 0xc7: skip = 3 + be(i + 1, 1); break;
        case 0xc8: skip = 4 + be(i + 1, 2); break;
        case 0xc9: skip = 6 + be(i + 1, 4); break;
        default: return true;  // 0xc1: malformed, the decoder refuses it
      }
    }
    i += skip;
    if (children > 0) {
      if (open.size() >= max_depth) return false;
      open.push_back(children);
    } else {
      item_done();
    }
  }
  return true;
}

/// A MessagePack payload (typed events) as JSON; nullopt when it does not decode (or
/// nests deeper than 64 levels).
std::optional<json> msgpack_json(const meshbus::Event& event) {
  if (event.content_type() != "application/msgpack") return std::nullopt;
  const auto bytes = event.payload();
  if (!nesting_at_most(bytes, 64)) return std::nullopt;
  try {
    return json::from_msgpack(reinterpret_cast<const std::uint8_t*>(bytes.data()),
                              reinterpret_cast<const std::uint8_t*>(bytes.data()) + bytes.size());
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

meshbus::Delivery delivery_of(std::string_view mode) {
  if (mode == "best_effort") return meshbus::Delivery::best_effort;
  if (mode == "acknowledged") return meshbus::Delivery::acknowledged;
  return meshbus::Delivery::reliable;
}

/// "now", "earliest" or a sequence number of at least 1; nullopt for anything else.
std::optional<meshbus::StartFrom> start_from(std::string_view text) {
  if (text == "now") return meshbus::StartFrom::now();
  if (text == "earliest") return meshbus::StartFrom::earliest();
  std::uint64_t seq = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), seq);
  if (ec == std::errc{} && end == text.data() + text.size() && seq > 0) return meshbus::StartFrom::at(seq);
  if (const auto t = parse_time(text)) return meshbus::StartFrom::time(*t);
  return std::nullopt;
}

CLI::Validator start_check() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        return start_from(text) ? std::string()
                                : "must be now, earliest, a sequence number (1 or more) or a time (ISO 8601 "
                                  "such as 2026-12-02T17:05:00Z, or -15m for 15 minutes ago), not " +
                                      text;
      },
      "", "");
}

/// For --json: the reason as a stable word, not the library's sentence.
std::string_view reason_code(meshbus::LossNotice::Reason reason) {
  switch (reason) {
    case meshbus::LossNotice::Reason::gap: return "gap";
    case meshbus::LossNotice::Reason::not_in_history: return "not_in_history";
    case meshbus::LossNotice::Reason::publisher_gone: return "publisher_gone";
  }
  return "unknown";
}

/// Publisher names for --meta/--json, filled from peer events (handler thread) and the peer list.
class peer_names {
 public:
  void remember(const meshbus::PeerInfo& peer) {
    std::lock_guard lock(mu_);
    names_[peer.id] = peer.name;
  }
  std::optional<std::string> find(const meshbus::NodeId& id) const {
    std::lock_guard lock(mu_);
    const auto it = names_.find(id);
    if (it == names_.end()) return std::nullopt;
    return it->second;
  }

 private:
  mutable std::mutex mu_;
  std::unordered_map<meshbus::NodeId, std::string> names_;
};

/// Formats and writes events and loss notices, one flushed line each; stops at the count limit
/// or when stdout is gone. Called on a meshbus handler thread.
class event_printer {
 public:
  event_printer(const sub_flags& flags, const peer_names& names, exit_latch& latch)
      : flags_(flags), names_(names), latch_(latch) {}

  void print(const meshbus::Event& event) {
    std::lock_guard lock(mu_);
    if (latch_.finished() || (flags_.count != 0 && printed_ >= flags_.count)) return;
    if (!write_line(flags_.json ? json_text(event_json(event)) : text_line(event))) return;
    printed_.store(printed_.load(std::memory_order_relaxed) + 1, std::memory_order_release);
    if (flags_.count != 0 && printed_ >= flags_.count) latch_.finish(exit_code::ok);
  }

  /// A line on stderr; with --json also a {"lost":true,...} line on stdout, in order with events.
  void print_loss(const meshbus::LossNotice& loss) {
    std::lock_guard lock(mu_);
    if (latch_.finished()) return;
    if (loss.open_ended()) {
      print_error("lost whatever followed event " + std::to_string(loss.from - 1) + " of " + loss.topic + " from " +
                  loss.publisher.short_string() + " (" + meshbus::to_string(loss.reason) +
                  " without saying where its stream ended; how many events is not known)");
    } else {
      const auto lost = loss.to - loss.from + 1;
      print_error("lost " + std::to_string(lost) + " event" + (lost == 1 ? "" : "s") + " of " + loss.topic +
                  " from " + loss.publisher.short_string() + " (" + meshbus::to_string(loss.reason) + ")");
    }
    if (flags_.json) write_line(json_text(loss_json(loss)));
  }

  std::uint64_t printed() const noexcept { return printed_.load(std::memory_order_acquire); }

 private:
  /// Writes `line` and a newline; false (and the latch finished) when stdout is gone.
  bool write_line(std::string line) {
    line += '\n';
    if (std::fwrite(line.data(), 1, line.size(), stdout) == line.size() && std::fflush(stdout) == 0) return true;
    const int err = errno;
    if (err == EPIPE) {
      latch_.finish(exit_code::ok);  // the reader (head, ...) has all it wanted
    } else {
      print_error("writing to stdout: " + std::generic_category().message(err));
      latch_.finish(exit_code::failure);
    }
    return false;
  }

  std::string text_line(const meshbus::Event& event) const {
    std::string line;
    if (flags_.meta) {
      line += '[' + event.publisher().short_string() + " #" + std::to_string(event.sequence());
      if (auto name = names_.find(event.publisher())) line += ' ' + display_text(*name);
      line += "] ";
    }
    line += event.topic();
    line += ' ';
    // What the event carries besides its payload, when it carries anything.
    std::vector<std::string> meta;
    if (!event.type_name().empty()) {
      meta.push_back("type=" + display_text(event.type_name()) + "/" + std::to_string(event.type_version()));
    }
    if (event.has_explicit_id()) meta.push_back("id=" + display_text(event.id()));
    if (!event.correlation_id().empty()) meta.push_back("corr=" + display_text(event.correlation_id()));
    if (!event.causation_id().empty()) meta.push_back("cause=" + display_text(event.causation_id()));
    for (const auto& h : event.headers()) meta.push_back(display_text(h.name) + "=" + display_text(h.value));
    if (!meta.empty()) line += '[' + join(meta, " ") + "] ";
    if (const auto decoded = msgpack_json(event)) {
      line += json_text(*decoded);
    } else {
      append_display_text(line, event.text());
    }
    return line;
  }

  void set_publisher(json& object, const meshbus::NodeId& publisher) const {
    object["publisher"] = publisher.to_string();
    if (auto name = names_.find(publisher)) object["publisher_name"] = *name;
  }

  json event_json(const meshbus::Event& event) const {
    json object;
    object["topic"] = event.topic();
    if (const auto decoded = msgpack_json(event)) {
      object["payload"] = *decoded;  // a typed event's fields, decoded from MessagePack
    } else {
      set_payload(object, event.text());
    }
    object["id"] = event.id();
    if (!event.type_name().empty()) {
      object["type"] = event.type_name();
      object["type_version"] = event.type_version();
    }
    if (!event.content_type().empty()) object["content_type"] = event.content_type();
    if (!event.correlation_id().empty()) object["correlation_id"] = event.correlation_id();
    if (!event.causation_id().empty()) object["causation_id"] = event.causation_id();
    if (const auto headers = event.headers(); !headers.empty()) {
      json h = json::object();
      for (const auto& [name, value] : headers) h[std::string(name)] = value;
      object["headers"] = h;
    }
    set_publisher(object, event.publisher());
    object["epoch"] = event.epoch();
    object["sequence"] = event.sequence();
    object["timestamp"] = iso8601_utc(event.timestamp());
    return object;
  }

  json loss_json(const meshbus::LossNotice& loss) const {
    json object;
    object["lost"] = true;
    object["topic"] = loss.topic;
    set_publisher(object, loss.publisher);
    object["epoch"] = loss.epoch;
    object["from"] = loss.from;
    if (loss.open_ended()) {
      object["to"] = nullptr;  // open-ended: everything from `from` on, how much is not known
      object["count"] = nullptr;
    } else {
      object["to"] = loss.to;
      object["count"] = loss.to - loss.from + 1;
    }
    object["reason"] = reason_code(loss.reason);
    object["pattern"] = loss.pattern;
    return object;
  }

  const sub_flags& flags_;
  const peer_names& names_;
  exit_latch& latch_;
  std::mutex mu_;
  std::atomic<std::uint64_t> printed_{0};
};

int run_sub(const node_flags& node_opts, const sub_flags& flags, exit_latch& latch) {
  for (const auto& pattern : flags.patterns) {
    if (auto err = meshbus::pattern_error(pattern); !err.empty()) {
      throw usage_error(err);  // the sentence names the pattern
    }
  }
  meshbus::SubscribeOptions subscribe_options;
  subscribe_options.delivery = delivery_of(flags.mode);
  subscribe_options.start = start_from(flags.start).value_or(meshbus::StartFrom::now());
  subscribe_options.durable_name = flags.durable;
  subscribe_options.group = flags.group;
  if (!flags.durable.empty() && node_opts.data_dir.empty() && std::getenv("MESHBUS_DATA_DIR") == nullptr) {
    throw usage_error("--durable keeps the subscription's position in a data directory: give --data-dir DIR");
  }
  // Declared before the node, so the node (and its handler threads) goes first.
  peer_names names;
  event_printer printer(flags, names, latch);
  meshbus::Options options;
  options.handler_threads = 1;  // one thread: lines keep the order events arrive in
  auto node = start_node(node_opts, std::move(options));
  node->on_peer([&names](const meshbus::PeerEvent& change) {
    if (change.kind == meshbus::PeerEvent::Kind::joined) names.remember(change.peer);
  });
  for (const auto& peer : node->peers()) names.remember(peer);  // joined before on_peer
  node->on_loss([&printer](const meshbus::LossNotice& loss) { printer.print_loss(loss); });
  for (const auto& pattern : flags.patterns) {
    node->subscribe(
        pattern, [&printer](const meshbus::Event& event) { printer.print(event); }, subscribe_options);
  }

  bool finished = true;
  const milliseconds timeout(flags.timeout_ms);
  if (flags.timeout_ms > 0) {
    finished = latch.wait_until(steady::now() + timeout);
  } else {
    latch.wait();
  }
  node->stop();
  if (!finished && flags.count != 0) {
    print_error("timed out after " + to_ms_text(timeout) + ": received " + std::to_string(printer.printed()) +
                " of " + std::to_string(flags.count) + " events");
    return exit_code::timeout;
  }
  return finished ? latch.code() : exit_code::ok;
}

void add_sub_options(CLI::App& app, sub_flags& flags) {
  app.add_option("patterns", flags.patterns, "Topic patterns; '*' matches one segment, '**' any number")
      ->type_name("PATTERN...")
      ->required();
  app.add_option("--count", flags.count, "Exit 0 after N events")->type_name("N")->check(positive_number());
  app.add_option("--timeout", flags.timeout_ms, "Stop after MS ms: exit 3 if --count was not reached, else exit 0")
      ->type_name("MS")
      ->check(positive_number());
  app.add_flag("--json", flags.json,
               "One JSON object per line: topic, payload (payload_base64 if not UTF-8), publisher, "
               "publisher_name, epoch, sequence, timestamp; lost events as {\"lost\":true, topic, publisher, "
               "epoch, from, to, count, reason, pattern}");
  app.add_flag("--meta", flags.meta, "Prefix each line with [publisher-id #sequence publisher-name]");
  app.add_option("--mode", flags.mode,
                 "Delivery: best_effort (gaps skipped and reported), reliable (repaired; the default) or "
                 "acknowledged (each event acknowledged once printed)")
      ->type_name("MODE")
      ->check(CLI::IsMember({"best_effort", "reliable", "acknowledged"}));
  app.add_option("--start", flags.start,
                 "Where to start on streams already running: now (the default), earliest (what the "
                 "publishers' history still holds), sequence SEQ of each stream, or the first event "
                 "published at or after TIME (ISO 8601 in UTC, e.g. 2026-12-02T17:05:00Z, or -15m)")
      ->type_name("now|earliest|SEQ|TIME")
      ->check(start_check());
  app.add_option("--durable", flags.durable,
                 "A durable subscription of this name (needs --data-dir): each stream's position is stored "
                 "after its events are printed, and a restart resumes after it")
      ->type_name("NAME");
  app.add_option("--group", flags.group,
                 "Join service group G: each event of the patterns goes to one member of the group "
                 "(competing consumers), acknowledged once printed")
      ->type_name("G");
}

}  // namespace

command add_sub_command(CLI::App& parent, node_flags& node) {
  auto flags = std::make_shared<sub_flags>();
  auto* app = parent.add_subcommand(
      "sub",
      "Print events as they arrive, one line each: <topic> [<type, id, correlation, causation, headers>]\n"
      "<payload> (the bracket only when the event has any; typed MessagePack payloads as JSON). Events that\n"
      "will never arrive are reported on stderr: 'meshbus: lost N events of TOPIC from PUBLISHER (reason)'");
  add_node_flags(*app, node);
  add_sub_options(*app, *flags);
  app->footer(
      footer("  meshbus sub 'sensors.**'\n"
             "  meshbus sub --count 6000 --timeout 20000 'demo.*' > events.txt\n"
             "  meshbus sub --mode best_effort 'metrics.**'\n"
             "  meshbus sub --start earliest --json 'orders.*'\n"
             "  meshbus sub --start 2026-12-02T17:00:00Z 'orders.*'\n"
             "  meshbus sub --data-dir /var/lib/audit --durable audit 'orders.**'\n"));
  return {app, [flags, &node](exit_latch& latch) { return run_sub(node, *flags, latch); }};
}

}  // namespace meshbus_tool
