// orders: one instance of the orders service. Orders are event-sourced aggregates
// (meshbus::Aggregate<Order>, streams "order-<id>") in the instances' event stores,
// which replicate to each other (replicas = 1): each order has one owner among the
// live instances, and a command for it — from any instance — is executed there.
//
// The write side: the facts other services publish (an order placed, a payment
// captured or declined, a parcel shipped or not) are taken by one instance of the
// group "orders" and sent as commands to the order's owner. The process manager: the
// owner follows its store and drives each order it owns to its next step — reserve
// stock, have payments charge it, have shipping ship it, send the compensations due —
// again after a while when no answer came, and for the orders it took over from an
// instance that died. The read side: the projection "orders by status", answered by
// query, and an audit of what this instance holds for the final check.
#include <algorithm>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <fmt/format.h>

#include <meshbus/aggregate.hpp>
#include <meshbus/projection.hpp>

#include "demo.hpp"
#include "events.hpp"

namespace orders_demo {
namespace {

using namespace std::chrono_literals;
using meshbus::Changes;

constexpr std::string_view stream_prefix = "order-";

// --- how each event changes an order (the aggregate and the read model share them) ---

void remove_one(std::vector<std::string>& list, const std::string& item) {
  if (const auto it = std::find(list.begin(), list.end(), item); it != list.end()) list.erase(it);
}

struct transitions {
  static void placed(Order& o, const OrderPlaced& e) {
    o.status = "placed";
    o.placed = e;
  }
  static void reserved(Order& o, const StockReserved&) { o.status = "reserved"; }
  static void rejected(Order& o, const OrderRejected& e) {
    o.status = "rejected";
    o.reason = e.reason;
  }
  static void paid(Order& o, const PaymentRecorded& e) {
    if (o.status == "reserved" && o.payment_id.empty()) {
      o.status = "paid";
      o.payment_id = e.payment_id;
    } else {
      o.due.push_back("refund " + e.payment_id);  // a duplicate charge
    }
  }
  static void payment_refused(Order& o, const PaymentRefused& e) {
    o.status = "cancelling";
    o.reason = "payment declined: " + e.reason;
    o.due.emplace_back("release stock");
  }
  static void shipped(Order& o, const ShipmentRecorded& e) {
    o.status = "completed";
    o.tracking = e.tracking;
  }
  static void shipment_refused(Order& o, const ShipmentRefused& e) {
    o.status = "cancelling";
    o.reason = "shipment failed: " + e.reason;
    o.due.push_back("refund " + o.payment_id);
    o.due.emplace_back("release stock");
  }
  static void compensated(Order& o, const CompensationsSent& e) {
    for (const auto& s : e.sent) {
      remove_one(o.due, s);
      o.sent.push_back(s);
    }
    if (o.status == "cancelling" && o.due.empty()) o.status = "cancelled";
  }
};

template <typename Target>
void declare_transitions(Target& t) {
  t.template on_event<OrderPlaced>(&transitions::placed);
  t.template on_event<StockReserved>(&transitions::reserved);
  t.template on_event<OrderRejected>(&transitions::rejected);
  t.template on_event<PaymentRecorded>(&transitions::paid);
  t.template on_event<PaymentRefused>(&transitions::payment_refused);
  t.template on_event<ShipmentRecorded>(&transitions::shipped);
  t.template on_event<ShipmentRefused>(&transitions::shipment_refused);
  t.template on_event<CompensationsSent>(&transitions::compensated);
}

struct aggregate_target {
  meshbus::Aggregate<Order>& orders;
  template <typename E>
  void on_event(void (*fn)(Order&, const E&)) {
    orders.apply<E>(fn);
  }
};

struct read_model_target {
  meshbus::Projection<OrderRow>& view;
  template <typename E>
  void on_event(void (*fn)(Order&, const E&)) {
    view.on<E>([fn](const E& e, const meshbus::RecordedEvent& r, meshbus::Projection<OrderRow>::Documents& docs) {
      const auto id = r.stream.substr(stream_prefix.size());
      auto row = docs.get(id).value_or(OrderRow{});
      fn(row.order, e);
      row.version = r.version;
      docs.put(id, row);
    });
  }
};

// --- the write side -----------------------------------------------------------------

/// Sends a command to the order's owner (through any instance) and waits for its
/// answer; while the owner is being taken over (a killed instance) or is still
/// starting, tries again for up to 30 s. Throws when that fails: the fact's handler
/// then fails and the fact is delivered again.
void send_command(meshbus::Node& node, const auto& command) {
  using Cmd = std::decay_t<decltype(command)>;
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  for (;;) {
    try {
      (void)node.request<Cmd, OrderAck>("orders.command", command, {.timeout = 10s}).get();
      return;
    } catch (const meshbus::error& e) {
      if (std::chrono::steady_clock::now() > deadline) throw;
      std::this_thread::sleep_for(200ms);
    }
  }
}

void serve_commands(meshbus::Aggregate<Order>& orders) {
  const auto id_of = [](const auto& c) { return c.order_id; };
  orders.handle<PlaceOrder, OrderAck>(id_of, [](const PlaceOrder& c, const Order& o, Changes& out) {
    if (!o.status.empty()) return OrderAck{c.order_id, o.status};  // placed already: the fact came again
    meshbus::NewEvent e;
    e.type_name = std::string(OrderPlaced::event_name);
    e.type_version = c.placed_version;
    e.payload.assign(c.placed.begin(), c.placed.end());
    // Kept as sent, so it must decode now (upcast if old): what does not is refused.
    const auto placed = meshbus::decode_event<OrderPlaced>(
        std::as_bytes(std::span(e.payload.data(), e.payload.size())), e.type_name, e.type_version);
    if (placed.order_id != c.order_id) throw meshbus::poison_event("the order's id is not the command's");
    out.emit(std::move(e));
    return OrderAck{c.order_id, "placed"};
  });
  orders.handle<RecordPayment, OrderAck>(id_of, [](const RecordPayment& c, const Order& o, Changes& out) {
    const auto known = c.payment_id == o.payment_id ||
                       std::find(o.due.begin(), o.due.end(), "refund " + c.payment_id) != o.due.end() ||
                       std::find(o.sent.begin(), o.sent.end(), "refund " + c.payment_id) != o.sent.end();
    if (c.captured && !known && !o.status.empty() && o.status != "placed" && o.status != "rejected") {
      out.emit(PaymentRecorded{c.order_id, c.payment_id, c.total_cents});
    } else if (!c.captured && o.status == "reserved") {
      out.emit(PaymentRefused{c.order_id, c.reason});
    }
    return OrderAck{c.order_id, o.status};
  });
  orders.handle<RecordShipment, OrderAck>(id_of, [](const RecordShipment& c, const Order& o, Changes& out) {
    if (o.status == "paid") {
      if (c.shipped) {
        out.emit(ShipmentRecorded{c.order_id, c.tracking});
      } else {
        out.emit(ShipmentRefused{c.order_id, c.reason});
      }
    }
    return OrderAck{c.order_id, o.status};
  });
  // A query on the owner (no events): where shipping sends the parcel.
  orders.handle<GetOrder, OrderDetails>([](const GetOrder& q) { return q.order_id; },
                                        [](const GetOrder& q, const Order& o, Changes&) {
                                          OrderDetails d;
                                          d.order_id = q.order_id;
                                          d.found = !o.status.empty();
                                          d.customer = o.placed.customer;
                                          d.country = o.placed.country;
                                          d.items = o.placed.items;
                                          return d;
                                        });
}

/// The facts of the other services, taken by one instance of the group "orders" each
/// and turned into commands.
std::vector<meshbus::Subscription> take_facts(meshbus::Node& node, const console& out) {
  meshbus::SubscribeOptions group;
  group.group = "orders";
  std::vector<meshbus::Subscription> subs;
  // Raw, to keep the order as the storefront sent it (a version 1 event stays one).
  subs.push_back(node.subscribe(
      OrderPlaced::event_name,
      [&node, &out](const meshbus::Event& e) {
        const auto placed = meshbus::decode_event<OrderPlaced>(e.payload(), e.type_name(), e.type_version());
        PlaceOrder c;
        c.order_id = placed.order_id;
        c.placed_version = e.type_version();
        const auto* p = reinterpret_cast<const unsigned char*>(e.payload().data());
        c.placed.assign(p, p + e.payload().size());
        send_command(node, c);
        out.print(flow_line(e.correlation_id(), placed.order_id,
                            e.type_version() == OrderPlaced::event_version
                                ? fmt::format("order taken: {} for {}", describe(placed.items), money(placed.total_cents))
                                : fmt::format("order taken: {} for {} (upcast from v{}; kept as sent)",
                                              describe(placed.items), money(placed.total_cents), e.type_version())));
      },
      group));
  subs.push_back(node.subscribe<PaymentCaptured>(
      [&node](const PaymentCaptured& p) {
        send_command(node, RecordPayment{p.order_id, true, p.payment_id, p.total_cents, ""});
      },
      group));
  subs.push_back(node.subscribe<PaymentDeclined>(
      [&node](const PaymentDeclined& p) { send_command(node, RecordPayment{p.order_id, false, "", 0, p.reason}); },
      group));
  subs.push_back(node.subscribe<OrderShipped>(
      [&node](const OrderShipped& s) { send_command(node, RecordShipment{s.order_id, true, s.tracking, ""}); },
      group));
  subs.push_back(node.subscribe<ShipmentFailed>(
      [&node](const ShipmentFailed& s) { send_command(node, RecordShipment{s.order_id, false, "", s.reason}); },
      group));
  return subs;
}

// --- the process manager --------------------------------------------------------------

/// Drives the orders this instance owns: a few worker threads take order ids (one
/// order on one thread at a time); a follower kicks the orders whose streams got an
/// event here; a sweep kicks every unfinished order it owns that has not moved for a
/// while (no answer came, or it was taken over from an instance that died).
class process_manager {
 public:
  process_manager(meshbus::Node& node, meshbus::EventStore& store, meshbus::Aggregate<Order>& orders,
                  meshbus::Projection<OrderRow>& view, const console& out)
      : node_(node), store_(store), orders_(orders), view_(view), out_(out) {}

