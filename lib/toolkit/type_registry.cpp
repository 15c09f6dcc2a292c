// The registry of typed-event upcasters and validators: one per process, keyed by
// (type name, version), guarded by one mutex; decode_event() copies what it needs
// out under the lock and runs it outside, so an upcaster may decode in turn.
#include "meshbus/detail/type_registry.hpp"

#include <atomic>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include "meshbus/error.hpp"

namespace meshbus::detail {
namespace {

struct type_registry {
  std::mutex mu;
  /// (name, version) -> (the next version, the step to it)
  std::map<std::pair<std::string, std::uint32_t>, std::pair<std::uint32_t, upcaster>, std::less<>> upcasters;
  std::map<std::pair<std::string, std::uint32_t>, std::vector<validator>, std::less<>> validators;
  std::atomic<bool> any_validator{false};  ///< lets decodes skip the lock while there are none

  static type_registry& instance() {
    static type_registry registry;
    return registry;
  }
};

std::string str(std::string_view s) { return std::string(s); }

}  // namespace

void add_upcaster(std::string_view from_name, std::uint32_t from, std::string_view to_name, std::uint32_t to,
                  upcaster step) {
  if (from_name != to_name || from >= to) {
    throw error(errc::invalid_argument,
                "register_upcaster: From and To must be two versions of one event name, From the older");
  }
  auto& registry = type_registry::instance();
  std::lock_guard lock(registry.mu);
  registry.upcasters[{str(from_name), from}] = {to, std::move(step)};
}

void add_validator(std::string_view name, std::uint32_t version, validator check) {
  auto& registry = type_registry::instance();
  std::lock_guard lock(registry.mu);
  registry.validators[{str(name), version}].push_back(std::move(check));
  registry.any_validator.store(true, std::memory_order_release);
}

std::span<const std::byte> upcast(std::string_view name, std::uint32_t current, std::string_view type_name,
                                  std::uint32_t version, std::span<const std::byte> bytes, std::string& storage) {
  if (type_name != name) {
    throw poison_event(type_name.empty()
                           ? "an event without a type where " + str(name) + " was expected"
                           : "an event of type " + str(type_name) + " where " + str(name) + " was expected");
  }
  if (version > current) {
    throw poison_event("version " + std::to_string(version) + " of " + str(name) + " is newer than this program knows (" +
                       std::to_string(current) + ")");
  }
  auto& registry = type_registry::instance();
  while (version < current) {
    upcaster step;
    std::uint32_t next = 0;
    {
      std::lock_guard lock(registry.mu);
      const auto it = registry.upcasters.find(std::pair{str(name), version});
      if (it == registry.upcasters.end()) {
        throw poison_event("no upcaster from version " + std::to_string(version) + " of " + str(name) +
                           " (this program knows version " + std::to_string(current) + ")");
      }
      next = it->second.first;
      step = it->second.second;
    }
    storage = step(bytes);
    bytes = std::as_bytes(std::span(storage.data(), storage.size()));
    version = next;
  }
  return bytes;
}

void validate(std::string_view name, std::uint32_t version, const void* value) {
  auto& registry = type_registry::instance();
  if (!registry.any_validator.load(std::memory_order_acquire)) return;
  std::vector<validator> validators;
  {
    std::lock_guard lock(registry.mu);
    const auto it = registry.validators.find(std::pair{str(name), version});
    if (it != registry.validators.end()) validators = it->second;
  }
  for (const auto& check : validators) {
    if (auto why = check(value); !why.empty()) throw poison_event(str(name) + " is invalid: " + why);
  }
}

}  // namespace meshbus::detail
