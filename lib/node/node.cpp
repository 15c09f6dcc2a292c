// meshbus::Node: the public face of node_impl (pimpl keeps ZeroMQ out of the API).
#include "meshbus/node.hpp"

#include "lib/node/node_loop.hpp"

namespace meshbus {
namespace {
// The common case, no optional fields, skips their checks entirely.
const PublishOptions* if_any(const PublishOptions& o) noexcept {
  const bool empty = o.event_id.empty() && o.type_name.empty() && o.type_version == 0 &&
                     o.correlation_id.empty() && o.causation_id.empty() && o.content_type.empty() &&
                     o.headers.empty() && !o.timestamp;
  return empty ? nullptr : &o;
}
}  // namespace

Node::Node(Options options) : impl_(std::make_unique<detail::node_impl>(options)) {}
Node::~Node() = default;

PublishResult Node::publish(std::string_view topic, std::span<const std::byte> payload,
                            const PublishOptions& options) {
  return impl_->publish(topic,
                        wire::byte_view(reinterpret_cast<const std::uint8_t*>(payload.data()), payload.size()),
                        if_any(options));
}

PublishResult Node::publish(std::string_view topic, std::string_view text, const PublishOptions& options) {
  return impl_->publish(topic, wire::byte_view(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()),
                        if_any(options));
}

Subscription Node::subscribe(std::string_view pattern, Handler handler, const SubscribeOptions& options) {
  return impl_->subscribe(pattern, std::move(handler), options);
}
Subscription Node::subscribe(std::string_view pattern, TransactionalHandler handler, const SubscribeOptions& options) {
  return impl_->subscribe(pattern, std::move(handler), options);
}
void Node::unsubscribe(Subscription subscription) { impl_->unsubscribe(subscription); }
void Node::on_peer(PeerHandler handler) { impl_->set_peer_handler(std::move(handler)); }
std::future<Reply> Node::request(std::string_view service, std::span<const std::byte> payload,
                                 const RequestOptions& options) {
  return impl_->request(service,
                        wire::byte_view(reinterpret_cast<const std::uint8_t*>(payload.data()), payload.size()),
                        options);
}
std::future<Reply> Node::request(std::string_view service, std::string_view text, const RequestOptions& options) {
  return impl_->request(service, wire::byte_view(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()),
                        options);
}
void Node::request_async(std::string_view service, std::span<const std::byte> payload, ReplyCallback done,
                         const RequestOptions& options) {
  impl_->request_async(service,
                       wire::byte_view(reinterpret_cast<const std::uint8_t*>(payload.data()), payload.size()),
                       std::move(done), options);
}
void Node::request_async(std::string_view service, std::string_view text, ReplyCallback done,
                         const RequestOptions& options) {
  impl_->request_async(service, wire::byte_view(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()),
                       std::move(done), options);
}
void Node::request_on_io_thread(std::string_view service, std::span<const std::byte> payload, ReplyCallback done,
                                const RequestOptions& options) {
  impl_->request_on_io_thread(
      service, wire::byte_view(reinterpret_cast<const std::uint8_t*>(payload.data()), payload.size()),
      std::move(done), options);
}
Service Node::serve(std::string_view service, RequestHandler handler) {
  return impl_->serve(service, std::move(handler), ServeOptions{});
}
Service Node::serve(std::string_view service, RequestHandler handler, const ServeOptions& options) {
  return impl_->serve(service, std::move(handler), options);
}
void Node::unserve(Service service) { impl_->unserve(service); }
std::vector<NodeId> Node::instances(std::string_view service) const { return impl_->instances(service); }
void Node::on_loss(LossHandler handler) { impl_->set_loss_handler(std::move(handler)); }
std::vector<DeadLetter> Node::dead_letters() const { return impl_->dead_letters(); }
bool Node::replay_dead_letter(std::uint64_t id) { return impl_->replay_dead_letter(id); }
PublishResult Node::request_dead_letter_replay(const NodeId& node, std::uint64_t id) {
  return impl_->request_dead_letter_replay(node, id);
}
PublishResult Node::request_trace(std::string_view correlation_id, std::string_view reply_topic,
                                  std::uint64_t request_id) {
  return impl_->request_trace(correlation_id, reply_topic, request_id);
}
bool Node::wait_for_subscribers(std::string_view topic, std::size_t count, std::chrono::milliseconds timeout) {
  return impl_->wait_for_subscribers(topic, count, timeout);
}
bool Node::wait_for_peers(std::size_t count, std::chrono::milliseconds timeout) {
  return impl_->wait_for_peers(count, timeout);
}
FlushResult Node::flush(std::chrono::milliseconds timeout) { return impl_->flush(timeout); }
std::size_t Node::poll_once(std::chrono::milliseconds timeout) { return impl_->poll_once(timeout); }
void Node::stop() { impl_->stop(); }
void Transaction::publish(std::string_view topic, std::string_view payload) {
  publish(topic, payload, PublishOptions{});
}

bool Node::stopped() const noexcept { return impl_->stopped(); }
bool Node::durable() const noexcept { return impl_->ctx().store != nullptr; }
std::optional<std::string> Node::stored(std::string_view key) const { return impl_->state().get(key); }
std::vector<std::pair<std::string, std::string>> Node::stored_range(std::string_view prefix) const {
  return impl_->state().range(prefix);
}
std::vector<std::pair<std::string, std::string>> Node::stored_range(std::string_view prefix, std::string_view from,
                                                                    std::size_t limit, bool backward) const {
  return impl_->state().range(prefix, from, limit, backward);
}
void Node::transact(const std::function<void(Transaction&)>& work) { impl_->state().transact(work, nullptr, {}); }
Stats Node::stats() const { return impl_->stats(); }
std::vector<PeerInfo> Node::peers() const { return impl_->peers(); }
NodeReport Node::report() { return impl_->report(); }
MeshReport Node::reports(std::chrono::milliseconds timeout) { return impl_->reports(timeout); }
std::vector<SeedInfo> Node::seeds() const { return impl_->seeds(); }
const NodeId& Node::id() const noexcept { return impl_->id(); }
std::uint64_t Node::epoch() const noexcept { return impl_->epoch(); }
const std::string& Node::name() const noexcept { return impl_->name(); }
const std::string& Node::cluster() const noexcept { return impl_->cluster(); }
const std::string& Node::bind_address() const noexcept { return impl_->bind_address(); }
std::uint16_t Node::router_port() const noexcept { return impl_->router_port(); }
std::uint16_t Node::pub_port() const noexcept { return impl_->pub_port(); }
std::uint16_t Node::beacon_port() const noexcept { return impl_->beacon_port(); }
std::uint16_t Node::metrics_port() const noexcept { return impl_->metrics_port(); }
void Node::set_log_level(LogLevel level) { impl_->set_log_level(level); }

}  // namespace meshbus
