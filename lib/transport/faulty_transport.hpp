// faulty_transport: a fault injector in front of another transport, for tests
// (MESHBUS_FAULTS, docs/testing.md). Everything the node *receives* — data frames
// and directed messages (control, repairs, assignments) — passes through a seeded
// fault_injector that drops, duplicates, reorders, delays or cuts it; sends and
// subscriptions pass through unchanged. Held-back input is due at next_release(),
// which the node's loop sleeps until. I/O thread only, like every transport.
#pragma once

#include <memory>

#include "lib/transport/fault_injector.hpp"
#include "lib/transport/transport.hpp"

namespace meshbus::transport {

class faulty_transport final : public transport {
 public:
  faulty_transport(std::unique_ptr<transport> inner, fault_plan plan, std::string plan_text);

  std::uint16_t router_port() const noexcept override { return inner_->router_port(); }
  std::uint16_t pub_port() const noexcept override { return inner_->pub_port(); }
  readiness wait(std::chrono::milliseconds timeout, bool want_data, std::span<const int> fds,
                 std::span<bool> fd_ready) override;
  std::chrono::steady_clock::time_point next_release(bool want_data) const override;
  std::string faults() const override { return plan_text_; }

  send_status publish(frame& f) override { return inner_->publish(f); }
  send_status publish_lossy(frame& f) override { return inner_->publish_lossy(f); }
  bool receive_subscription(frame& out) override { return inner_->receive_subscription(out); }
  void subscribe(const std::string& prefix) override { inner_->subscribe(prefix); }
  void unsubscribe(const std::string& prefix) override { inner_->unsubscribe(prefix); }
  bool receive_data(frame& out) override;

  void connect_peer(const wire::node_id_bytes& id, const std::string& host, std::uint16_t router_port,
                    std::uint16_t pub_port) override {
    inner_->connect_peer(id, host, router_port, pub_port);
  }
  void disconnect_peer(const wire::node_id_bytes& id, bool keep_sub = false) override {
    inner_->disconnect_peer(id, keep_sub);
  }
  std::string pub_endpoint_of(const wire::node_id_bytes& id) const override { return inner_->pub_endpoint_of(id); }
  void release_sub(const std::string& pub_endpoint) override { inner_->release_sub(pub_endpoint); }
  send_status send_to(const wire::node_id_bytes& id, frame& msg) override { return inner_->send_to(id, msg); }
  send_status send_to(const wire::node_id_bytes& id, frame& head, frame& body) override {
    return inner_->send_to(id, head, body);
  }
  void open_seed(const std::string& endpoint) override { inner_->open_seed(endpoint); }
  void close_seed(const std::string& endpoint) override { inner_->close_seed(endpoint); }
  send_status send_to_seed(const std::string& endpoint, frame& msg) override {
    return inner_->send_to_seed(endpoint, msg);
  }
  bool receive_directed(directed_message& out) override;

  fault_counters data_faults() const { return data_.counters(); }
  fault_counters directed_faults() const { return directed_.counters(); }

 private:
  std::unique_ptr<transport> inner_;
  std::string plan_text_;
  fault_injector<frame> data_;
  fault_injector<directed_message> directed_;
};

}  // namespace meshbus::transport
