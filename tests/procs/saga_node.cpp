// A test program that runs a durable order saga (a data directory is expected) until
// SIGTERM, for tests that kill it mid-flow and start it again on the same directory.
// For each OrderPlaced it asks the stock service (a request with the continuation
// "reserved"), then registers the compensation "release stock" and publishes
// ChargePayment; a PaymentResult completes the flow or fails it; an OrderPlaced with
// timeout_ms gives its flow that deadline. The compensation publishes ReleaseStock
// with the steps the flow's state holds. It prints "started restored=N" once the saga
// runs, "finished <flow> <status> steps=<a,b> undone=<c,d> reason=<text>" for every
// flow that ends, and "stats stock=<instances of the stock service> <counter>=<value> ..."
// whenever one of these changes.
#include <csignal>
#include <cstdio>
#include <string>
#include <thread>

#include <meshbus/saga.hpp>

#include "tests/procs/proc_args.hpp"
#include "tests/procs/saga_node_events.hpp"

using namespace std::chrono_literals;
using namespace meshbus;
using namespace meshbus::test::saga_node;

namespace {

std::atomic<bool> terminated{false};
void on_term(int) { terminated = true; }

struct Order {
  std::string id;
  int cents = 0;
  std::vector<std::string> steps;
  MSGPACK_DEFINE_MAP(id, cents, steps)
};
using Flow = Saga<Order>::Context;

std::string joined(const std::vector<std::string>& parts) {
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : ",") + p;
  return out;
}

void say(const std::string& line) {
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

std::string stats_line(const SagaStats& s, std::size_t stock) {
  return "stats stock=" + std::to_string(stock) + " started=" + std::to_string(s.started) +
         " running=" + std::to_string(s.running) +
         " restored=" + std::to_string(s.restored) + " completed=" + std::to_string(s.completed) +
         " compensated=" + std::to_string(s.compensated) + " timed_out=" + std::to_string(s.timed_out) +
         " steps=" + std::to_string(s.steps) + " step_errors=" + std::to_string(s.step_errors) +
         " unknown_flow=" + std::to_string(s.unknown_flow) + " late=" + std::to_string(s.late) +
         " redelivered=" + std::to_string(s.redelivered) + " store_failures=" + std::to_string(s.store_failures);
}

}  // namespace

int main(int argc, char** argv) {
  const test::proc_args args(argc, argv);
  std::signal(SIGTERM, on_term);
  try {
    Node node(args.node_options("saga"));
    SagaOptions so;
    so.timeout = std::chrono::milliseconds(args.number("--saga-timeout-ms", 60000));
    std::optional<Saga<Order>> saga;
    so.on_finished = [&](const std::string& flow, SagaStatus status, const std::string& reason) {
      const auto r = saga->find(flow);
      say("finished " + flow + " " + to_string(status) + " steps=" + (r ? joined(r->state.steps) : "?") +
          " undone=" + (r ? joined(r->compensations_run) : "?") + " reason=" + reason);
    };
    saga.emplace(node, "orders", so);
    saga->compensation("release stock", [](Flow& flow) {
      (void)flow.publish(ReleaseStock{flow.state().id, joined(flow.state().steps)});
    });
    saga->on_result<StockReserved>("reserved", [](Flow& flow, RequestResult<StockReserved> reserved) {
      if (!reserved) return flow.fail("no stock: " + reserved.message());
      flow.state().steps.push_back("reserved");
      flow.compensate("release stock");
      (void)flow.publish(ChargePayment{flow.state().id, flow.state().cents});
    });
    saga->start_on<OrderPlaced>([](Flow& flow, const OrderPlaced& placed) {
      flow.state().id = placed.order;
      flow.state().cents = placed.cents;
      flow.state().steps.push_back("placed");
      if (placed.timeout_ms > 0) flow.set_timeout(std::chrono::milliseconds(placed.timeout_ms));
      flow.request<ReserveStock, StockReserved>(ReserveStock{placed.order}, "reserved");
    });
    saga->on<PaymentResult>([](Flow& flow, const PaymentResult& paid) {
      flow.state().steps.push_back(paid.captured ? "paid" : "declined");
      if (paid.captured) {
        flow.complete();
      } else {
        flow.fail("payment: " + paid.reason);
      }
    });
    saga->start();
    say("started restored=" + std::to_string(saga->stats().restored));
    std::string last;
    while (!terminated) {
      if (auto line = stats_line(saga->stats(), node.instances(ReserveStock::event_name).size()); line != last) {
        say(line);
        last = std::move(line);
      }
      std::this_thread::sleep_for(10ms);
    }
    saga->stop();
    node.stop();
    return 0;
  } catch (const error& e) {
    std::fprintf(stderr, "saga_node: %s\n", e.what());
    return 3;
  }
}