  ~process_manager() { stop(); }

  void start() {
    for (int i = 0; i < 4; ++i) threads_.emplace_back([this] { work(); });
    threads_.emplace_back([this] { follow(); });
    threads_.emplace_back([this] { sweep(); });
  }

  void stop() {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }

 private:
  static constexpr auto again_after = 5s;  // an answer not come by then: the step is taken again

  void kick(const std::string& id) {
    {
      std::lock_guard lock(mu_);
      if (queued_.contains(id)) return;
      queued_.insert(id);
      queue_.push_back(id);
    }
    cv_.notify_one();
  }

  void work() {
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] {
        return stopping_ || std::any_of(queue_.begin(), queue_.end(), [&](const auto& id) { return !busy_.contains(id); });
      });
      if (stopping_) return;
      const auto it = std::find_if(queue_.begin(), queue_.end(), [&](const auto& id) { return !busy_.contains(id); });
      const auto id = *it;
      queue_.erase(it);
      queued_.erase(id);
      busy_.insert(id);
      lock.unlock();
      try {
        step(id);
      } catch (const std::exception& e) {
        out_.error(fmt::format("order {}: {} (tried again later)", id, e.what()));
      }
      lock.lock();
      busy_.erase(id);
      cv_.notify_all();
    }
  }

  bool stopping() {
    std::lock_guard lock(mu_);
    return stopping_;
  }

  void follow() {
    auto position = store_.last_position();
    while (!stopping()) {
      store_.wait_past(position, 200ms);
      for (const auto& e : store_.read_all(position + 1, 1000)) {
        position = e.position;
        if (e.stream.starts_with(stream_prefix) && store_.owner_of(e.stream) == node_.id()) {
          kick(e.stream.substr(stream_prefix.size()));
        }
      }
    }
  }

  void sweep() {
    while (!stopping()) {
      for (int i = 0; i < 10 && !stopping(); ++i) std::this_thread::sleep_for(100ms);
      for (const auto& [id, row] : view_.list()) {
        if (row.order.final()) continue;
        if (store_.owner_of(orders_.stream_of(id)) == node_.id()) kick(id);
      }
    }
  }

  /// Takes the order's next step if it is this instance's and was not just taken.
  void step(const std::string& id) {
    if (store_.owner_of(orders_.stream_of(id)) != node_.id()) return;
    const auto loaded = orders_.load(id);
    const auto& o = loaded.state;
    if (o.status.empty() || (o.final() && o.due.empty())) return;
    {
      std::lock_guard lock(mu_);
      auto& last = driven_[id];
      const auto now = std::chrono::steady_clock::now();
      if (last.first == loaded.version && now - last.second < again_after) return;
      last = {loaded.version, now};
    }
    const auto& p = o.placed;
    const auto say = [&](std::string_view text) { out_.print(flow_line(flow_of(id), id, text)); };
    if (!o.due.empty()) {
      for (const auto& d : o.due) {
        if (d == "release stock") {
          (void)node_.publish(ReleaseStock{id, p.items}, options(id));
        } else {
          (void)node_.publish(RefundPayment{id, d.substr(7), p.total_cents}, options(id));
        }
      }
      // Recorded as sent once the receivers acknowledged them (else: again later).
      if (!node_.flush(5s)) return;
      (void)orders_.execute(id, [&](const Order& now, Changes& out) {
        std::vector<std::string> sent;  // what was sent and is still due
        for (const auto& d : o.due) {
          if (std::find(now.due.begin(), now.due.end(), d) != now.due.end()) sent.push_back(d);
        }
        if (!sent.empty()) out.emit(CompensationsSent{id, sent});
      });
      say(fmt::format("compensations sent: {}", fmt::join(o.due, ", ")));
      return;
    }
    if (o.status == "placed") {
      const auto r = node_.request<ReserveStock, StockReservation>(ReserveStock{id, p.items}, request_options(id)).get();
      (void)orders_.execute(id, [&](const Order& now, Changes& out) {
        if (now.status != "placed") return;
        if (r.reserved) {
          out.emit(StockReserved{id});
        } else {
          out.emit(OrderRejected{id, "out of stock: " + r.reason});
        }
      });
      say(r.reserved ? "stock reserved" : "rejected: out of stock: " + r.reason);
    } else if (o.status == "reserved") {
      (void)node_.publish(ChargePayment{id, p.customer, p.total_cents, p.currency}, options(id));
      say("payment requested");
    } else if (o.status == "paid") {
      (void)node_.publish(ShipOrder{id}, options(id));
      say(fmt::format("paid ({}); shipment requested", o.payment_id));
    }
  }

  /// The order's flow: the correlation id its first event was recorded with. The
  /// string stays where it is (the options below keep views of it).
  const std::string& flow_of(const std::string& id) {
    {
      std::lock_guard lock(mu_);
      if (const auto it = flows_.find(id); it != flows_.end()) return it->second;
    }
    const auto first = store_.read(orders_.stream_of(id), 1, 1);
    auto flow = first.empty() ? std::string() : first.front().correlation_id;
    std::lock_guard lock(mu_);
    return flows_.try_emplace(id, std::move(flow)).first->second;
  }
  meshbus::PublishOptions options(const std::string& id) {
    meshbus::PublishOptions po;
    po.correlation_id = flow_of(id);
    return po;
  }
  meshbus::RequestOptions request_options(const std::string& id) {
    meshbus::RequestOptions ro;
    ro.timeout = 5s;
    ro.correlation_id = flow_of(id);
    return ro;
  }

  meshbus::Node& node_;
  meshbus::EventStore& store_;
  meshbus::Aggregate<Order>& orders_;
  meshbus::Projection<OrderRow>& view_;
  const console& out_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::deque<std::string> queue_;
  std::set<std::string> queued_, busy_;
  std::map<std::string, std::pair<std::uint64_t, std::chrono::steady_clock::time_point>> driven_;
  std::map<std::string, std::string> flows_;
  std::vector<std::thread> threads_;
};

