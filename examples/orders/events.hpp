// The contract between the services of the order-flow demo: typed events (facts),
// commands (sent as events to a service group, or by request/reply) and queries.
// Every process includes this one header, as services sharing a schema package would.
#pragma once

#include <meshbus/typed.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace orders_demo {

struct LineItem {
  std::string sku;
  int quantity = 0;
  MSGPACK_DEFINE_MAP(sku, quantity)
};

// --- facts -------------------------------------------------------------------------

/// An order as the legacy storefront still sends it: the total in euros as a float.
struct OrderPlacedV1 {
  static constexpr std::string_view event_name = "shop.order.placed";
  static constexpr std::uint32_t event_version = 1;
  std::string order_id;
  std::string customer;
  double total = 0;
  std::vector<LineItem> items;
  std::string country;
  MSGPACK_DEFINE_MAP(order_id, customer, total, items, country)
};

/// The current version: integer cents and an explicit currency. Version 1 events are
/// upcast to it (see register_order_upcaster).
struct OrderPlaced {
  static constexpr std::string_view event_name = "shop.order.placed";
  static constexpr std::uint32_t event_version = 2;
  std::string order_id;
  std::string customer;
  std::int64_t total_cents = 0;
  std::string currency;
  std::vector<LineItem> items;
  std::string country;
  MSGPACK_DEFINE_MAP(order_id, customer, total_cents, currency, items, country)
};

struct PaymentCaptured {
  static constexpr std::string_view event_name = "shop.payment.captured";
  static constexpr std::uint32_t event_version = 1;
  std::string order_id;
  std::string payment_id;
  std::int64_t total_cents = 0;
  MSGPACK_DEFINE_MAP(order_id, payment_id, total_cents)
};

struct PaymentDeclined {
  static constexpr std::string_view event_name = "shop.payment.declined";
  static constexpr std::uint32_t event_version = 1;
  std::string order_id;
  std::string reason;
  MSGPACK_DEFINE_MAP(order_id, reason)
};

struct OrderShipped {
  static constexpr std::string_view event_name = "shop.shipping.shipped";
  static constexpr std::uint32_t event_version = 1;
  std::string order_id;
  std::string tracking;
  MSGPACK_DEFINE_MAP(order_id, tracking)
};

struct ShipmentFailed {
  static constexpr std::string_view event_name = "shop.shipping.failed";
  static constexpr std::uint32_t event_version = 1;
  std::string order_id;
  std::string reason;
  MSGPACK_DEFINE_MAP(order_id, reason)
};

// --- commands ----------------------------------------------------------------------

/// Request/reply to the inventory: reserve every item or nothing.
struct ReserveStock {
  static constexpr std::string_view event_name = "shop.inventory.reserve";
  static constexpr std::uint32_t event_version = 1;
  std::string order_id;
  std::vector<LineItem> items;
  MSGPACK_DEFINE_MAP(order_id, items)
};

struct StockReservation {
  static constexpr std::string_view event_name = "shop.inventory.reservation";
  static constexpr std::uint32_t event_version = 1;
  std::string order_id;
  bool reserved = false;
  std::string reason;  ///< why not
  MSGPACK_DEFINE_MAP(order_id, reserved, reason)
};

/// Event command to the inventory (a compensation).
struct ReleaseStock {
  static constexpr std::string_view event_name = "shop.inventory.release";
  static constexpr std::uint32_t event_version = 1;
  std::string order_id;
  std::vector<LineItem> items;
  MSGPACK_DEFINE_MAP(order_id, items)
};

/// Event command to the payments service group: one instance handles each.
struct ChargePayment {
  static constexpr std::string_view event_name = "shop.payment.charge";
  static constexpr std::uint32_t event_version = 1;
  std::string order_id;
  std::string customer;
  std::int64_t total_cents = 0;
  std::string currency;
  MSGPACK_DEFINE_MAP(order_id, customer, total_cents, currency)
};

/// Event command to the payments service group (a compensation).
struct RefundPayment {
  static constexpr std::string_view event_name = "shop.payment.refund";
  static constexpr std::uint32_t event_version = 1;
  std::string order_id;
  std::string payment_id;
  std::int64_t total_cents = 0;
  MSGPACK_DEFINE_MAP(order_id, payment_id, total_cents)
};

/// Event command to shipping.
struct ShipOrder {
  static constexpr std::string_view event_name = "shop.shipping.ship";
  static constexpr std::uint32_t event_version = 1;
  std::string order_id;
  MSGPACK_DEFINE_MAP(order_id)
};

// --- queries (request/reply) ---------------------------------------------------------

/// To the orders service: what shipping needs to know about an order.
struct GetOrder {
  static constexpr std::string_view event_name = "shop.orders.get";
  static constexpr std::uint32_t event_version = 1;
  std::string order_id;
  MSGPACK_DEFINE_MAP(order_id)
};

struct OrderDetails {
  static constexpr std::string_view event_name = "shop.orders.details";
  static constexpr std::uint32_t event_version = 1;
  std::string order_id;
  bool found = false;
  std::string customer;
  std::string country;
  std::vector<LineItem> items;
  MSGPACK_DEFINE_MAP(order_id, found, customer, country, items)
};

/// To the inventory: its stock, for the final consistency check.
struct GetStockLevels {
  static constexpr std::string_view event_name = "shop.inventory.levels";
  static constexpr std::uint32_t event_version = 1;
  bool with_initial = true;
  MSGPACK_DEFINE_MAP(with_initial)
};

struct StockLevels {
  static constexpr std::string_view event_name = "shop.inventory.stock";
  static constexpr std::uint32_t event_version = 1;
  std::map<std::string, int> initial;
  std::map<std::string, int> available;
  MSGPACK_DEFINE_MAP(initial, available)
};

/// Turns a version 1 OrderPlaced into the current one (process-wide).
void register_order_upcaster();

/// "129.90 EUR"
std::string money(std::int64_t cents, std::string_view currency = "EUR");
/// "mug x1, lamp x2"
std::string describe(const std::vector<LineItem>& items);

}  // namespace orders_demo
