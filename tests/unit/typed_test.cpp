// Typed events: encoding, strict decoding that names the faulty field, optional
// fields, versions, upcaster chains and validators.
#include <catch2/catch.hpp>

#include <meshbus/typed.hpp>

namespace {

struct Address {
  std::string city;
  std::string zip;
  MSGPACK_DEFINE_MAP(city, zip)
};

struct OrderPlacedV1 {
  static constexpr std::string_view event_name = "test.order.placed";
  static constexpr std::uint32_t event_version = 1;
  std::string id;
  int cents = 0;
  MSGPACK_DEFINE_MAP(id, cents)
};

struct OrderPlacedV2 {
  static constexpr std::string_view event_name = "test.order.placed";
  static constexpr std::uint32_t event_version = 2;
  std::string id;
  double amount = 0;  // v2: euros instead of cents
  MSGPACK_DEFINE_MAP(id, amount)
};

struct OrderPlaced {  // v3: the current one
  static constexpr std::string_view event_name = "test.order.placed";
  static constexpr std::uint32_t event_version = 3;
  static constexpr std::string_view event_topic = "orders.placed";
  std::string id;
  double amount = 0;
  std::string currency;
  Address ship_to;
  std::optional<std::string> coupon;
  std::vector<std::string> items;
  MSGPACK_DEFINE_MAP(id, amount, currency, ship_to, coupon, items)
};

struct Other {
  static constexpr std::string_view event_name = "test.other";
  static constexpr std::uint32_t event_version = 1;
  int x = 0;
  MSGPACK_DEFINE_MAP(x)
};

template <class T>
std::span<const std::byte> as_span(const std::string& bytes) {
  return std::as_bytes(std::span(bytes.data(), bytes.size()));
}

// Builds a map with msgpack-c directly, to make payloads a struct would not produce.
template <class... KeyValues>
std::string encode_map(const KeyValues&... kvs) {
  msgpack::sbuffer b;
  msgpack::packer<msgpack::sbuffer> pk(b);
  pk.pack_map(static_cast<std::uint32_t>(sizeof...(kvs)));
  (pk.pack(kvs.first).pack(kvs.second), ...);
  return std::string(b.data(), b.size());
}

void register_chain_once() {
  static const bool done = [] {
    meshbus::register_upcaster<OrderPlacedV1, OrderPlacedV2>(
        [](const OrderPlacedV1& v1) { return OrderPlacedV2{v1.id, v1.cents / 100.0}; });
    meshbus::register_upcaster<OrderPlacedV2, OrderPlaced>([](const OrderPlacedV2& v2) {
      OrderPlaced v3;
      v3.id = v2.id;
      v3.amount = v2.amount;
      v3.currency = "EUR";
      v3.ship_to = {"unknown", "00000"};
      return v3;
    });
    return true;
  }();
  (void)done;
}

}  // namespace

TEST_CASE("a typed event round-trips with every kind of field", "[unit][typed]") {
  OrderPlaced o{"o-1", 42.5, "EUR", {"Lyon", "69001"}, "SPRING", {"a", "b"}};
  const auto bytes = meshbus::encode_event(o);
  const auto back = meshbus::decode_event<OrderPlaced>(as_span<OrderPlaced>(bytes), "test.order.placed", 3);
  CHECK(back.id == "o-1");
  CHECK(back.amount == 42.5);
  CHECK(back.ship_to.city == "Lyon");
  CHECK(back.coupon == std::optional<std::string>("SPRING"));
  CHECK(back.items == std::vector<std::string>{"a", "b"});
  CHECK(meshbus::event_topic<OrderPlaced>() == "orders.placed");
  CHECK(meshbus::event_topic<Other>() == "test.other");
}

TEST_CASE("an absent optional field is fine, an absent required one is named", "[unit][typed]") {
  OrderPlaced o{"o-1", 1, "EUR", {"Lyon", "69001"}, std::nullopt, {}};
  const auto bytes = meshbus::encode_event(o);  // coupon encoded as nil
  CHECK_NOTHROW(meshbus::decode_event<OrderPlaced>(as_span<OrderPlaced>(bytes), "test.order.placed", 3));
  const auto missing = encode_map(std::pair("id", "o-1"), std::pair("amount", 1.0));
  CHECK_THROWS_WITH(meshbus::decode_event<OrderPlaced>(as_span<OrderPlaced>(missing), "test.order.placed", 3),
                    Catch::Contains("field 'currency' is missing"));
}

TEST_CASE("a field of the wrong type is named", "[unit][typed]") {
  const auto wrong = encode_map(std::pair("id", "o-1"), std::pair("amount", "forty"), std::pair("currency", 3));
  try {
    (void)meshbus::decode_event<OrderPlaced>(as_span<OrderPlaced>(wrong), "test.order.placed", 3);
    FAIL("expected poison_event");
  } catch (const meshbus::poison_event& e) {
    CHECK_THAT(e.what(), Catch::Contains("field 'amount' has the wrong type (a string)"));
  }
}

TEST_CASE("bytes that are not an event are refused with a reason", "[unit][typed]") {
  const std::string garbage = "\xc1\xc1\xc1";
  CHECK_THROWS_WITH(meshbus::decode_event<Other>(as_span<Other>(garbage), "test.other", 1),
                    Catch::Contains("does not decode"));
  msgpack::sbuffer b;
  msgpack::pack(b, std::vector<int>{1, 2});
  const std::string array(b.data(), b.size());
  CHECK_THROWS_WITH(meshbus::decode_event<Other>(as_span<Other>(array), "test.other", 1),
                    Catch::Contains("not a map"));
  const std::string huge_claim = "\xdf\xff\xff\xff\xff";  // a map of 4 billion entries
  CHECK_THROWS_AS(meshbus::decode_event<Other>(as_span<Other>(huge_claim), "test.other", 1), meshbus::poison_event);
}

