// Parsing of fault plans (MESHBUS_FAULTS).
#include <charconv>

#include <fmt/format.h>

#include "lib/transport/fault_injector.hpp"
#include "meshbus/error.hpp"

namespace meshbus::transport {

fault_plan fault_plan::parse(std::string_view spec) {
  fault_plan plan;
  auto bad = [&](std::string_view item) {
    return error(errc::configuration,
                 fmt::format("MESHBUS_FAULTS item '{}' is not understood; use a comma-separated list of "
                             "drop=P, dup=P, reorder=P, delay=P (probabilities 0..1), max_delay_ms=N, seed=N, cut_at_ms=N, cut_for_ms=N",
                             item));
  };
  while (!spec.empty()) {
    const auto comma = spec.find(',');
    const auto item = spec.substr(0, comma);
    spec = comma == std::string_view::npos ? std::string_view{} : spec.substr(comma + 1);
    if (item.empty()) continue;
    const auto eq = item.find('=');
    if (eq == std::string_view::npos) throw bad(item);
    const auto key = item.substr(0, eq);
    const std::string value(item.substr(eq + 1));
    try {
      std::size_t used = 0;
      if (key == "seed" || key == "max_delay_ms" || key == "cut_at_ms" || key == "cut_for_ms") {
        const auto v = std::stoull(value, &used);
        if (used != value.size()) throw bad(item);
        const auto ms = std::chrono::milliseconds(v);
        if (key == "seed") {
          plan.seed = v;
        } else if (key == "max_delay_ms") {
          plan.max_delay = ms;
        } else if (key == "cut_at_ms") {
          plan.cut_at = ms;
        } else {
          plan.cut_for = ms;
        }
        continue;
      }
      const double p = std::stod(value, &used);
      if (used != value.size() || p < 0 || p > 1) throw bad(item);
      if (key == "drop") {
        plan.drop = p;
      } else if (key == "dup") {
        plan.duplicate = p;
      } else if (key == "reorder") {
        plan.reorder = p;
      } else if (key == "delay") {
        plan.delay = p;
      } else {
        throw bad(item);
      }
    } catch (const std::logic_error&) {
      throw bad(item);
    }
  }
  return plan;
}

}  // namespace meshbus::transport
