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

// --- the Order aggregate (event-sourced in the orders service) -----------------------
// Stream "order-<order id>" in the orders instances' event stores, published on the
// topic "shop.order". Its first event is the OrderPlaced the storefront sent, kept as
// it was sent (a version 1 event stays version 1 in the log and is upcast on load).

struct StockReserved {
  static constexpr std::string_view event_name = "shop.order.stock-reserved";
  static constexpr std::uint32_t event_version = 1;
  std::string order_id;
  MSGPACK_DEFINE_MAP(order_id)
};

/// Final: nothing was reserved, nothing to undo.
struct OrderRejected {
  static constexpr std::string_view event_name = "shop.order.rejected";
  static constexpr std::uint32_t event_version = 1;
  std::string order_id;
  std::string reason;
  MSGPACK_DEFINE_MAP(order_id, reason)
};

/// A captured payment. A second one with another payment id is a duplicate charge
/// (a charge handled again after a crash): a refund of it becomes due.
struct PaymentRecorded {
  static constexpr std::string_view event_name = "shop.order.paid";
  static constexpr std::uint32_t event_version = 1;
  std::string order_id;
  std::string payment_id;
  std::int64_t total_cents = 0;
  MSGPACK_DEFINE_MAP(order_id, payment_id, total_cents)
};

/// The card was declined: the order is being cancelled (the stock is to be released).
struct PaymentRefused {
  static constexpr std::string_view event_name = "shop.order.payment-refused";
  static constexpr std::uint32_t event_version = 1;
  std::string order_id;
  std::string reason;
  MSGPACK_DEFINE_MAP(order_id, reason)
};

/// Final: shipped.
struct ShipmentRecorded {
  static constexpr std::string_view event_name = "shop.order.shipped";
  static constexpr std::uint32_t event_version = 1;
  std::string order_id;
  std::string tracking;
  MSGPACK_DEFINE_MAP(order_id, tracking)
};

/// No carrier: the order is being cancelled (refund, then release the stock).
struct ShipmentRefused {
  static constexpr std::string_view event_name = "shop.order.shipment-refused";
  static constexpr std::uint32_t event_version = 1;
  std::string order_id;
  std::string reason;
  MSGPACK_DEFINE_MAP(order_id, reason)
};

/// Compensations sent ("release stock", "refund <payment id>"); a cancelling order with
/// none left due is cancelled (final).
struct CompensationsSent {
  static constexpr std::string_view event_name = "shop.order.compensated";
  static constexpr std::uint32_t event_version = 1;
  std::string order_id;
  std::vector<std::string> sent;
  MSGPACK_DEFINE_MAP(order_id, sent)
};

/// An order as its events made it (the aggregate's state; MessagePack for snapshots).
struct Order {
  std::string status;  ///< placed, reserved, paid, completed, rejected, cancelling, cancelled
  OrderPlaced placed;
  std::string payment_id;
  std::string tracking;
  std::string reason;
  std::vector<std::string> due;   ///< compensations to send
  std::vector<std::string> sent;  ///< compensations sent
  MSGPACK_DEFINE_MAP(status, placed, payment_id, tracking, reason, due, sent)

  /// Nothing more will happen to it: shipped, rejected or cancelled, and nothing due.
  bool final() const {
    return due.empty() && (status == "completed" || status == "rejected" || status == "cancelled");
  }
};

// --- commands to the orders service (request/reply to "orders.command": any instance
// takes them and forwards each to its order's owner) ------------------------------------

/// An order placed at the storefront, as it was sent (type version and bytes).
struct PlaceOrder {
  static constexpr std::string_view event_name = "shop.orders.place";
  static constexpr std::uint32_t event_version = 1;
  std::string order_id;
  std::uint32_t placed_version = 0;
  std::vector<unsigned char> placed;  ///< the OrderPlaced payload
  MSGPACK_DEFINE_MAP(order_id, placed_version, placed)
};

/// What the payments service answered.
struct RecordPayment {
  static constexpr std::string_view event_name = "shop.orders.record-payment";
  static constexpr std::uint32_t event_version = 1;
  std::string order_id;
  bool captured = false;
  std::string payment_id;
  std::int64_t total_cents = 0;
  std::string reason;
  MSGPACK_DEFINE_MAP(order_id, captured, payment_id, total_cents, reason)
};

/// What shipping answered.
struct RecordShipment {
  static constexpr std::string_view event_name = "shop.orders.record-shipment";
  static constexpr std::uint32_t event_version = 1;
  std::string order_id;
  bool shipped = false;
  std::string tracking;
  std::string reason;
  MSGPACK_DEFINE_MAP(order_id, shipped, tracking, reason)
};

/// The reply to every command: the order's status and stream version after it.
struct OrderAck {
  static constexpr std::string_view event_name = "shop.orders.ack";
  static constexpr std::uint32_t event_version = 1;
  std::string order_id;
  std::string status;  ///< before the command
  MSGPACK_DEFINE_MAP(order_id, status)
};

// --- the read model "orders by status" (a projection on every orders instance) ------

struct OrderRow {
  std::uint64_t version = 0;  ///< of the last event applied
  Order order;                ///< as the events made it, applied in the read model's own order
  MSGPACK_DEFINE_MAP(version, order)
};

/// Query: the orders with their status (any instance answers from its read model).
struct OrdersByStatus {
  static constexpr std::string_view event_name = "shop.orders.by-status";
  static constexpr std::uint32_t event_version = 1;
  std::string status;  ///< empty: every order
  MSGPACK_DEFINE_MAP(status)
};

struct OrderList {
  static constexpr std::string_view event_name = "shop.orders.list";
  static constexpr std::uint32_t event_version = 1;
  std::map<std::string, OrderRow> orders;  ///< by order id
  std::uint64_t lag_events = 0;            ///< of the read model that answered
  MSGPACK_DEFINE_MAP(orders, lag_events)
};

/// To one orders instance ("shop.orders.audit.<instance name>"): what its store holds
/// of each order and what its read model says, for the final check.
struct AuditOrders {
  static constexpr std::string_view event_name = "shop.orders.audit";
  static constexpr std::uint32_t event_version = 1;
  std::vector<std::string> order_ids;
  MSGPACK_DEFINE_MAP(order_ids)
};

struct OrderAudit {
  std::vector<std::uint64_t> versions;   ///< of the stream's events, in order
  std::vector<std::string> event_ids;
  std::vector<std::string> types;
  std::uint32_t placed_version = 0;      ///< of its first event as stored
  std::string correlation_id;            ///< its flow
  Order state;                           ///< the aggregate as loaded here
  std::string load_error;
  bool in_read_model = false;
  OrderRow row;
  MSGPACK_DEFINE_MAP(versions, event_ids, types, placed_version, correlation_id, state, load_error, in_read_model, row)
};

struct AuditReport {
  static constexpr std::string_view event_name = "shop.orders.audit-report";
  static constexpr std::uint32_t event_version = 1;
  std::string instance;
  std::map<std::string, OrderAudit> orders;
  std::uint64_t read_model_lag = 0;
  std::string read_model_failure;
  std::uint64_t takeovers = 0, synced_in = 0, replicated_in = 0;
  MSGPACK_DEFINE_MAP(instance, orders, read_model_lag, read_model_failure, takeovers, synced_in, replicated_in)
};

/// Turns a version 1 OrderPlaced into the current one (process-wide).
void register_order_upcaster();

/// "129.90 EUR"
std::string money(std::int64_t cents, std::string_view currency = "EUR");
/// "mug x1, lamp x2"
std::string describe(const std::vector<LineItem>& items);

}  // namespace orders_demo
