// Faults on what a node receives; see faulty_transport.hpp. Each read takes what the
// inner transport has waiting (at most 256 messages a call) into the injector and
// returns what the injector releases now.
#include "lib/transport/faulty_transport.hpp"

#include <algorithm>
#include <cstdlib>

#include "lib/transport/zmq_transport.hpp"

namespace meshbus::transport {
namespace {

constexpr int max_reads_per_call = 256;

directed_message copy_of(const directed_message& m) {
  directed_message c;
  c.from = m.from;
  c.first = m.first.share();
  c.second = m.second.share();
  c.has_second = m.has_second;
  c.peer_ip = m.peer_ip;
  c.bad_identity = m.bad_identity;
  return c;
}

fault_plan directed_plan_of(fault_plan plan) {
  plan.seed = plan.seed * 31 + 7;  // the two directions fail independently
  return plan;
}

}  // namespace

faulty_transport::faulty_transport(std::unique_ptr<transport> inner, fault_plan plan, std::string plan_text)
    : inner_(std::move(inner)),
      plan_text_(std::move(plan_text)),
      data_(plan, [](const frame& f) { return f.share(); }),
      directed_(directed_plan_of(plan), copy_of) {}

readiness faulty_transport::wait(std::chrono::milliseconds timeout, bool want_data, std::span<const int> fds,
                                 std::span<bool> fd_ready) {
  auto r = inner_->wait(timeout, want_data, fds, fd_ready);
  // Held-back messages are due by time, not by a readable socket.
  const auto now = fault_clock::now();
  if (data_.next_release() <= now) r.data = want_data;
  if (directed_.next_release() <= now) r.directed = true;
  return r;
}

std::chrono::steady_clock::time_point faulty_transport::next_release(bool want_data) const {
  return want_data ? std::min(data_.next_release(), directed_.next_release()) : directed_.next_release();
}

bool faulty_transport::receive_data(frame& out) {
  const auto now = fault_clock::now();
  for (int i = 0; i < max_reads_per_call; ++i) {
    frame in;
    if (!inner_->receive_data(in)) break;
    data_.push(std::move(in), now);
  }
  return data_.pop(out, now);
}

bool faulty_transport::receive_directed(directed_message& out) {
  const auto now = fault_clock::now();
  for (int i = 0; i < max_reads_per_call; ++i) {
    directed_message in;
    if (!inner_->receive_directed(in)) break;
    directed_.push(std::move(in), now);
  }
  return directed_.pop(out, now);
}

std::unique_ptr<transport> open_transport(const transport_config& cfg) {
  std::unique_ptr<transport> t = std::make_unique<zmq_transport>(cfg);
  const char* faults = std::getenv("MESHBUS_FAULTS");
  if (faults == nullptr || *faults == '\0') return t;
  auto plan = fault_plan::parse(faults);
  if (!plan.any()) return t;
  return std::make_unique<faulty_transport>(std::move(t), plan, faults);
}

}  // namespace meshbus::transport
