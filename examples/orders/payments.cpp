// payments: one instance of the payments service group. Charges and refunds are
// commands sent as events to the group, so each is handled by one live instance;
// when an instance dies, what it had not acknowledged goes to the others. A charge
// above the card limit is declined. Answers are events in the same flow (they inherit
// the command's correlation id by being published from its handler).
#include <atomic>

#include <fmt/format.h>

#include "demo.hpp"
#include "events.hpp"

namespace orders_demo {

int run_payments(const demo_config& cfg) {
  const console out(cfg.name, cfg.color, cfg.quiet);
  meshbus::Node node(node_options(cfg));
  meshbus::SubscribeOptions group;
  group.group = std::string(payments_group);
  std::atomic<int> charged{0};

  (void)node.subscribe<ChargePayment>(
      [&](const ChargePayment& charge, const meshbus::Event& e) {
        if (charge.total_cents > card_limit_cents) {
          const auto reason = fmt::format("over the card limit of {}", money(card_limit_cents));
          (void)node.publish(PaymentDeclined{charge.order_id, reason});
          out.print(flow_line(e.correlation_id(), charge.order_id,
                              fmt::format("declined {} for {}: {}", money(charge.total_cents, charge.currency),
                                          charge.customer, reason)));
          return;
        }
        const auto payment_id = fmt::format("{}-{:04}", cfg.name, ++charged);
        (void)node.publish(PaymentCaptured{charge.order_id, payment_id, charge.total_cents});
        out.print(flow_line(e.correlation_id(), charge.order_id,
                            fmt::format("captured {} from {} as {}", money(charge.total_cents, charge.currency),
                                        charge.customer, payment_id)));
      },
      group);
  (void)node.subscribe<RefundPayment>(
      [&](const RefundPayment& refund, const meshbus::Event& e) {
        out.print(flow_line(e.correlation_id(), refund.order_id,
                            fmt::format("refunded {} of payment {}", money(refund.total_cents), refund.payment_id)));
      },
      group);
  out.print(fmt::format("serving in group '{}'", payments_group));
  wait_for_stop();
  node.stop();  // hands back unacknowledged work, says goodbye
  return 0;
}

}  // namespace orders_demo
