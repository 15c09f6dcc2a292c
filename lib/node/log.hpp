// The meshbus logger; fault kinds and their rate-limited reporting are in faults.hpp.
//
// Logging never throws. Bad input is logged when a cause is first seen on a node and
// then at most once per quiet period (naming the counter that keeps counting), never
// per packet.
#pragma once

#include <memory>

#include <spdlog/spdlog.h>

#include "lib/node/faults.hpp"

namespace meshbus::detail {

/// The shared "meshbus" logger (stderr). Level from MESHBUS_LOG (trace, debug,
/// info, warn, error, off); default warn.
spdlog::logger& logger();

}  // namespace meshbus::detail
