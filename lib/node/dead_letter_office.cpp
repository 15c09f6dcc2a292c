// Dead letters: stored, announced, replayed; see dead_letter_office.hpp. A replayed
// letter is rebuilt as a one-event batch with its original stream position and
// delivered to its subscription alone, on an ordering lane of its own. A letter
// loaded from the durable log goes to the subscription that now has its pattern,
// durable name and group.
#include "lib/node/dead_letter_office.hpp"

#include <charconv>

#include <fmt/format.h>

#include "lib/wire/dead_letter.hpp"
#include "lib/wire/envelope.hpp"

namespace meshbus::detail {
namespace {

wire::byte_view bytes_of(std::string_view s) {
  return wire::byte_view(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
}

DeadLetter letter_of(const Event& e, const subscription_entry& sub, std::string_view reason, unsigned attempts) {
  DeadLetter d;
  d.topic = std::string(e.topic());
  d.payload = std::string(e.text());
  d.publisher = e.publisher();
  d.epoch = e.epoch();
  d.sequence = e.sequence();
  d.event_id = e.has_explicit_id() ? std::string(e.id()) : std::string();
  d.type_name = std::string(e.type_name());
  d.type_version = e.type_version();
  d.correlation_id = std::string(e.correlation_id());
  d.causation_id = std::string(e.causation_id());
  d.content_type = std::string(e.content_type());
  for (const auto& h : e.headers()) d.headers.emplace_back(std::string(h.name), std::string(h.value));
  d.pattern = sub.pattern.text();
  d.reason = std::string(reason);
  d.attempts = attempts;
  d.failed_at = std::chrono::system_clock::now();
  return d;
}

// A dead letter as a one-event batch of its original stream.
wire::bytes frame_of(const DeadLetter& letter, wire::batch_marks& marks) {
  std::vector<wire::header_view> headers;
  for (const auto& [k, v] : letter.headers) headers.push_back({k, v});
  wire::event_fields f;
  f.flags = wire::event_flag::headers;
  f.headers = headers;
  auto set = [&](std::uint32_t flag, std::string_view& field, const std::string& value) {
    if (value.empty()) return;
    f.flags |= flag;
    field = value;
  };
  set(wire::event_flag::event_id, f.event_id, letter.event_id);
  set(wire::event_flag::correlation_id, f.correlation_id, letter.correlation_id);
  set(wire::event_flag::causation_id, f.causation_id, letter.causation_id);
  set(wire::event_flag::content_type, f.content_type, letter.content_type);
  if (!letter.type_name.empty()) {
    f.flags |= wire::event_flag::type;
    f.type_name = letter.type_name;
    f.type_version = letter.type_version;
  }
  wire::bytes frame;
  wire::begin_batch(frame, letter.topic, letter.publisher.bytes, letter.epoch, letter.sequence, marks);
  wire::append_event(frame, bytes_of(letter.payload), &f);
  wire::finish_batch(frame, marks, 1, unix_ns());
  return frame;
}

}  // namespace

dead_letter_office::dead_letter_office(node_context& ctx, dispatcher& handlers, subscription_registry& subs,
                                       publish_reserved publish)
    : ctx_(ctx),
      handlers_(handlers),
      subs_(subs),
      publish_(std::move(publish)),
      store_(ctx, ctx.opts.dead_letter_capacity) {}

void dead_letter_office::dead_letter(const Event& e, const subscription_entry& sub, std::string_view reason,
                                     unsigned attempts) {
  auto d = letter_of(e, sub, reason, attempts);
  const auto [id, dropped] = store_.add(d, {sub.id, sub.options.durable_name, sub.options.group});
  if (dropped) bump(ctx_.counters.dead_letters_dropped);
  ctx_.faults.report(fault::dead_letter, fmt::format("dead-lettered event {} of '{}' after {} attempt(s): {}", e.id(),
                                                     d.topic, attempts, d.reason));
  announce(d, id, e);
}

// On "$dlq.<topic>", so tools and other nodes can see it.
void dead_letter_office::announce(const DeadLetter& d, std::uint64_t id, const Event& e) {
  const auto topic = wire::dead_letter_topic(d.topic);
  const auto id_text = std::to_string(id);
  const auto attempts_text = std::to_string(d.attempts);
  const auto seq_text = std::to_string(d.sequence);
  const auto publisher_text = d.publisher.to_string();
  const auto node_text = ctx_.self.id.to_string();
  namespace h = wire::dead_letter_header;
  const Header headers[] = {{h::id, id_text},
                            {h::node, node_text},
                            {h::reason, d.reason},
                            {h::attempts, attempts_text},
                            {h::pattern, d.pattern},
                            {h::original_topic, d.topic},
                            {h::original_publisher, publisher_text},
                            {h::original_sequence, seq_text}};
  PublishOptions po;
  po.headers = headers;
  po.type_name = d.type_name;
  po.type_version = d.type_version;
  po.correlation_id = d.correlation_id;
  const std::string cause = d.event_id.empty() ? std::string(e.id()) : d.event_id;  // e.id() may be made on the fly
  po.causation_id = cause;
  try {
    (void)publish_(topic, bytes_of(d.payload), po);
  } catch (const error&) {
    // The node is stopping: the dead letter stays in the store.
  }
}

PublishResult dead_letter_office::request_replay(const NodeId& node, std::uint64_t id) {
  const auto node_text = node.to_string();
  const auto id_text = std::to_string(id);
  const Header headers[] = {{wire::dead_letter_header::node, node_text}, {wire::dead_letter_header::id, id_text}};
  PublishOptions po;
  po.headers = headers;
  return publish_(wire::dead_letter_replay_topic, {}, po);
}

void dead_letter_office::answer_replay_request(const Event& request) {
  const auto node_text = ctx_.self.id.to_string();
  namespace h = wire::dead_letter_header;
  if (request.header(h::node).value_or("") != node_text) return;
  const auto id_text = std::string(request.header(h::id).value_or(""));
  std::uint64_t id = 0;
  const auto [end, ec] = std::from_chars(id_text.data(), id_text.data() + id_text.size(), id);
  const bool ok = ec == std::errc{} && end == id_text.data() + id_text.size() && replay(id);
  const Header headers[] = {
      {h::node, node_text}, {h::id, id_text}, {h::result, ok ? wire::dead_letter_replayed : wire::dead_letter_unknown}};
  PublishOptions po;
  po.headers = headers;
  po.causation_id = request.id();  // a view that lives as long as the request
  (void)publish_(wire::dead_letter_replayed_topic, {}, po);
}

// A letter of an earlier run of the process: the subscription of this run with the
// same pattern, durable name and group stands for the one that failed it.
std::shared_ptr<subscription_entry> dead_letter_office::subscription_like(const DeadLetter& letter,
                                                                          const dead_letter_store::origin& from) const {
  for (auto& sub : subs_.entries()) {
    if (sub->pattern.text() == letter.pattern && sub->options.durable_name == from.durable_name &&
        sub->options.group == from.group) {
      return sub;
    }
  }
  return nullptr;
}

bool dead_letter_office::replay(std::uint64_t id) {
  const auto found = store_.find(id);
  if (!found) return false;
  const auto& [letter, from] = *found;
  auto sub = from.subscription_id != 0 ? subs_.find(from.subscription_id) : subscription_like(letter, from);
  if (!sub) return false;
  wire::batch_marks marks;
  const auto frame = frame_of(letter, marks);
  delivery d;
  d.frame = transport::frame(frame.data(), frame.size());
  d.subscriptions = std::make_shared<const match_list>(match_list{sub});
  d.publisher = letter.publisher;
  d.epoch = letter.epoch;
  d.first_seq = letter.sequence;
  d.count = 1;
  d.topic_size = static_cast<std::uint32_t>(letter.topic.size());
  d.events_offset = marks.events_at;
  d.stream_id = (std::uint64_t{1} << 63) | id;  // its own ordering: nothing waits behind it
  // Done either way: handled, or dead-lettered again as a new entry that replaces it.
  d.on_done = [this, id](delivery_outcome) { store_.remove(id); };
  {
    // The replayed event must not be taken for a duplicate of itself.
    std::lock_guard lock(sub->dedupe_mu);
    if (!letter.event_id.empty()) sub->dedupe.forget(letter.event_id);
  }
  handlers_.post(static_cast<std::size_t>(id), std::move(d));
  return true;
}

}  // namespace meshbus::detail
