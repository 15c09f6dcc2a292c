// Uses the installed typed-event and saga headers: a typed event reaches a saga on
// the same node, which completes its flow.
#include <meshbus/saga.hpp>
#include <meshbus/typed.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <future>

namespace {
struct Started {
  static constexpr std::string_view event_name = "consumer.started";
  static constexpr std::uint32_t event_version = 1;
  std::string what;
  MSGPACK_DEFINE_MAP(what)
};
struct Seen {
  std::string what;
};
}  // namespace

bool typed_flow_completes(meshbus::Node& node) {
  std::promise<std::string> finished;
  meshbus::SagaOptions options;
  options.on_finished = [&](const std::string&, meshbus::SagaStatus status, const std::string&) {
    finished.set_value(meshbus::to_string(status));
  };
  meshbus::Saga<Seen> saga(node, "consumer", options);
  saga.start_on<Started>([](meshbus::Saga<Seen>::Context& flow, const Started& s) {
    flow.state().what = s.what;
    flow.complete();
  });
  saga.start();
  if (node.publish(Started{"typed"}) != meshbus::PublishResult::ok) return false;
  auto status = finished.get_future();
  return status.wait_for(std::chrono::seconds(10)) == std::future_status::ready && status.get() == "completed";
}
