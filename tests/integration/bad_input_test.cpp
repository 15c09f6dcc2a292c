// Garbage on every input a node has — beacons, the ROUTER, the SUB socket, the
// requests it answers — is dropped and counted, and the node keeps serving. Raw
// sockets play the attacker.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <random>
#include <zmq.hpp>

#include "lib/transport/zmq_transport.hpp"
#include "lib/wire/beacon.hpp"
#include "lib/wire/control.hpp"
#include "lib/wire/envelope.hpp"
#include "lib/wire/trace.hpp"
#include "tests/support/node_helpers.hpp"

using namespace meshbus;
using namespace meshbus::test;
using namespace std::chrono_literals;

namespace {

std::uint16_t random_beacon_port() {
  std::random_device rd;
  return static_cast<std::uint16_t>(30000 + rd() % 30000);
}

// Broadcasts datagrams on loopback to the test's beacon port.
class udp_sender {
 public:
  explicit udp_sender(std::uint16_t port) : port_(port) {
    fd_ = ::socket(AF_INET, SOCK_DGRAM, 0);
    const int on = 1;
    setsockopt(fd_, SOL_SOCKET, SO_BROADCAST, &on, sizeof on);
  }
  ~udp_sender() { ::close(fd_); }
  void send(const wire::bytes& b) const {
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port_);
    to.sin_addr.s_addr = htonl(0x7fffffffu);  // 127.255.255.255
    ::sendto(fd_, b.data(), b.size(), 0, reinterpret_cast<const sockaddr*>(&to), sizeof to);
  }

 private:
  int fd_ = -1;
  std::uint16_t port_;
};

wire::bytes text(std::string_view s) { return wire::bytes(s.begin(), s.end()); }

/// A fake peer: a raw XPUB and ROUTER on loopback, announced by a hand-made beacon.
struct fake_peer {
  zmq::context_t ctx;
  zmq::socket_t pub{ctx, zmq::socket_type::xpub};
  zmq::socket_t router{ctx, zmq::socket_type::router};
  wire::beacon beacon;

  fake_peer(const std::string& cluster, std::uint8_t id_byte) {
    for (auto* s : {&pub, &router}) {
      s->set(zmq::sockopt::linger, 0);
      s->bind("tcp://127.0.0.1:*");
    }
    beacon.node_id[0] = id_byte;
    beacon.epoch = 5;
    beacon.cluster_hash = wire::fnv1a64(cluster);
    beacon.router_port = port_of(router);
    beacon.pub_port = port_of(pub);
  }
  void announce(std::uint16_t beacon_port) const { udp_sender(beacon_port).send(wire::encode_beacon(beacon)); }

 private:
  static std::uint16_t port_of(zmq::socket_t& s) {
    const auto ep = s.get(zmq::sockopt::last_endpoint);
    return static_cast<std::uint16_t>(std::stoul(ep.substr(ep.rfind(':') + 1)));
  }
};

}  // namespace

TEST_CASE("bad beacons are dropped and counted by cause and the node keeps working", "[integration][bad-input]") {
  const auto cluster = unique_cluster("badbeacon");
  auto o = fast_options(cluster, "a");
  o.beacon_port = random_beacon_port();
  Node a(o);
  udp_sender udp(o.beacon_port);

  wire::beacon good;
  good.node_id[0] = 0x42;
  good.epoch = 1;
  good.cluster_hash = wire::fnv1a64(cluster);
  good.router_port = 1;
  good.pub_port = 2;
  auto unsupported = wire::encode_beacon(good);
  unsupported[4] = 99;
  auto foreign = good;
  foreign.cluster_hash = wire::fnv1a64("someone-else");

  for (int i = 0; i < 20; ++i) {
    udp.send(text("garbage"));
    udp.send(wire::bytes(600, 0xc1));  // oversized
    udp.send(wire::bytes());
    udp.send(unsupported);
    udp.send(wire::encode_beacon(foreign));
  }
  REQUIRE(eventually([&] {
    const auto s = a.stats();
    return s.malformed_beacons >= 60 && s.unsupported_beacons >= 20 && s.foreign_cluster_beacons >= 20;
  }, 5s));
  CHECK(a.peers().empty());

  // Still serving: a real peer joins and events flow.
  Node b(o);
  event_log log;
  b.subscribe("still.ok", log.handler());
  REQUIRE(a.wait_for_subscribers("still.ok", 1, 10s));
  REQUIRE(a.publish("still.ok", "yes") == PublishResult::ok);
  REQUIRE(log.wait_for(1));
}

