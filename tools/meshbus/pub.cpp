// `meshbus pub`: waits for the topic's subscribers to be ready (no slow-joiner loss), then
// publishes PAYLOAD --count times or each line of stdin, paced by --rate, and ends with a
// flush that waits until every subscriber acknowledged every event.
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <random>
#include <system_error>

#include "commands.hpp"
#include "output.hpp"

namespace meshbus_tool {
namespace {

struct pub_flags {
  std::string topic;
  std::string payload;
  bool has_payload = false;
  std::uint64_t count = 1;  ///< with PAYLOAD: how many; from stdin: at most this many when given
  bool count_given = false;
  double rate = 0;  ///< events/s; 0: as fast as possible
  std::size_t subscribers = 0;
  std::int64_t wait_ms = -1;  ///< -1: discovery_wait's default
  std::int64_t timeout_ms = 10'000;
  bool serve = false;  ///< keep serving the history (--data-dir) until SIGINT/SIGTERM
  std::vector<std::string> headers;  ///< -H key=value (the value may hold placeholders)
};

/// Lines of stdin without their '\n' (a last line without one counts too). Stops early when
/// the latch finishes, even while waiting for input.
class stdin_lines {
 public:
  explicit stdin_lines(int wake_fd) : wake_fd_(wake_fd) {}

  bool next(std::string& line) {
    for (;;) {
      if (const auto nl = buffer_.find('\n', pos_); nl != std::string::npos) {
        line.assign(buffer_, pos_, nl - pos_);
        pos_ = nl + 1;
        return true;
      }
      if (eof_) {
        if (pos_ >= buffer_.size()) return false;
        line.assign(buffer_, pos_);
        pos_ = buffer_.size();
        return true;
      }
      buffer_.erase(0, pos_);
      pos_ = 0;
      if (!fill()) return false;
    }
  }

