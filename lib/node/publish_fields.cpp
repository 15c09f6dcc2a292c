// PublishOptions to wire fields, with the limits checked and the handled event's
// flow inherited; see publish_fields.hpp.
#include "lib/node/publish_fields.hpp"

#include <fmt/format.h>

#include "lib/node/dispatcher.hpp"
#include "meshbus/error.hpp"

namespace meshbus::detail {
namespace {

void check(std::string_view field, std::string_view value, std::size_t max) {
  if (value.size() > max) {
    throw error(errc::invalid_argument,
                fmt::format("PublishOptions::{} is {} bytes; at most {} are allowed", field, value.size(), max));
  }
}

}  // namespace

publish_fields::publish_fields(const PublishOptions* po) {
  if (const Event* cause = current_event; cause != nullptr) {
    const bool has_correlation = po != nullptr && !po->correlation_id.empty();
    const bool has_causation = po != nullptr && !po->causation_id.empty();
    if (!has_correlation || !has_causation) {
      if (po != nullptr) inherited_ = *po;
      causation_ = cause->id();
      correlation_ = cause->correlation_id().empty() ? causation_ : std::string(cause->correlation_id());
      if (!has_correlation) inherited_.correlation_id = correlation_;
      if (!has_causation) inherited_.causation_id = causation_;
      fill(inherited_);
      return;
    }
  }
  if (po != nullptr) fill(*po);
}

void publish_fields::fill(const PublishOptions& po) {
  check("event_id", po.event_id, wire::max_short_field);
  check("type_name", po.type_name, wire::max_short_field);
  check("correlation_id", po.correlation_id, wire::max_short_field);
  check("causation_id", po.causation_id, wire::max_short_field);
  check("content_type", po.content_type, wire::max_short_field);
  if (po.headers.size() > wire::max_headers) {
    throw error(errc::invalid_argument,
                fmt::format("{} headers given; at most {} are allowed", po.headers.size(), wire::max_headers));
  }
  auto& f = fields_;
  if (po.timestamp) {
    f.flags |= wire::event_flag::timestamp;
    f.timestamp_ns =
        std::chrono::duration_cast<std::chrono::nanoseconds>(po.timestamp->time_since_epoch()).count();
  }
  if (!po.event_id.empty()) f.flags |= wire::event_flag::event_id;
  if (!po.type_name.empty()) f.flags |= wire::event_flag::type;
  if (!po.correlation_id.empty()) f.flags |= wire::event_flag::correlation_id;
  if (!po.causation_id.empty()) f.flags |= wire::event_flag::causation_id;
  if (!po.content_type.empty()) f.flags |= wire::event_flag::content_type;
  f.event_id = po.event_id;
  f.type_name = po.type_name;
  f.type_version = po.type_version;
  f.correlation_id = po.correlation_id;
  f.causation_id = po.causation_id;
  f.content_type = po.content_type;
  if (po.headers.empty()) return;
  f.flags |= wire::event_flag::headers;
  headers_.reserve(po.headers.size());
  for (const auto& h : po.headers) {
    check("headers name", h.name, wire::max_short_field);
    check("headers value", h.value, wire::max_header_value);
    headers_.push_back({h.name, h.value});
  }
  f.headers = headers_;
}

}  // namespace meshbus::detail
