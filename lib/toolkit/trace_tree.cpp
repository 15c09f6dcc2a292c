// The causation tree of one flow; see trace_tree.hpp. Each event gets at most one
// parent (an event, or a placeholder for an id nobody holds), so the links form a
// forest plus, at worst, cycles: whatever a walk from the roots does not reach hangs
// off a cycle, whose earliest event is cut loose and made a root. The walk keeps its
// own stack, so a long chain of causes cannot exhaust the thread's.
#include "lib/toolkit/trace_tree.hpp"

#include <algorithm>
#include <map>
#include <tuple>
#include <unordered_map>

namespace meshbus::detail {
namespace {

/// A root of the tree: an event, or a placeholder (index into the missing ids).
struct root_entry {
  bool placeholder = false;
  std::size_t index = 0;
  std::size_t sort_item = 0;  ///< the event it sorts by: itself, or a placeholder's earliest child
};

}  // namespace

std::vector<trace_line> build_trace_tree(std::span<const trace_item> items) {
  const std::size_t n = items.size();
  auto before = [&](std::size_t a, std::size_t b) {
    return std::tie(items[a].timestamp_ns, items[a].tiebreak, a) <
           std::tie(items[b].timestamp_ns, items[b].tiebreak, b);
  };
  std::unordered_map<std::string_view, std::vector<std::size_t>> by_id;
  for (std::size_t i = 0; i < n; ++i) by_id[items[i].id].push_back(i);
  for (auto& [id, list] : by_id) std::sort(list.begin(), list.end(), before);

  constexpr std::size_t none = SIZE_MAX;
  std::vector<std::size_t> parent(n, none);
  std::vector<bool> cycle(n, false);
  std::vector<std::size_t> ambiguous(n, 0);
  std::vector<std::vector<std::size_t>> children(n);
  std::map<std::string_view, std::vector<std::size_t>> missing;  // id nobody holds -> who names it
  for (std::size_t i = 0; i < n; ++i) {
    const auto cause = items[i].causation_id;
    if (cause.empty()) continue;
    const auto found = by_id.find(cause);
    if (found == by_id.end()) {
      missing[cause].push_back(i);
      continue;
    }
    // The latest event of that id sent at or before this one, else the earliest.
    std::size_t chosen = none;
    std::size_t sent_before = 0;
    for (const auto candidate : found->second) {
      if (candidate == i) continue;
      const bool before_it = items[candidate].timestamp_ns <= items[i].timestamp_ns;
      if (chosen == none || before_it) chosen = candidate;
      if (!before_it) break;
      ++sent_before;
    }
    if (sent_before > 1) ambiguous[i] = sent_before;
    if (chosen == none) {
      cycle[i] = true;  // it names itself as its cause
      continue;
    }
    parent[i] = chosen;
    children[chosen].push_back(i);
  }

  std::vector<root_entry> roots;
  std::vector<std::pair<std::string_view, std::vector<std::size_t>>> placeholders(missing.begin(),
                                                                                  missing.end());
  for (std::size_t p = 0; p < placeholders.size(); ++p) {
    auto& named_by = placeholders[p].second;
    std::sort(named_by.begin(), named_by.end(), before);
    roots.push_back({true, p, named_by.front()});
  }
  std::vector<bool> in_placeholder(n, false);
  for (const auto& [id, named_by] : placeholders) {
    for (const auto i : named_by) in_placeholder[i] = true;
  }
  for (std::size_t i = 0; i < n; ++i) {
    if (parent[i] == none && !in_placeholder[i]) roots.push_back({false, i, i});
  }

  // Mark everything reachable from the roots; what is left hangs off a cycle.
  std::vector<bool> reached(n, false);
  std::vector<std::size_t> stack;
  auto reach_from = [&](std::size_t start) {
    stack.push_back(start);
    while (!stack.empty()) {
      const auto i = stack.back();
      stack.pop_back();
      if (reached[i]) continue;
      reached[i] = true;
      for (const auto c : children[i]) stack.push_back(c);
    }
  };
  for (const auto& r : roots) {
    if (r.placeholder) {
      for (const auto i : placeholders[r.index].second) reach_from(i);
    } else {
      reach_from(r.index);
    }
  }
  std::vector<std::size_t> order(n);
  for (std::size_t i = 0; i < n; ++i) order[i] = i;
  std::sort(order.begin(), order.end(), before);
  for (const auto i : order) {
    if (reached[i]) continue;
    auto& siblings = children[parent[i]];
    siblings.erase(std::find(siblings.begin(), siblings.end(), i));
    parent[i] = none;
    cycle[i] = true;
    roots.push_back({false, i, i});
    reach_from(i);
  }

  std::sort(roots.begin(), roots.end(),
            [&](const root_entry& a, const root_entry& b) { return before(a.sort_item, b.sort_item); });
  for (auto& list : children) std::sort(list.begin(), list.end(), before);

  // Pre-order, children pushed in reverse so the earliest comes out first.
  std::vector<trace_line> lines;
  lines.reserve(n + placeholders.size());
  std::vector<std::pair<std::size_t, std::size_t>> walk;  // (event, depth)
  auto emit_subtrees = [&](const std::vector<std::size_t>& firsts, std::size_t depth) {
    for (auto it = firsts.rbegin(); it != firsts.rend(); ++it) walk.emplace_back(*it, depth);
    while (!walk.empty()) {
      const auto [i, d] = walk.back();
      walk.pop_back();
      lines.push_back({d, i, {}, cycle[i], ambiguous[i]});
      for (auto it = children[i].rbegin(); it != children[i].rend(); ++it) walk.emplace_back(*it, d + 1);
    }
  };
  for (const auto& r : roots) {
    if (r.placeholder) {
      lines.push_back({0, std::nullopt, std::string(placeholders[r.index].first), false, 0});
      emit_subtrees(placeholders[r.index].second, 1);
    } else {
      emit_subtrees({r.index}, 0);
    }
  }
  return lines;
}

}  // namespace meshbus::detail
