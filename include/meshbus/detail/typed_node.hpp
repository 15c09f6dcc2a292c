/// @file
/// Node's typed members: the definitions behind the typed declarations in
/// node.hpp, as a specialization of detail::typed_node for every TypedEvent.
/// Internal to <meshbus/typed.hpp>, which includes it last; include that.
#pragma once

#include <exception>
#include <future>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "meshbus/detail/typed_codec.hpp"
#include "meshbus/node.hpp"
#include "meshbus/typed.hpp"

namespace meshbus::detail {

/// A reply as Rep; one that is not a Rep is errc::bad_reply.
template <TypedEvent Rep>
Rep decode_reply(const Reply& reply) {
  try {
    return decode_event<Rep>(std::as_bytes(std::span(reply.payload.data(), reply.payload.size())), reply.type_name,
                             reply.type_version);
  } catch (const poison_event& e) {
    throw error(errc::bad_reply, e.what());
  }
}

/// Node's typed members for events, requests and replies of type T.
template <TypedEvent T>
struct typed_node<T> {
  static PublishResult publish(Node& node, const T& event, const PublishOptions& options) {
    return publish(node, event_topic<T>(), event, options);
  }

  static PublishResult publish(Node& node, std::string_view topic, const T& event, const PublishOptions& options) {
    encode_buffer buffer;
    msgpack::pack(buffer.get(), event);
    PublishOptions typed = options;
    typed.type_name = T::event_name;
    typed.type_version = T::event_version;
    // No content type on the wire: a type name without one means MessagePack
    // (Event::content_type() says so), which saves 20 bytes per event.
    return node.publish(topic, buffer.bytes(), typed);
  }

  template <class F>
  static Subscription subscribe(Node& node, F&& handler, const SubscribeOptions& options) {
    return subscribe(node, event_topic<T>(), std::forward<F>(handler), options);
  }

  template <class F>
  static Subscription subscribe(Node& node, std::string_view pattern, F&& handler, const SubscribeOptions& options) {
    static_assert(std::is_invocable_v<F&, const T&, const Event&> || std::is_invocable_v<F&, const T&>,
                  "a typed handler takes (const T&) or (const T&, const meshbus::Event&)");
    return node.subscribe(
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

  static RequestOptions typed_options(const RequestOptions& options) {
    RequestOptions typed = options;
    typed.type_name = T::event_name;
    typed.type_version = T::event_version;
    return typed;
  }

  template <TypedEvent Rep>
  static std::future<Rep> request(Node& node, std::string_view service, const T& request,
                                  const RequestOptions& options) {
    const auto bytes = encode_event(request);
    auto promise = std::make_shared<std::promise<Rep>>();
    auto result = promise->get_future();
    try {
      // Completed on the I/O thread (only the decode runs there), so get() on a handler
      // thread - a query from inside a handler - does not wait for itself.
      node.request_on_io_thread(
          service, std::as_bytes(std::span(bytes.data(), bytes.size())),
          [promise](std::optional<Reply> reply, std::exception_ptr failed) {
            if (failed) {
              promise->set_exception(failed);
              return;
            }
            try {
              promise->set_value(decode_reply<Rep>(*reply));
            } catch (...) {
              promise->set_exception(std::current_exception());
            }
          },
          typed_options(options));
    } catch (...) {
      promise->set_exception(std::current_exception());
    }
    return result;
  }

  template <TypedEvent Rep, class F>
  static void request_async(Node& node, std::string_view service, const T& request, F&& done,
                            const RequestOptions& options) {
    static_assert(std::is_invocable_v<F&, std::optional<Rep>, std::exception_ptr>,
                  "a typed request_async completion takes (std::optional<Rep>, std::exception_ptr)");
    const auto bytes = encode_event(request);
    node.request_async(
        service, std::as_bytes(std::span(bytes.data(), bytes.size())),
        [done = std::forward<F>(done)](std::optional<Reply> reply, std::exception_ptr failed) mutable {
          std::optional<Rep> value;
          if (!failed) {
            try {
              value.emplace(decode_reply<Rep>(*reply));
            } catch (...) {
              failed = std::current_exception();
            }
          }
          done(std::move(value), failed);
        },
        typed_options(options));
  }

  template <TypedEvent Rep, class F>
  static Service serve(Node& node, std::string_view service, F&& handler) {
    static_assert(
        std::is_invocable_r_v<Rep, F&, const T&, const Event&> || std::is_invocable_r_v<Rep, F&, const T&>,
        "a typed request handler takes (const Req&) or (const Req&, const meshbus::Event&) and returns Rep");
    return node.serve(service, [h = std::forward<F>(handler)](const Event& e) mutable -> Reply {
      const T request = decode_event<T>(e.payload(), e.type_name(), e.type_version());  // poison: rejected
      Rep reply = [&] {
        if constexpr (std::is_invocable_r_v<Rep, F&, const T&, const Event&>) {
          return h(request, e);
        } else {
          return h(request);
        }
      }();
      return Reply(encode_event(reply), std::string(Rep::event_name), Rep::event_version);
    });
  }
};

}  // namespace meshbus::detail