// --- the read side and the audit ----------------------------------------------------------

AuditReport audit(const demo_config& cfg, meshbus::EventStore& store, meshbus::Aggregate<Order>& orders,
                  meshbus::Projection<OrderRow>& view, const AuditOrders& q) {
  (void)view.wait_caught_up(5s);
  AuditReport r;
  r.instance = cfg.name;
  const auto ps = view.stats();
  r.read_model_lag = ps.lag_events;
  r.read_model_failure = ps.failure;
  const auto es = store.stats();
  r.takeovers = es.takeovers;
  r.synced_in = es.synced_in;
  r.replicated_in = es.replicated_in;
  for (const auto& id : q.order_ids) {
    auto& a = r.orders[id];
    for (const auto& e : store.read(orders.stream_of(id))) {
      a.versions.push_back(e.version);
      a.event_ids.push_back(e.event_id);
      a.types.push_back(e.type_name);
      if (e.version == 1) {
        a.placed_version = e.type_version;
        a.correlation_id = e.correlation_id;
      }
    }
    try {
      a.state = orders.load(id).state;
    } catch (const std::exception& e) {
      a.load_error = e.what();
    }
    if (const auto row = view.get(id)) {
      a.in_read_model = true;
      a.row = *row;
    }
  }
  return r;
}

}  // namespace

