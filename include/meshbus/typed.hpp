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
#pragma once

#ifndef MSGPACK_NO_BOOST
#define MSGPACK_NO_BOOST
#endif
#include <msgpack.hpp>

#include <atomic>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

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
T decode_event(std::span<const std::byte> bytes, std::string_view type_name, std::uint32_t version);

/// Registers how version From::event_version of a type becomes To::event_version
/// (From and To are two structs with the same event_name). Chains are followed:
/// 1 -> 2 -> 3. Throws meshbus::error(invalid_argument) for mismatched names.
template <TypedEvent From, TypedEvent To>
void register_upcaster(std::function<To(const From&)> upcast);

/// Registers a validation hook for T: it returns an empty string when the event is
/// valid, otherwise why not (the event is then dead-lettered with that reason).
template <TypedEvent T>
void register_validator(std::function<std::string(const T&)> validate);

namespace detail {

/// Decode limits for typed payloads (on top of Options::max_message_bytes).
inline msgpack::unpack_limit typed_decode_limit() {
  return msgpack::unpack_limit(65536, 65536, 16u << 20, 16u << 20, 0, 32);
}

/// Process-wide upcasters and validators, by type name.
struct type_registry {
  using upcaster = std::function<std::string(std::span<const std::byte>)>;
  std::mutex mu;
  std::map<std::pair<std::string, std::uint32_t>, std::pair<std::uint32_t, upcaster>> upcasters;
  /// By (name, version): a validator takes the struct of exactly that version.
  std::map<std::pair<std::string, std::uint32_t>, std::vector<std::function<std::string(const void*)>>> validators;
  std::atomic<bool> any_validator{false};  ///< lets decodes skip the lock while there are none

  static type_registry& instance() {
    static type_registry registry;
    return registry;
  }
};

inline const char* kind_of(const msgpack::object& o) {
  switch (o.type) {
    case msgpack::type::NIL: return "nil";
    case msgpack::type::BOOLEAN: return "a boolean";
    case msgpack::type::POSITIVE_INTEGER:
    case msgpack::type::NEGATIVE_INTEGER: return "an integer";
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64: return "a float";
    case msgpack::type::STR: return "a string";
    case msgpack::type::BIN: return "binary";
    case msgpack::type::ARRAY: return "an array";
    case msgpack::type::MAP: return "a map";
    default: return "an extension";
  }
}

template <class V>
struct is_optional : std::false_type {};
template <class V>
struct is_optional<std::optional<V>> : std::true_type {};

/// Reads a received map into a struct through its MSGPACK_DEFINE_MAP fields (by
/// posing as a msgpack packer: the macro hands it each field name and then each
/// field, with its static type): every non-optional field must be present and every
/// value must convert to the field's type. The first problem, naming the field, ends
/// up in `error`. Fields are converted in place, once each: `target` is the struct
/// being filled, so writing through the references the macro hands out is writing
/// to a non-const object.
class field_reader {
 public:
  explicit field_reader(const msgpack::object& map) : map_(map) {}
  field_reader& pack_map(std::uint32_t) { return *this; }
  template <class V>
  field_reader& pack(const V& field) {
    if (expect_name_) {
      if constexpr (std::is_convertible_v<const V&, std::string_view>) name_ = std::string_view(field);
      expect_name_ = false;
      return *this;
    }
    expect_name_ = true;
    if (!error_.empty()) return *this;
    const msgpack::object* value = find(name_);
    if (value == nullptr) {
      if (!is_optional<V>::value) error_ = "field '" + std::string(name_) + "' is missing";
      return *this;
    }
    try {
      value->convert(const_cast<V&>(field));
    } catch (const std::exception&) {
      error_ = "field '" + std::string(name_) + "' has the wrong type (" + kind_of(*value) + ")";
    }
    return *this;
  }
  const std::string& error() const noexcept { return error_; }

 private:
  // The sender packed the same macro, so keys usually come in field order: look at
  // the position after the last match first, then around.
  const msgpack::object* find(std::string_view name) {
    const auto n = map_.via.map.size;
    for (std::uint32_t k = 0; k < n; ++k) {
      const auto at = (next_ + k) % n;
      const auto& kv = map_.via.map.ptr[at];
      if (kv.key.type == msgpack::type::STR && std::string_view(kv.key.via.str.ptr, kv.key.via.str.size) == name) {
        next_ = at + 1;
        return &kv.val;
      }
    }
    return nullptr;
  }

  const msgpack::object& map_;
  std::uint32_t next_ = 0;
  std::string_view name_;
  std::string error_;
  bool expect_name_ = true;
};

/// The unpacking zone of this thread, reused from event to event (cleared after
/// each, keeping its first chunk), so a decode does not allocate one. Decodes nest
/// (an upcaster decodes the older version inside a decode): the inner ones get a
/// zone of their own.
class decode_zone {
 public:
  decode_zone() {
    if (depth_++ > 0) own_.emplace(1024);
  }
  ~decode_zone() {
    --depth_;
    if (!own_) shared().clear();
  }
  decode_zone(const decode_zone&) = delete;
  decode_zone& operator=(const decode_zone&) = delete;
  msgpack::zone& get() noexcept { return own_ ? *own_ : shared(); }