TEST_CASE("another type, or a newer version, is refused", "[unit][typed]") {
  const auto bytes = meshbus::encode_event(Other{1});
  CHECK_THROWS_WITH(meshbus::decode_event<OrderPlaced>(as_span<Other>(bytes), "test.other", 1),
                    Catch::Contains("of type test.other where test.order.placed was expected"));
  CHECK_THROWS_WITH(meshbus::decode_event<Other>(as_span<Other>(bytes), "", 1), Catch::Contains("without a type"));
  CHECK_THROWS_WITH(meshbus::decode_event<Other>(as_span<Other>(bytes), "test.other", 2),
                    Catch::Contains("version 2 of test.other is newer than this program knows (1)"));
}

TEST_CASE("older versions go through the upcaster chain", "[unit][typed]") {
  register_chain_once();
  const auto v1 = meshbus::encode_event(OrderPlacedV1{"o-7", 1250});
  const auto now = meshbus::decode_event<OrderPlaced>(as_span<OrderPlacedV1>(v1), "test.order.placed", 1);
  CHECK(now.id == "o-7");
  CHECK(now.amount == 12.5);
  CHECK(now.currency == "EUR");
  const auto v2 = meshbus::encode_event(OrderPlacedV2{"o-8", 3.0});
  CHECK(meshbus::decode_event<OrderPlaced>(as_span<OrderPlacedV2>(v2), "test.order.placed", 2).amount == 3.0);
  CHECK_THROWS_WITH(meshbus::decode_event<Other>(as_span<Other>(meshbus::encode_event(Other{})), "test.other", 0),
                    Catch::Contains("no upcaster from version 0"));
  CHECK_THROWS_AS((meshbus::register_upcaster<OrderPlaced, OrderPlacedV1>([](const OrderPlaced&) { return OrderPlacedV1{}; })),
                  meshbus::error);
}

TEST_CASE("validators decide what is valid", "[unit][typed]") {
  meshbus::register_validator<Other>([](const Other& o) { return o.x >= 0 ? "" : "x must not be negative"; });
  const auto good = meshbus::encode_event(Other{5});
  CHECK(meshbus::decode_event<Other>(as_span<Other>(good), "test.other", 1).x == 5);
  const auto bad = meshbus::encode_event(Other{-1});
  CHECK_THROWS_WITH(meshbus::decode_event<Other>(as_span<Other>(bad), "test.other", 1),
                    Catch::Contains("test.other is invalid: x must not be negative"));
}

namespace {
struct ReadingV1 {
  static constexpr std::string_view event_name = "test.reading";
  static constexpr std::uint32_t event_version = 1;
  int celsius = 0;
  MSGPACK_DEFINE_MAP(celsius)
};
struct Reading {
  static constexpr std::string_view event_name = "test.reading";
  static constexpr std::uint32_t event_version = 2;
  std::string unit;
  double value = 0;
  MSGPACK_DEFINE_MAP(unit, value)
};
}  // namespace

TEST_CASE("a validator belongs to one version of a type", "[unit][typed]") {
  // A validator of version 1 must never be handed a version 2 struct (nor the reverse).
  meshbus::register_validator<ReadingV1>([](const ReadingV1& r) { return r.celsius < 100 ? "" : "too hot"; });
  meshbus::register_validator<Reading>([](const Reading& r) { return r.unit.empty() ? "no unit" : ""; });
  meshbus::register_upcaster<ReadingV1, Reading>([](const ReadingV1& r) { return Reading{"C", double(r.celsius)}; });
  const auto v2 = meshbus::encode_event(Reading{"F", 451});
  CHECK(meshbus::decode_event<Reading>(as_span<Reading>(v2), "test.reading", 2).value == 451);
  const auto v1 = meshbus::encode_event(ReadingV1{20});
  const auto up = meshbus::decode_event<Reading>(as_span<Reading>(v1), "test.reading", 1);
  CHECK((up.unit == "C" && up.value == 20));
  CHECK_THROWS_WITH(meshbus::decode_event<Reading>(as_span<Reading>(meshbus::encode_event(Reading{"", 1})),
                                                   "test.reading", 2),
                    Catch::Contains("test.reading is invalid: no unit"));
}

TEST_CASE("decoding reuses its buffers without mixing up nested decodes", "[unit][typed]") {
  // Upcasting decodes the older version inside the decode of the current one; many
  // decodes in a row share one zone. Both must give each event its own values.
  register_chain_once();
  for (int i = 0; i < 1000; ++i) {
    const auto v1 = meshbus::encode_event(OrderPlacedV1{"o-" + std::to_string(i), i});
    const auto current = meshbus::decode_event<OrderPlaced>(as_span<OrderPlaced>(v1), "test.order.placed", 1);
    REQUIRE(current.id == "o-" + std::to_string(i));
    const auto direct = meshbus::encode_event(OrderPlaced{"d-" + std::to_string(i), 1.5, "EUR", {"Oslo", "0150"}, {}, {"a", "b"}});
    const auto same = meshbus::decode_event<OrderPlaced>(as_span<OrderPlaced>(direct), "test.order.placed", 3);
    REQUIRE((same.id == "d-" + std::to_string(i) && same.ship_to.city == "Oslo" && same.items.size() == 2));
  }
}