 private:
  /// Reads more input; false when woken by the latch.
  bool fill() {
    pollfd fds[2] = {{STDIN_FILENO, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    for (;;) {
      if (::poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        throw std::system_error(errno, std::generic_category(), "waiting for stdin");
      }
      if ((fds[1].revents & POLLIN) != 0) return false;
      char chunk[65536];
      const auto n = ::read(STDIN_FILENO, chunk, sizeof chunk);
      if (n > 0) {
        buffer_.append(chunk, static_cast<std::size_t>(n));
        return true;
      }
      if (n == 0) {
        eof_ = true;
        return true;
      }
      if (errno != EINTR && errno != EAGAIN) throw std::system_error(errno, std::generic_category(), "reading stdin");
    }
  }

  int wake_fd_;
  std::string buffer_;
  std::size_t pos_ = 0;
  bool eof_ = false;
};

std::size_t matching_subscribers(const std::vector<meshbus::PeerInfo>& peers, std::string_view topic) {
  return static_cast<std::size_t>(std::count_if(peers.begin(), peers.end(), [&](const meshbus::PeerInfo& p) {
    return std::any_of(p.subscriptions.begin(), p.subscriptions.end(), [&](const std::string& pattern) {
      try {
        return meshbus::topic_matches(pattern, topic);
      } catch (const meshbus::error&) {
        return false;  // a peer's pattern we cannot parse cannot match here either
      }
    });
  }));
}

/// Makes sure the subscribers of the topic that exist are ready before the first event (no
/// slow-joiner loss). Returns how many there are; nullopt when --subscribers N did not appear.
std::optional<std::size_t> await_subscribers(meshbus::Node& node, const pub_flags& flags, milliseconds wait,
                                             const exit_latch& latch) {
  const milliseconds timeout(flags.timeout_ms);
  if (flags.subscribers > 0) {
    if (!wait_interruptibly(latch, steady::now() + timeout, [&](milliseconds step) {
          return node.wait_for_subscribers(flags.topic, flags.subscribers, step);
        })) {
      return std::nullopt;
    }
  } else {
    discover_peers(node, wait, latch);
  }
  // Every known subscriber of the topic: wait until its subscription is in effect at our PUB.
  std::size_t known = 0;
  const bool ready = wait_interruptibly(latch, steady::now() + timeout, [&](milliseconds step) {
    known = std::max(flags.subscribers, matching_subscribers(node.peers(), flags.topic));
    return node.wait_for_subscribers(flags.topic, known, step);
  });
  if (!ready && !latch.finished()) {
    print_error("warning: not all " + std::to_string(known) + " subscribers of " + flags.topic +
                " were ready within " + to_ms_text(timeout) + "; publishing anyway");
  }
  return known;
}

/// A payload or header value with placeholders: {n} the 1-based counter, {time} the time
/// of publishing (ISO 8601 UTC, microseconds), {random} a random 64-bit number. Anything
/// else in braces is kept as it is.
class text_template {
 public:
  explicit text_template(std::string_view text) {
    static constexpr std::pair<std::string_view, part_kind> names[] = {
        {"{n}", part_kind::counter}, {"{time}", part_kind::time}, {"{random}", part_kind::random}};
    std::string literal;
    for (std::size_t i = 0; i < text.size();) {
      bool matched = false;
      for (const auto& [name, kind] : names) {
        if (text.substr(i, name.size()) == name) {
          parts_.push_back({part_kind::literal, std::move(literal)});
          literal.clear();
          parts_.push_back({kind, {}});
          i += name.size();
          matched = true;
          break;
        }
      }
      if (!matched) literal += text[i++];
    }
    parts_.push_back({part_kind::literal, std::move(literal)});
  }

  std::string expand(std::uint64_t n) {
    std::string out;
    for (const auto& p : parts_) {
      switch (p.kind) {
        case part_kind::literal: out += p.text; break;
        case part_kind::counter: out += std::to_string(n); break;
        case part_kind::time: out += iso8601_utc(std::chrono::system_clock::now()); break;
        case part_kind::random: out += std::to_string(random_()); break;
      }
    }
    return out;
  }

 private:
  enum class part_kind : std::uint8_t { literal, counter, time, random };
  struct part {
    part_kind kind;
    std::string text;
  };
  std::vector<part> parts_;
  std::mt19937_64 random_{std::random_device{}()};
};

/// PAYLOAD --count times with its placeholders expanded (text_template), or the lines of stdin.
std::function<bool(std::string&)> payload_source(const pub_flags& flags, const exit_latch& latch) {
  if (!flags.has_payload) {
    auto lines = std::make_shared<stdin_lines>(latch.wake_fd());
    auto limit = flags.count_given ? flags.count : UINT64_MAX;
    return [lines, limit, taken = std::uint64_t{0}](std::string& payload) mutable {
      return taken++ < limit && lines->next(payload);
    };
  }
  return [text = text_template(flags.payload), count = flags.count, n = std::uint64_t{0}](std::string& payload) mutable {
    if (n >= count) return false;
    payload = text.expand(++n);
    return true;
  };
}

/// What the publishing loop achieved.
struct publish_summary {
  std::uint64_t published = 0;
  bool send_queue_stuck = false;  ///< a publish stayed refused for --timeout
};

/// Publishes every payload from the source, paced by --rate, until it runs out or the latch.
publish_summary publish_all(meshbus::Node& node, const pub_flags& flags, exit_latch& latch,
                            steady::time_point start) {
  const milliseconds timeout(flags.timeout_ms);
  const auto next_payload = payload_source(flags, latch);
  const std::chrono::duration<double> interval(flags.rate > 0 ? 1.0 / flags.rate : 0.0);
  publish_summary summary;
  std::string payload;
  // -H: each value expanded per event, like PAYLOAD.
  std::vector<std::pair<std::string, text_template>> header_templates;
  for (const auto& h : flags.headers) {
    const auto eq = h.find('=');
    header_templates.emplace_back(h.substr(0, eq), text_template(h.substr(eq + 1)));
  }
  std::vector<std::string> header_values(header_templates.size());
  std::vector<meshbus::Header> headers(header_templates.size());
  meshbus::PublishOptions options;
  while (!latch.finished() && next_payload(payload)) {
    for (std::size_t i = 0; i < header_templates.size(); ++i) {
      header_values[i] = header_templates[i].second.expand(summary.published + 1);
      headers[i] = {header_templates[i].first, header_values[i]};
    }
    options.headers = headers;
    if (flags.rate > 0) {
      // The n-th event goes at start + n/rate, so pacing does not drift.
      const auto due = start + std::chrono::duration_cast<steady::duration>(
                                   interval * static_cast<double>(summary.published));
      if (latch.wait_until(due)) break;
    }
    const auto outcome =
        publish_retrying([&] { return node.publish(flags.topic, std::string_view(payload), options); },
                         steady::now() + timeout, latch);
    if (outcome == publish_outcome::interrupted) break;
    if (outcome == publish_outcome::timed_out) {
      summary.send_queue_stuck = true;
      break;
    }
    ++summary.published;
  }
  return summary;
}

void report_published(const pub_flags& flags, std::uint64_t published, std::size_t subscribers,
                      std::chrono::duration<double, std::milli> took) {
  char took_text[32];
  std::snprintf(took_text, sizeof took_text, "%.1f", took.count());
  std::cerr << "published " << published << " event" << (published == 1 ? "" : "s") << " on " << flags.topic
            << " to " << subscribers << " subscriber" << (subscribers == 1 ? "" : "s") << " in " << took_text
            << " ms" << std::endl;
}

int run_pub(const node_flags& node_opts, const pub_flags& flags, exit_latch& latch) {
  if (auto err = meshbus::topic_error(flags.topic); !err.empty()) {
    throw usage_error(err);  // the sentence names the topic
  }
  for (const auto& h : flags.headers) {
    const auto eq = h.find('=');
    if (eq == std::string::npos || eq == 0) {
      throw usage_error("-H takes NAME=VALUE (e.g. -H tenant=acme), not '" + display_text(h) + "'");
    }
  }
  if (flags.serve && node_opts.data_dir.empty() && std::getenv("MESHBUS_DATA_DIR") == nullptr) {
    throw usage_error("--serve serves the history kept in a data directory: give --data-dir DIR");
  }
  const milliseconds timeout(flags.timeout_ms);
  meshbus::Options options;
  options.send_timeout = std::min(timeout, milliseconds(200));  // publish_retrying retries up to timeout
  auto node = start_node(node_opts, std::move(options));
  const auto wait = discovery_wait(node_opts, flags.wait_ms);

  const auto subscribers = await_subscribers(*node, flags, wait, latch);
  if (latch.finished()) return exit_code::ok;  // interrupted while waiting
  if (!subscribers) {
    node->stop();
    print_error("timed out after " + to_ms_text(timeout) + " waiting for " + std::to_string(flags.subscribers) +
                " subscribers of " + flags.topic + " (" +
                std::to_string(matching_subscribers(node->peers(), flags.topic)) + " known)");
    return exit_code::timeout;
  }
  if (!flags.has_payload && ::isatty(STDIN_FILENO) != 0) {
    std::cerr << "meshbus: publishing each line of input on " << flags.topic << " (Ctrl-D to end)" << std::endl;
  }

  const auto start = steady::now();
  const auto summary = publish_all(*node, flags, latch, start);
  if (summary.send_queue_stuck) {
    node->stop();
    print_error("timed out after " + to_ms_text(timeout) + ": the send queue stayed full after " +
                std::to_string(summary.published) + " events on " + flags.topic);
    return exit_code::timeout;
  }
  // The guarantee: flush() returns once every reliable subscriber acknowledged every event;
  // a subscriber that went away for good without doing so is reported by one of the calls.
  meshbus::FlushResult last;
  std::vector<meshbus::UnacknowledgedSubscriber> gone;
  const bool flushed = wait_interruptibly(latch, steady::now() + timeout, [&](milliseconds step) {
    last = node->flush(step);
    for (const auto& u : last.unacknowledged) {
      if (u.state == meshbus::UnacknowledgedSubscriber::State::gone) gone.push_back(u);
    }
    return last.flushed;
  });
  const std::chrono::duration<double, std::milli> took = steady::now() - start;
  if (flags.serve && !latch.finished()) {
    report_published(flags, summary.published, *subscribers, took);
    std::cerr << "meshbus: serving the history of " << flags.topic
              << " to late joiners (Ctrl-C or SIGTERM to stop)" << std::endl;
    latch.wait();
  }
  const auto unflushed = node->stats();
  // After a flush stop() only says goodbye; after a failed one it lingers (Options::linger).
  node->stop();
  if (!flags.serve) report_published(flags, summary.published, *subscribers, took);
  if (*subscribers == 0 && summary.published > 0 && !flags.serve) {
    print_error("note: no subscriber of " + flags.topic + " was found within " + to_ms_text(wait) +
                " (check --cluster and --interface, or use --subscribers N)");
  }
  if (!gone.empty()) {
    meshbus::FlushResult report;
    report.unacknowledged = gone;
    print_error("not every event reached every subscriber: " + report.describe());
  }
  if (!flushed && !latch.finished()) {
    print_error("timed out after " + to_ms_text(timeout) +
                " waiting for the subscribers to acknowledge every event (" +
                std::to_string(unflushed.unacknowledged_events) + " unacknowledged, " +
                std::to_string(unflushed.send_queue_bytes) + " bytes not yet sent); some may not have arrived" +
                (last.unacknowledged.empty() ? "" : ": " + last.describe()));
    return exit_code::timeout;
  }
  return gone.empty() ? exit_code::ok : exit_code::unacknowledged;
}

/// The options; the runner learns from `payload` and `count` whether they were given.
void add_pub_options(CLI::App& app, pub_flags& flags, CLI::Option*& payload, CLI::Option*& count) {
  app.add_option("topic", flags.topic, "Topic to publish on (no wildcards)")->type_name("TOPIC")->required();
  app.add_option("-H,--header", flags.headers,
                 "A header NAME=VALUE on every event (repeatable); VALUE may hold {n}, {time}, {random}")
      ->type_name("NAME=VALUE")
      ->allow_extra_args(false);  // one value per -H: what follows is TOPIC and PAYLOAD
  payload = app.add_option("payload", flags.payload,
                           "Event payload; {n} is replaced by the 1-based counter, {time} by the time (ISO 8601 "
                           "UTC), {random} by a random number")
                ->type_name("PAYLOAD");
  count = app.add_option("--count", flags.count, "Publish PAYLOAD N times (default 1); with stdin, at most N lines")
              ->type_name("N")
              ->check(positive_number());
  app.add_option("--rate", flags.rate, "Pace to R events per second")->type_name("R")->check(positive_number());
  app.add_option("--subscribers", flags.subscribers,
                 "Wait (up to --timeout) for N ready subscribers first; exit 3 if they do not appear")
      ->type_name("N")
      ->check(positive_number());
  app.add_option("--wait", flags.wait_ms,
                 "How long to wait for peers before publishing, in ms (default: 1.5 x beacon interval)")
      ->type_name("MS")
      ->check(non_negative_number());
  app.add_option("--timeout", flags.timeout_ms,
                 "Bound in ms for subscriber readiness, a full send queue and the final flush, which waits "
                 "until every subscriber acknowledged every event (default 10000)")
      ->type_name("MS")
      ->check(positive_number());
  app.add_flag("--serve", flags.serve,
               "After the input ends, keep serving the history (kept in --data-dir) to late joiners and "
               "repairs until SIGINT or SIGTERM");
}

}  // namespace

command add_pub_command(CLI::App& parent, node_flags& node) {
  auto flags = std::make_shared<pub_flags>();
  auto* app =
      parent.add_subcommand("pub", "Publish PAYLOAD, or each line of stdin (until EOF) when PAYLOAD is left out");
  add_node_flags(*app, node);
  CLI::Option* payload = nullptr;
  CLI::Option* count = nullptr;
  add_pub_options(*app, *flags, payload, count);
  app->footer(
      footer("  meshbus pub sensors.s1.temp 21.5\n"
             "  seq 6000 | meshbus pub demo.lines\n"
             "  meshbus pub --count 100 --rate 10 --subscribers 2 demo.ticks 'tick {n}'\n"
             "  meshbus pub --interface eth0 sensors.s1.temp 21.5\n"
             "  seq 1000 | meshbus pub --data-dir /var/lib/orders --serve orders.placed\n"));
  return {app, [flags, payload, count, &node](exit_latch& latch) {
            flags->has_payload = payload->count() > 0;
            flags->count_given = count->count() > 0;
            return run_pub(node, *flags, latch);
          }};
}

}  // namespace meshbus_tool
