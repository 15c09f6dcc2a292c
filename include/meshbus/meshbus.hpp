/// @file
/// Everything a meshbus user needs: #include <meshbus/meshbus.hpp>
#pragma once

#include "meshbus/error.hpp"
#include "meshbus/event.hpp"
#include "meshbus/node.hpp"
#include "meshbus/options.hpp"
#include "meshbus/report.hpp"
#include "meshbus/stats.hpp"
#include "meshbus/topic.hpp"
#include "meshbus/types.hpp"