 private:
  static msgpack::zone& shared() {
    thread_local msgpack::zone zone(4096);
    return zone;
  }
  static inline thread_local int depth_ = 0;
  std::optional<msgpack::zone> own_;
};

/// Decodes bytes that are exactly version T::event_version of T.
template <TypedEvent T>
T decode_current(std::span<const std::byte> bytes) {
  decode_zone zone;
  msgpack::object obj;
  try {
    obj = msgpack::unpack(zone.get(), reinterpret_cast<const char*>(bytes.data()), bytes.size(), nullptr, nullptr,
                          typed_decode_limit());
  } catch (const std::exception& e) {
    throw poison_event(std::string(T::event_name) + " does not decode as MessagePack: " + e.what());
  }
  if (obj.type != msgpack::type::MAP) {
    throw poison_event(std::string(T::event_name) + " is not a map of fields but " + kind_of(obj));
  }
  T value{};
  field_reader reader(obj);
  value.msgpack_pack(reader);
  if (!reader.error().empty()) throw poison_event(std::string(T::event_name) + ": " + reader.error());
  return value;
}

/// The encoding buffer of this thread, reused from event to event; taken out while in
/// use, so a nested publish (from inside a callback) gets a fresh one.
class encode_buffer {
 public:
  encode_buffer() : buffer_(std::move(shared())) { buffer_.clear(); }
  ~encode_buffer() {
    if (buffer_.size() <= keep_bytes) shared() = std::move(buffer_);
  }
  encode_buffer(const encode_buffer&) = delete;
  encode_buffer& operator=(const encode_buffer&) = delete;
  msgpack::sbuffer& get() noexcept { return buffer_; }
  std::span<const std::byte> bytes() const noexcept {
    return std::as_bytes(std::span(buffer_.data(), buffer_.size()));
  }

 private:
  static constexpr std::size_t keep_bytes = 64 * 1024;  // larger ones are not kept
  static msgpack::sbuffer& shared() {
    thread_local msgpack::sbuffer buffer(256);
    return buffer;
  }
  msgpack::sbuffer buffer_;
};

}  // namespace detail

template <TypedEvent T>
T decode_event(std::span<const std::byte> bytes, std::string_view type_name, std::uint32_t version) {
  if (type_name != T::event_name) {
    throw poison_event(type_name.empty() ? "an event without a type where " + std::string(T::event_name) +
                                               " was expected"
                                         : "an event of type " + std::string(type_name) + " where " +
                                               std::string(T::event_name) + " was expected");
  }
  if (version > T::event_version) {
    throw poison_event("version " + std::to_string(version) + " of " + std::string(T::event_name) +
                       " is newer than this program knows (" + std::to_string(T::event_version) + ")");
  }
  auto& registry = detail::type_registry::instance();
  std::string upcast_bytes;
  while (version < T::event_version) {
    detail::type_registry::upcaster step;
    std::uint32_t next = 0;
    {
      std::lock_guard lock(registry.mu);
      const auto it = registry.upcasters.find({std::string(T::event_name), version});
      if (it == registry.upcasters.end()) {
        throw poison_event("no upcaster from version " + std::to_string(version) + " of " +
                           std::string(T::event_name) + " (this program knows version " +
                           std::to_string(T::event_version) + ")");
      }
      next = it->second.first;
      step = it->second.second;
    }
    upcast_bytes = step(bytes);
    bytes = std::as_bytes(std::span(upcast_bytes.data(), upcast_bytes.size()));
    version = next;
  }
  T value = detail::decode_current<T>(bytes);
  if (!registry.any_validator.load(std::memory_order_acquire)) return value;
  std::vector<std::function<std::string(const void*)>> validators;
  {
    std::lock_guard lock(registry.mu);
    const auto it = registry.validators.find({std::string(T::event_name), T::event_version});
    if (it != registry.validators.end()) validators = it->second;
  }
  for (const auto& validate : validators) {
    if (auto why = validate(&value); !why.empty()) {
      throw poison_event(std::string(T::event_name) + " is invalid: " + why);
    }
  }
  return value;
}

template <TypedEvent From, TypedEvent To>
void register_upcaster(std::function<To(const From&)> upcast) {
  if (std::string_view(From::event_name) != std::string_view(To::event_name) ||
      From::event_version >= To::event_version) {
    throw error(errc::invalid_argument,
                "register_upcaster: From and To must be two versions of one event name, From the older");
  }
  auto step = [upcast = std::move(upcast)](std::span<const std::byte> bytes) {
    return encode_event(upcast(detail::decode_current<From>(bytes)));
  };
  auto& registry = detail::type_registry::instance();
  std::lock_guard lock(registry.mu);
  registry.upcasters[{std::string(From::event_name), From::event_version}] = {To::event_version, std::move(step)};
}

