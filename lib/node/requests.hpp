// requests: request/reply of one node (docs/protocol.md §5, §8). As a requester, a
// request goes to one live instance of its service (round robin), over the DEALER
// to that peer; it ends exactly once: by reply, timeout, the instance leaving, or
// stop. As a server, the services served here run their handlers on handler threads
// and the reply goes back over the DEALER to the requester. Instances are known from
// mesh_view. API calls come from any thread; pending requests live on the I/O thread.
#pragma once

#include <atomic>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "lib/node/control_sender.hpp"
#include "lib/node/dispatcher.hpp"
#include "lib/node/mesh_view.hpp"
#include "lib/node/node_context.hpp"

namespace meshbus::detail {

class requests {
 public:
  /// `connected`: whether a peer has a session (I/O thread); `services_changed`:
  /// called (any thread) when this node starts or stops serving a service.
  requests(node_context& ctx, control_sender& control, dispatcher& handlers, mesh_view& view,
           std::function<bool(const wire::node_id_bytes&)> connected, std::function<void()> services_changed);

  // --- any thread ---
  std::future<Reply> request(std::string_view service, wire::byte_view payload, const RequestOptions& options);
  void request_async(std::string_view service, wire::byte_view payload, ReplyCallback done,
                     const RequestOptions& options);
  void request_on_io_thread(std::string_view service, wire::byte_view payload, ReplyCallback done,
                            const RequestOptions& options);
  Service serve(std::string_view service, RequestHandler handler, const ServeOptions& options);
  /// Joins the threads of services served with ServeOptions::own_thread (at stop).
  void stop_workers();
  void unserve(Service service);
  std::vector<NodeId> instances(std::string_view service) const;
  std::vector<std::string> service_names() const;
  /// No new requests: the node is stopping.
  void set_stopping() noexcept { stopping_.store(true, std::memory_order_release); }

  // --- I/O thread ---
  void on_request(const wire::node_id_bytes& from, wire::request_msg&& m);
  void on_reply(const wire::node_id_bytes& from, wire::reply_msg&& m);
  /// Ends the pending requests to `peer` (all of them when null) with `code`.
  void fail(const wire::node_id_bytes* peer, errc code, const std::string& why);
  void expire(clock::time_point now);
  clock::time_point next_due() const;

 private:
  using completion = std::function<void(std::optional<Reply>, std::exception_ptr)>;
  struct pending_request {
    wire::node_id_bytes peer{};
    std::string service;
    clock::time_point deadline{};
    completion done;
  };
  class service_worker;  // a service's own thread (ServeOptions::own_thread)
  struct served_service {
    std::uint64_t id = 0;
    RequestHandler handler;
    std::shared_ptr<service_worker> worker;
  };
  void start(std::string_view service, wire::byte_view payload, const RequestOptions& options, completion done,
             bool on_handler_thread);
  wire::request_msg make_request(std::string_view service, wire::byte_view payload,
                                 const RequestOptions& options) const;
  void serve_here(wire::request_msg m, const completion& finish);
  void send(const wire::node_id_bytes& peer, wire::request_msg m, const completion& finish,
            clock::time_point deadline);
  wire::reply_msg run_service(const wire::node_id_bytes& requester, const wire::request_msg& m);

  node_context& ctx_;
  control_sender& control_;
  dispatcher& handlers_;
  mesh_view& view_;
  std::function<bool(const wire::node_id_bytes&)> connected_;
  std::function<void()> services_changed_;
  std::atomic<bool> stopping_{false};
  std::atomic<std::uint64_t> round_robin_{0};
  // Services served here (any thread, under services_mu_).
  mutable std::mutex services_mu_;
  std::map<std::string, served_service, std::less<>> services_;
  std::uint64_t next_service_id_ = 1;
  // I/O thread only.
  std::map<std::uint64_t, pending_request> pending_;
  std::uint64_t next_request_id_ = 1;
};

}  // namespace meshbus::detail