TEST_CASE("bad messages to the ROUTER are dropped and counted", "[integration][bad-input]") {
  const auto cluster = unique_cluster("badrouter");
  Node a(fast_options(cluster, "a"));
  zmq::context_t ctx;
  const auto endpoint = "tcp://127.0.0.1:" + std::to_string(a.router_port());

  zmq::socket_t anonymous(ctx, zmq::socket_type::dealer);  // no meshbus routing id
  anonymous.set(zmq::sockopt::linger, 0);
  anonymous.connect(endpoint);
  zmq::socket_t impostor(ctx, zmq::socket_type::dealer);
  wire::node_id_bytes fake{};
  fake[0] = 9;
  impostor.set(zmq::sockopt::routing_id, transport::routing_id_for(fake));
  impostor.set(zmq::sockopt::linger, 0);
  impostor.connect(endpoint);

  for (int i = 0; i < 10; ++i) {
    (void)anonymous.send(zmq::buffer(std::string("who am i")), zmq::send_flags::none);
    (void)impostor.send(zmq::buffer(std::string("\x01\x10garbage")), zmq::send_flags::none);  // HELLO, broken
    (void)impostor.send(zmq::buffer(std::string("\x05\x10")), zmq::send_flags::none);         // other version
    (void)impostor.send(zmq::buffer(std::string("\x01")), zmq::send_flags::none);             // too short
    // A well-formed HELLO whose node id does not match the sender is refused too.
    wire::hello_msg h;
    h.node_id[0] = 1;
    h.cluster = cluster;
    h.router_port = 1;
    h.pub_port = 1;
    const auto bytes = wire::encode_control(h);
    (void)impostor.send(zmq::buffer(bytes.data(), bytes.size()), zmq::send_flags::none);
    // Two frames are only for repairs; three are never part of the protocol.
    (void)impostor.send(zmq::buffer(std::string("a")), zmq::send_flags::sndmore);
    (void)impostor.send(zmq::buffer(std::string("b")), zmq::send_flags::none);
    (void)impostor.send(zmq::buffer(std::string("\x01\x14\x90")), zmq::send_flags::sndmore);  // a GOODBYE...
    (void)impostor.send(zmq::buffer(std::string("x")), zmq::send_flags::none);                  // ...with a frame
    (void)impostor.send(zmq::buffer(std::string("a")), zmq::send_flags::sndmore);
    (void)impostor.send(zmq::buffer(std::string("b")), zmq::send_flags::sndmore);
    (void)impostor.send(zmq::buffer(std::string("c")), zmq::send_flags::none);
  }
  REQUIRE(eventually([&] {
    const auto s = a.stats();
    return s.unknown_senders >= 20 && s.malformed_messages >= 50 && s.unsupported_messages >= 10;
  }, 5s));
  CHECK(a.peers().empty());
}

