/// @file
/// Typed events: plain structs with MSGPACK_DEFINE_MAP, a name and a version.
///
///     #include <meshbus/typed.hpp>
///
///     struct OrderPlaced {
///       static constexpr std::string_view event_name = "orders.placed";
///       static constexpr std::uint32_t event_version = 2;
///       std::string order_id;
///       double amount = 0;
///       std::optional<std::string> coupon;   // optional fields may be absent
///       MSGPACK_DEFINE_MAP(order_id, amount, coupon)   // no ';': it defines functions
///     };
///
///     node.publish(OrderPlaced{"o-1", 42.0, {}});
///     node.subscribe<OrderPlaced>([](const OrderPlaced& o, const meshbus::Event& e) { ... });
///     node.serve<GetStock, StockLevel>([](const GetStock& q) { return StockLevel{...}; });
///     StockLevel level = node.request<GetStock, StockLevel>(GetStock{"apple"}).get();
///
/// The payload is a MessagePack map (field names as keys), content type
/// "application/msgpack" (implied by the type name: not carried per event); the
/// envelope carries the type name and version. Decoding is
/// bounded and strict: every field of the struct that is not a std::optional must be
/// present with a value of its type. Older versions are turned into the current one
/// by upcasters; events of another type, of a newer version, that do not decode or
/// that fail validation are dead-lettered with a reason naming the problem, and never
/// reach the handler half-filled. Upcasters and validators are registered per type,
/// for the whole process.
///
/// This is the only public header that includes msgpack (with MSGPACK_NO_BOOST).
/// Its internals live in meshbus/detail/ (typed_codec.hpp: decoding and buffers;
/// type_registry.hpp: upcasters and validators; typed_node.hpp: Node's typed members).
#pragma once

#ifndef MSGPACK_NO_BOOST
#define MSGPACK_NO_BOOST
#endif
#include <msgpack.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>

#include "meshbus/detail/type_registry.hpp"
#include "meshbus/detail/typed_codec.hpp"
#include "meshbus/node.hpp"

namespace meshbus {

/// The topic a typed event is published on: T::event_topic if it has one, else its name.
template <TypedEvent T>
constexpr std::string_view event_topic() {
  if constexpr (requires { T::event_topic; }) {
    return T::event_topic;
  } else {
    return T::event_name;
  }
}

/// The MessagePack bytes of a typed event.
template <TypedEvent T>
std::string encode_event(const T& event) {
  msgpack::sbuffer buffer;
  msgpack::pack(buffer, event);
  return std::string(buffer.data(), buffer.size());
}

/// Decodes `bytes` of type `type_name` at `version` into the current T: upcasts,
/// checks every field, validates. Throws poison_event with a reason otherwise.
template <TypedEvent T>
T decode_event(std::span<const std::byte> bytes, std::string_view type_name, std::uint32_t version) {
  std::string upcast_bytes;
  bytes = detail::upcast(T::event_name, T::event_version, type_name, version, bytes, upcast_bytes);
  T value = detail::decode_current<T>(bytes);
  detail::validate(T::event_name, T::event_version, &value);
  return value;
}

/// Registers how version From::event_version of a type becomes To::event_version
/// (From and To are two structs with the same event_name). Chains are followed:
/// 1 -> 2 -> 3. Throws meshbus::error(invalid_argument) for mismatched names.
template <TypedEvent From, TypedEvent To>
void register_upcaster(std::function<To(const From&)> upcast) {
  detail::add_upcaster(From::event_name, From::event_version, To::event_name, To::event_version,
                       [upcast = std::move(upcast)](std::span<const std::byte> bytes) {
                         return encode_event(upcast(detail::decode_current<From>(bytes)));
                       });
}

/// Registers a validation hook for T: it returns an empty string when the event is
/// valid, otherwise why not (the event is then dead-lettered with that reason).
template <TypedEvent T>
void register_validator(std::function<std::string(const T&)> validate) {
  detail::add_validator(T::event_name, T::event_version, [validate = std::move(validate)](const void* value) {
    return validate(*static_cast<const T*>(value));
  });
}

}  // namespace meshbus

// The definitions of Node's typed members, which need everything above.
#include "meshbus/detail/typed_node.hpp"
