// Options resolution: defaults, MESHBUS_* environment variables, validation.
// Every invalid value throws meshbus::error(configuration) naming the option or
// variable and what would be accepted.
#pragma once

#include <string>
#include <vector>

#include "discovery/seeds.hpp"
#include "meshbus/options.hpp"

namespace meshbus::detail {

struct resolved_options {
  Options options;  ///< with defaults and environment filled in
  std::vector<discovery::seed_address> seeds;
};

resolved_options resolve_options(const Options& given);

/// A fresh random node id.
NodeId random_node_id();

}  // namespace meshbus::detail
