// CLI11 for the meshbus programs (the tool, the demos, the perf driver), included in one
// place: GCC 12 reports a false -Wnull-dereference inside CLI11's inlined string splitting.
#pragma once

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <CLI/CLI.hpp>
#pragma GCC diagnostic pop
