// The sensors demo prints through the examples' tagged console (common/console.hpp).
#pragma once

#include "common/console.hpp"

namespace sensors_demo {

using meshbus_examples::console;
using meshbus_examples::highlight;
using meshbus_examples::write_all;

}  // namespace sensors_demo
