// meshbus::error's category.
#include "meshbus/error.hpp"

namespace meshbus {
namespace {
class category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "meshbus"; }
  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::invalid_argument: return "invalid argument";
      case errc::invalid_topic: return "invalid topic or pattern";
      case errc::stopped: return "node stopped";
      case errc::address_in_use: return "address in use";
      case errc::network: return "network error";
      case errc::configuration: return "invalid configuration";
      case errc::timeout: return "timed out";
      case errc::message_too_large: return "message too large";
      case errc::no_service: return "no live instance of the service";
      case errc::remote_failure: return "the service's handler failed";
      case errc::request_rejected: return "request rejected";
      case errc::peer_gone: return "the instance left before replying";
      case errc::bad_reply: return "bad reply";
      case errc::handler_failed: return "handler failed";
      case errc::malformed_input: return "malformed input dropped";
      case errc::peer_overloaded: return "peer overloaded";
      case errc::data_loss: return "data loss";
      case errc::group_conflict: return "service group conflict";
      case errc::storage: return "durable log error";
      case errc::wrong_expected_version: return "wrong expected version";
      case errc::not_enough_replicas: return "not enough replicas";
      case errc::not_owner: return "not the owner";
    }
    return "unknown meshbus error";
  }
};
}  // namespace

const std::error_category& error_category() noexcept {
  static const category instance;
  return instance;
}

std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), error_category()}; }

}  // namespace meshbus
