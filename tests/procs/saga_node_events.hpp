// The events of the saga in tests/procs/saga_node.cpp, shared with the tests that
// drive it: an order is placed, stock is reserved by request/reply, the payment is
// charged and answered by events, and the compensation releases the stock.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <meshbus/typed.hpp>

namespace meshbus::test::saga_node {

struct OrderPlaced {
  static constexpr std::string_view event_name = "sagaproc.order.placed";
  static constexpr std::uint32_t event_version = 1;
  std::string order;
  int cents = 0;
  std::int64_t timeout_ms = 0;  ///< 0: the saga's default
  MSGPACK_DEFINE_MAP(order, cents, timeout_ms)
};
struct ReserveStock {
  static constexpr std::string_view event_name = "sagaproc.stock.reserve";
  static constexpr std::uint32_t event_version = 1;
  std::string order;
  MSGPACK_DEFINE_MAP(order)
};
struct StockReserved {
  static constexpr std::string_view event_name = "sagaproc.stock.reserved";
  static constexpr std::uint32_t event_version = 1;
  std::string order;
  MSGPACK_DEFINE_MAP(order)
};
struct ChargePayment {
  static constexpr std::string_view event_name = "sagaproc.payment.charge";
  static constexpr std::uint32_t event_version = 1;
  std::string order;
  int cents = 0;
  MSGPACK_DEFINE_MAP(order, cents)
};
struct PaymentResult {
  static constexpr std::string_view event_name = "sagaproc.payment.result";
  static constexpr std::uint32_t event_version = 1;
  std::string order;
  bool captured = false;
  std::string reason;
  MSGPACK_DEFINE_MAP(order, captured, reason)
};
struct ReleaseStock {
  static constexpr std::string_view event_name = "sagaproc.stock.release";
  static constexpr std::uint32_t event_version = 1;
  std::string order;
  std::string steps;  ///< the flow's steps when it was compensated
  MSGPACK_DEFINE_MAP(order, steps)
};

}  // namespace meshbus::test::saga_node
