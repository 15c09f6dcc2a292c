// The causation tree of one flow (`meshbus trace`): events as the nodes that hold
// them reported them, arranged by causation id. A pure function, no I/O: what it
// gets is all it knows.
//
// * An event is placed under the event its causation id names. Events without a
//   causation id are roots.
// * A causation id that names no event given is an event nobody holds (retention,
//   a node without a durable log that restarted, a node that did not answer): a
//   placeholder line "not held" stands for it, with every event that names it below.
// * Default event ids ("<publisher>-<epoch>-<sequence>") are not unique across the
//   topics of one publisher, so a causation id may name several events. A cause comes
//   before its effects: the event is placed under the latest of them sent at or before
//   it (else the earliest), and when two or more were sent before it the choice is a
//   guess, which the line says (`ambiguous_cause`).
// * Causation that goes round in a circle (damaged or hand-made ids) cannot loop: the
//   earliest event of a cycle becomes a root, marked `cycle`.
// * Siblings (and roots) are in time order; ties in the order of `tiebreak`, then of
//   the input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace meshbus::detail {

/// What the tree needs of one event (views into the caller's data).
struct trace_item {
  std::string_view id;
  std::string_view causation_id;  ///< empty: a root
  std::int64_t timestamp_ns = 0;
  std::string_view tiebreak;  ///< orders events sent at the same time (e.g. node, topic)
};

/// One line of the tree, in pre-order: a parent comes before its children.
struct trace_line {
  std::size_t depth = 0;             ///< 0 for a root
  std::optional<std::size_t> event;  ///< index into the items; none: a placeholder
  std::string missing_id;            ///< a placeholder's id: named as a cause, held by nobody
  bool cycle = false;                ///< a root only because its causation went round in a circle
  /// Events its causation id names that were sent at or before it, when more than one
  /// (it is placed under the latest); 0 otherwise.
  std::size_t ambiguous_cause = 0;
};

/// The tree of `items`, every item exactly once.
std::vector<trace_line> build_trace_tree(std::span<const trace_item> items);

}  // namespace meshbus::detail
