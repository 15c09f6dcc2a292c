// The optional fields of one publish() call, checked against the wire's limits and
// turned into wire::event_fields. Inside a handler, what is published belongs to the
// same flow: it inherits the handled event's correlation id (or takes its id as one)
// and names it as its cause. Owns every string the fields view. Any thread.
#pragma once

#include <string>
#include <vector>

#include "lib/wire/envelope.hpp"
#include "meshbus/node.hpp"

namespace meshbus::detail {

class publish_fields {
 public:
  /// Throws meshbus::error (invalid_argument) for a field over its limit.
  explicit publish_fields(const PublishOptions* po);
  publish_fields(const publish_fields&) = delete;
  publish_fields& operator=(const publish_fields&) = delete;

  /// The fields, or null when the event has none (the common, cheapest case).
  const wire::event_fields* get() const noexcept { return fields_.flags != 0 ? &fields_ : nullptr; }

 private:
  void fill(const PublishOptions& po);

  wire::event_fields fields_;
  std::vector<wire::header_view> headers_;
  PublishOptions inherited_;  ///< the caller's, with the handled event's flow added
  std::string correlation_;
  std::string causation_;
};

}  // namespace meshbus::detail
