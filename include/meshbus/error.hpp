/// @file
/// The exception meshbus throws for setup failures and wrong API use, and its codes.
/// Hot-path results are values (see PublishResult); background faults go to the
/// error handler, the counters in Stats, and the log.
#pragma once

#include <stdexcept>
#include <string>
#include <system_error>

namespace meshbus {

/// Error codes carried by meshbus::error.
enum class errc {
  invalid_argument = 1,  ///< a value the API cannot accept (message says which)
  invalid_topic,         ///< topic or pattern syntax
  stopped,               ///< the Node was stopped
  address_in_use,        ///< a fixed port is taken
  network,               ///< a socket could not be created, bound or configured
  configuration,         ///< an option or MESHBUS_* environment variable is invalid
  timeout,               ///< a bounded wait ran out
  message_too_large,     ///< an event exceeds Options::max_message_bytes
  // Request/reply failures (in the future or callback of a request):
  no_service,        ///< no live instance serves the service (fails at once)
  remote_failure,    ///< the service's handler threw; what() has its message
  request_rejected,  ///< the service can never handle this request (does not decode, invalid)
  peer_gone,         ///< the instance left before it replied
  bad_reply,         ///< the reply does not decode as the expected type
  // Background faults, reported to Options::on_error (never thrown):
  handler_failed,   ///< a handler threw
  malformed_input,  ///< network input was malformed or of another protocol version: dropped
  peer_overloaded,  ///< a peer's queue refused a message, or data went past a stalled subscriber
  data_loss,        ///< a sequence gap: events of a stream did not arrive
  group_conflict,   ///< a node subscribes a service group with other patterns than the group's
  // The durable log (Options::data_dir): thrown at setup (locked, not a log, newer
  // format, no access; the message names the file and what to do), reported in the
  // background (a full disk, a damaged record).
  storage,
  // The event store (<meshbus/event_store.hpp>):
  wrong_expected_version,  ///< an append found its stream at another version (nothing appended)
  not_enough_replicas,     ///< fewer than EventStoreOptions::replicas instances acknowledged an append
  not_owner,               ///< another instance took the stream over (a higher term): fenced
};

const std::error_category& error_category() noexcept;
std::error_code make_error_code(errc e) noexcept;

/// Thrown for setup failures and API misuse. what() says what to do about it.
class error : public std::system_error {
 public:
  error(errc code, const std::string& what) : std::system_error(make_error_code(code), what) {}
  errc code_value() const noexcept { return static_cast<errc>(code().value()); }
};

/// Thrown by a handler for an event that can never be handled (it does not decode,
/// fails validation, is of an unknown type or version): the event is dead-lettered
/// at once with what() as the reason, whatever the delivery mode, without retries.
/// meshbus's typed subscriptions throw it themselves.
class poison_event : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace meshbus

template <>
struct std::is_error_code_enum<meshbus::errc> : std::true_type {};
