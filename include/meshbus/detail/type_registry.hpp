/// @file
/// The process-wide upcasters and validators of typed events, by type name and
/// version (lib/toolkit/type_registry.cpp). Internal to <meshbus/typed.hpp>, which
/// registers them with register_upcaster() and register_validator() and runs them
/// in decode_event(); nothing here knows MessagePack.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>

namespace meshbus::detail {

/// Turns the bytes of one version of a type into the bytes of its next version.
using upcaster = std::function<std::string(std::span<const std::byte>)>;
/// Checks a decoded value (a pointer to the struct of exactly the registered
/// version): "" when it is valid, else why not.
using validator = std::function<std::string(const void*)>;

/// Registers the step from version `from` of `from_name` to version `to` of
/// `to_name` (replacing an earlier one). Throws error(invalid_argument) unless the
/// names are equal and from < to.
void add_upcaster(std::string_view from_name, std::uint32_t from, std::string_view to_name, std::uint32_t to,
                  upcaster step);
/// Adds a validator for version `version` of `name`.
void add_validator(std::string_view name, std::uint32_t version, validator check);

/// The bytes of an event of (`type_name`, `version`) as version `current` of
/// `name`: `bytes` itself when they already are, else a view of `storage`, which
/// receives what the chain of upcasters made. Throws poison_event when the type
/// is another, the version newer than `current`, or a step of the chain missing.
std::span<const std::byte> upcast(std::string_view name, std::uint32_t current, std::string_view type_name,
                                  std::uint32_t version, std::span<const std::byte> bytes, std::string& storage);

/// Runs the validators of (`name`, `version`) on `value`; throws poison_event with
/// the first reason given. Costs one atomic load while no validator exists.
void validate(std::string_view name, std::uint32_t version, const void* value);

}  // namespace meshbus::detail