template <TypedEvent T>
void register_validator(std::function<std::string(const T&)> validate) {
  auto& registry = detail::type_registry::instance();
  std::lock_guard lock(registry.mu);
  registry.validators[{std::string(T::event_name), T::event_version}].push_back(
      [validate = std::move(validate)](const void* value) { return validate(*static_cast<const T*>(value)); });
  registry.any_validator.store(true, std::memory_order_release);
}

// --- Node's typed members ----------------------------------------------------

template <TypedEvent T>
PublishResult Node::publish(const T& event, const PublishOptions& options) {
  return publish(event_topic<T>(), event, options);
}

template <TypedEvent T>
PublishResult Node::publish(std::string_view topic, const T& event, const PublishOptions& options) {
  detail::encode_buffer buffer;
  msgpack::pack(buffer.get(), event);
  PublishOptions typed = options;
  typed.type_name = T::event_name;
  typed.type_version = T::event_version;
  // No content type on the wire: a type name without one means MessagePack
  // (Event::content_type() says so), which saves 20 bytes per event.
  return publish(topic, buffer.bytes(), typed);
}

template <TypedEvent T, class F>
Subscription Node::subscribe(F&& handler, const SubscribeOptions& options) {
  return subscribe<T>(event_topic<T>(), std::forward<F>(handler), options);
}

template <TypedEvent T, class F>
Subscription Node::subscribe(std::string_view pattern, F&& handler, const SubscribeOptions& options) {
  static_assert(std::is_invocable_v<F&, const T&, const Event&> || std::is_invocable_v<F&, const T&>,
                "a typed handler takes (const T&) or (const T&, const meshbus::Event&)");
  return subscribe(
      pattern,
      [h = std::forward<F>(handler)](const Event& e) mutable {
        const T value = decode_event<T>(e.payload(), e.type_name(), e.type_version());
        if constexpr (std::is_invocable_v<F&, const T&, const Event&>) {
          h(value, e);
        } else {
          h(value);
        }
      },
      options);
}

// --- typed request/reply and CQRS ------------------------------------------------

template <TypedEvent Req, TypedEvent Rep>
std::future<Rep> Node::request(std::string_view service, const Req& request, std::chrono::milliseconds timeout) {
  const auto bytes = encode_event(request);
  RequestOptions options;
  options.timeout = timeout;
  options.type_name = Req::event_name;
  options.type_version = Req::event_version;
  auto promise = std::make_shared<std::promise<Rep>>();
  auto result = promise->get_future();
  try {
    // Completed on the I/O thread (only the decode runs there), so get() on a handler
    // thread - a query from inside a handler - does not wait for itself.
    request_on_io_thread(
        service, std::as_bytes(std::span(bytes.data(), bytes.size())),
        [promise](std::optional<Reply> reply, std::exception_ptr failed) {
          if (failed) {
            promise->set_exception(failed);
            return;
          }
          try {
            promise->set_value(decode_event<Rep>(std::as_bytes(std::span(reply->payload.data(), reply->payload.size())),
                                                 reply->type_name, reply->type_version));
          } catch (const poison_event& e) {
            promise->set_exception(std::make_exception_ptr(error(errc::bad_reply, e.what())));
          }
        },
        options);
  } catch (...) {
    promise->set_exception(std::current_exception());
  }
  return result;
}

template <TypedEvent Req, TypedEvent Rep, class F>
Service Node::handle(std::string_view service, F&& handler) {
  static_assert(std::is_invocable_r_v<Rep, F&, const Req&, const Event&> || std::is_invocable_r_v<Rep, F&, const Req&>,
                "a typed request handler takes (const Req&) or (const Req&, const meshbus::Event&) and returns Rep");
  return serve(service, [h = std::forward<F>(handler)](const Event& e) mutable -> Reply {
    const Req request = decode_event<Req>(e.payload(), e.type_name(), e.type_version());  // poison: rejected
    Rep reply_value = [&] {
      if constexpr (std::is_invocable_r_v<Rep, F&, const Req&, const Event&>) {
        return h(request, e);
      } else {
        return h(request);
      }
    }();
    return Reply(encode_event(reply_value), std::string(Rep::event_name), Rep::event_version);
  });
}

template <TypedEvent Cmd, TypedEvent Result>
std::future<Result> Node::execute(const Cmd& command, std::chrono::milliseconds timeout) {
  return request<Cmd, Result>(Cmd::event_name, command, timeout);
}

template <TypedEvent Cmd, TypedEvent Result, class F>
Service Node::on_command(F&& handler) {
  return handle<Cmd, Result>(Cmd::event_name, std::forward<F>(handler));
}

template <TypedEvent Query, TypedEvent Result>
std::future<Result> Node::query(const Query& query, std::chrono::milliseconds timeout) {
  return request<Query, Result>(Query::event_name, query, timeout);
}

template <TypedEvent Query, TypedEvent Result, class F>
Service Node::on_query(F&& handler) {
  return handle<Query, Result>(Query::event_name, std::forward<F>(handler));
}

}  // namespace meshbus