int run_orders(const demo_config& cfg) {
  const console out(cfg.name, cfg.color, cfg.quiet);
  register_order_upcaster();
  auto options = node_options(cfg);
  options.data_dir = cfg.data_dir;
  meshbus::Node node(options);
  // The group's patterns first, all at once, before the others hear of this node: a
  // member announcing only some of them would be reported as a group conflict.
  const auto subs = take_facts(node, out);
  meshbus::EventStoreOptions so;
  so.service = "orders";
  so.replicas = 1;
  so.topic_prefix = "shop";  // the orders' events are published on "shop.order"
  meshbus::EventStore store(node, so);
  meshbus::Aggregate<Order> orders(store, "order", {.snapshot_every = 8});
  aggregate_target at{orders};
  declare_transitions(at);
  meshbus::Projection<OrderRow> view(store, "orders-by-status", {.categories = {"order"}});
  read_model_target vt{view};
  declare_transitions(vt);
  (void)view.on_query<OrdersByStatus, OrderList>([&view](const OrdersByStatus& q, const auto& docs) {
    OrderList list;
    for (auto& [id, row] : docs.list()) {
      if (q.status.empty() || row.order.status == q.status) list.orders.emplace(id, std::move(row));
    }
    list.lag_events = view.stats().lag_events;
    return list;
  });
  (void)node.serve<AuditOrders, AuditReport>(
      "shop.orders.audit." + cfg.name, [&](const AuditOrders& q) { return audit(cfg, store, orders, view, q); });
  view.start();
  serve_commands(orders);
  process_manager manager(node, store, orders, view, out);
  manager.start();
  out.print(fmt::format("instance {} of the orders service: {} orders in its store, serving commands and queries",
                        node.id().short_string(), view.list().size()));
  wait_for_stop();
  manager.stop();
  for (const auto s : subs) node.unsubscribe(s);
  node.stop();
  return 0;
}

}  // namespace orders_demo
