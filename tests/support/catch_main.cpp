// Catch2 main for the meshbus test binaries.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
