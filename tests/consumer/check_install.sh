#!/usr/bin/env bash
# Installs the build tree into a temporary prefix, then builds and runs tests/consumer
# against it twice: with find_package(meshbus CONFIG REQUIRED), and without CMake
# through pkg-config (meshbus.pc).
set -euo pipefail
usage="usage: check_install.sh BUILD_DIR CONSUMER_SOURCE_DIR [CXX]"
build_dir=${1:?$usage}
consumer_src=${2:?$usage}
cxx=${3:-${CXX:-c++}}
work=$(mktemp -d /tmp/meshbus-install.XXXXXX)
trap 'rm -rf "$work"' EXIT
cmake --install "$build_dir" --prefix "$work/prefix" >"$work/install.log"
test -f "$work/prefix/lib/cmake/meshbus/meshbusConfig.cmake" || { echo "FAIL: no meshbusConfig.cmake installed (configure with MESHBUS_INSTALL=ON)"; exit 1; }
test -f "$work/prefix/include/meshbus/meshbus.hpp"
test -f "$work/prefix/include/meshbus/detail/typed_codec.hpp" || { echo "FAIL: include/meshbus/detail/ not installed"; exit 1; }
if grep -rq 'zmq.hpp' "$work/prefix/include/meshbus"; then
  echo "FAIL: an installed public header includes zmq.hpp"; exit 1
fi

echo "== find_package(meshbus CONFIG)"
cmake -S "$consumer_src" -B "$work/build" -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_CXX_COMPILER="$cxx" \
  >"$work/configure.log" 2>&1 || { cat "$work/configure.log"; exit 1; }
cmake --build "$work/build" -j2 >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
"$work/build/consumer"

echo "== pkg-config meshbus"
pc=$(find "$work/prefix" -name meshbus.pc -print -quit)
test -n "$pc" || { echo "FAIL: no meshbus.pc installed"; exit 1; }
export PKG_CONFIG_PATH
PKG_CONFIG_PATH="$(dirname "$pc")"  # searched before the system's directories
flags=$(pkg-config --cflags --static --libs meshbus) || { echo "FAIL: pkg-config meshbus"; exit 1; }
echo "pkg-config --cflags --static --libs meshbus: $flags"
# shellcheck disable=SC2086 # the flags are words
"$cxx" -std=c++20 "$consumer_src/main.cpp" "$consumer_src/typed.cpp" -o "$work/consumer-pc" $flags \
  >"$work/pc-build.log" 2>&1 || { cat "$work/pc-build.log"; exit 1; }
"$work/consumer-pc"
