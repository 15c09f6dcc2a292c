// Internal to lib/wire: one body codec per control message kind, and the field
// readers and writers they share. control.cpp dispatches on the kind byte to these;
// nothing outside lib/wire includes this header.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "lib/wire/control.hpp"

namespace meshbus::wire::detail {

/// The body codec of one message kind: its kind byte, the number of body fields
/// this revision knows (a receiver requires at least these and skips any more),
/// and the writer and reader of those fields. `read` latches failures in the reader.
template <class Message>
struct body_codec;

#define MESHBUS_WIRE_BODY_CODEC(message, kind_value, field_count)  \
  template <>                                                       \
  struct body_codec<message> {                                      \
    static constexpr control_kind kind = control_kind::kind_value;  \
    static constexpr std::uint32_t fields = field_count;            \
    static void write(mp_writer& w, const message& m);              \
    static void read(mp_reader& r, message& m);                     \
  }

// The table of docs/protocol.md §4. Peer protocol (control_peer.cpp):
MESHBUS_WIRE_BODY_CODEC(hello_msg, hello, 12);
MESHBUS_WIRE_BODY_CODEC(subscriptions_msg, subscriptions, 3);
MESHBUS_WIRE_BODY_CODEC(ready_msg, ready, 2);
MESHBUS_WIRE_BODY_CODEC(ping_msg, ping, 4);
MESHBUS_WIRE_BODY_CODEC(goodbye_msg, goodbye, 2);
// Streams and groups (control_stream.cpp):
MESHBUS_WIRE_BODY_CODEC(nack_msg, nack, 3);
MESHBUS_WIRE_BODY_CODEC(ack_msg, ack, 2);
MESHBUS_WIRE_BODY_CODEC(repair_msg, repair, 1);
MESHBUS_WIRE_BODY_CODEC(loss_msg, loss, 4);
MESHBUS_WIRE_BODY_CODEC(assign_msg, assign, 3);
// Request/reply (control_request.cpp):
MESHBUS_WIRE_BODY_CODEC(request_msg, request, 8);
MESHBUS_WIRE_BODY_CODEC(reply_msg, reply, 6);
MESHBUS_WIRE_BODY_CODEC(status_request_msg, status_request, 1);
MESHBUS_WIRE_BODY_CODEC(status_reply_msg, status_reply, 2);

#undef MESHBUS_WIRE_BODY_CODEC

// Fields shared by several kinds (control_fields.cpp). Every reader is bounded and
// returns false, with the reader failed, on anything out of bounds.
bool read_string(mp_reader& r, std::string& out, std::size_t max);
bool read_port(mp_reader& r, std::uint16_t& port);
/// A bin of any length the message can hold, copied into a string.
bool read_payload(mp_reader& r, std::string& out);
/// Opens an entry of a list (an array of at least `min` and at most
/// max_entry_fields elements); returns its element count, 0 on failure.
std::uint32_t open_entry(mp_reader& r, std::uint32_t min);

void write_peers(mp_writer& w, const std::vector<peer_address>& peers);
bool read_peers(mp_reader& r, std::vector<peer_address>& out);
void write_patterns(mp_writer& w, const std::vector<pattern_spec>& v);
bool read_patterns(mp_reader& r, std::vector<pattern_spec>& out);
void write_services(mp_writer& w, const std::vector<std::string>& v);
bool read_services(mp_reader& r, std::vector<std::string>& out);
/// [topic, sequence] pairs: READY positions and ACKs.
void write_topic_seqs(mp_writer& w, const std::vector<std::pair<std::string, std::uint64_t>>& v);
bool read_topic_seqs(mp_reader& r, std::uint32_t max, std::vector<std::pair<std::string, std::uint64_t>>& out);

}  // namespace meshbus::wire::detail
