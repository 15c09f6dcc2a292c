// `meshbus dlq`: the parent of `dlq list` (dlq_list.cpp) and `dlq replay` (dlq_replay.cpp).
#include "dlq.hpp"

#include "commands.hpp"
#include "output.hpp"

namespace meshbus_tool {

std::string node_label(const meshbus::PeerInfo& peer) {
  return peer.id.short_string() + " (" + display_text(peer.name) + ")";
}

std::vector<command> add_dlq_commands(CLI::App& parent, node_flags& node) {
  auto* dlq = parent.add_subcommand("dlq", "Inspect and replay dead letters (events whose handler kept failing)");
  add_node_flags(*dlq, node);
  dlq->require_subcommand(1);
  dlq->footer(
      footer("  meshbus dlq list\n"
             "  meshbus dlq replay 1a2b3c4d 7\n"));
  return {add_dlq_list_command(*dlq, node), add_dlq_replay_command(*dlq, node)};
}

}  // namespace meshbus_tool