TEST_CASE("bad data frames from a peer are dropped and counted while good ones still flow", "[integration][bad-input]") {
  const auto cluster = unique_cluster("baddata");
  auto o = fast_options(cluster, "a");
  o.beacon_port = random_beacon_port();
  o.peer_expiry = 30s;  // the fake peer sends one beacon and never pings
  Node a(o);
  event_log log;
  a.subscribe("**", log.handler());

  fake_peer peer(cluster, 0x77);
  auto& pub = peer.pub;
  const auto& b = peer.beacon;
  peer.announce(o.beacon_port);
  // The node connects its SUB and subscribes: wait for a subscription to arrive.
  zmq::message_t sub;
  pub.set(zmq::sockopt::rcvtimeo, 10000);
  REQUIRE(pub.recv(sub));

  auto send = [&](const wire::bytes& frame) { (void)pub.send(zmq::buffer(frame.data(), frame.size()), zmq::send_flags::none); };
  wire::bytes good;
  wire::batch_marks marks;
  wire::begin_batch(good, "fake.topic", b.node_id, b.epoch, 1, marks);
  const std::uint8_t payload[] = {'o', 'k'};
  wire::append_event(good, payload, nullptr);
  wire::finish_batch(good, marks, 1, 1);

  auto wrong_version = good;
  wrong_version[11] = 42;  // "fake.topic" is 10 bytes, then NUL, then the version
  auto truncated = good;
  truncated.resize(good.size() - 2);
  auto trailing = good;
  trailing.push_back(0x01);
  wire::event_fields f;
  f.flags = wire::event_flag::event_id;
  const std::string long_id(300, 'x');  // above the 255-byte bound of ids
  f.event_id = long_id;
  wire::bytes oversized_field;
  wire::begin_batch(oversized_field, "fake.topic", b.node_id, b.epoch, 2, marks);
  wire::append_event(oversized_field, payload, &f);
  wire::finish_batch(oversized_field, marks, 1, 1);

  for (int i = 0; i < 5; ++i) {
    send(text("fake.topic"));  // no NUL
    send(wrong_version);
    send(truncated);
    send(trailing);
    send(oversized_field);
  }
  send(good);
  REQUIRE(log.wait_for(1));
  CHECK(log.events()[0].payload == "ok");
  const auto s = a.stats();
  CHECK(s.malformed_messages >= 20);
  CHECK(s.unsupported_messages >= 5);
}

TEST_CASE("bad trace requests from a peer are dropped and counted, and a good one is still answered",
          "[integration][bad-input][trace]") {
  const auto cluster = unique_cluster("badtrace");
  auto o = fast_options(cluster, "a");
  o.beacon_port = random_beacon_port();
  o.peer_expiry = 30s;  // the fake peer sends one beacon and never pings
  Node a(o);

  fake_peer peer(cluster, 0x78);
  auto& pub = peer.pub;
  const auto& b = peer.beacon;
  peer.announce(o.beacon_port);
  // Wait until the node's subscription to trace requests reached the fake XPUB.
  pub.set(zmq::sockopt::rcvtimeo, 10000);
  const std::string wanted = "\x01" + std::string(wire::trace_request_topic);
  for (zmq::message_t sub; pub.recv(sub);) {
    if (sub.to_string().rfind(wanted, 0) == 0) break;
  }

  std::uint64_t seq = 0;
  auto send_request = [&](const wire::bytes& payload) {
    wire::bytes frame;
    wire::batch_marks marks;
    wire::begin_batch(frame, wire::trace_request_topic, b.node_id, b.epoch, ++seq, marks);
    wire::append_event(frame, payload, nullptr);
    wire::finish_batch(frame, marks, 1, 1);
    (void)pub.send(zmq::buffer(frame.data(), frame.size()), zmq::send_flags::none);
  };
  send_request(text("garbage"));
  send_request({});
  send_request(wire::encode_trace_request({"flow", "orders.placed", 1}));  // not a reply topic
  send_request(wire::encode_trace_request({"", "$meshbus.trace.reply.x", 2}));  // no flow
  send_request(wire::encode_trace_request({"flow", "$meshbus.trace.reply.x", 3}));
  REQUIRE(eventually([&] { return a.stats().trace_requests_answered == 1; }, 10s));
  const auto s = a.stats();
  CHECK(s.malformed_trace_requests == 4);
  CHECK(s.trace_requests_refused == 0);
}
