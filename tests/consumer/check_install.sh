#!/usr/bin/env bash
# Installs the build tree into a temporary prefix, then configures, builds and runs
# tests/consumer against it with find_package(meshbus CONFIG REQUIRED).
set -euo pipefail
build_dir=${1:?usage: check_install.sh BUILD_DIR CONSUMER_SOURCE_DIR}
consumer_src=${2:?usage: check_install.sh BUILD_DIR CONSUMER_SOURCE_DIR}
work=$(mktemp -d /tmp/meshbus-install.XXXXXX)
trap 'rm -rf "$work"' EXIT
cmake --install "$build_dir" --prefix "$work/prefix" >"$work/install.log"
test -f "$work/prefix/lib/cmake/meshbus/meshbusConfig.cmake" || { echo "FAIL: no meshbusConfig.cmake installed (configure with MESHBUS_INSTALL=ON)"; exit 1; }
test -f "$work/prefix/include/meshbus/meshbus.hpp"
if grep -rq 'zmq.hpp' "$work/prefix/include/meshbus"; then
  echo "FAIL: an installed public header includes zmq.hpp"; exit 1
fi
cmake -S "$consumer_src" -B "$work/build" -DCMAKE_PREFIX_PATH="$work/prefix" >"$work/configure.log" 2>&1 ||
  { cat "$work/configure.log"; exit 1; }
cmake --build "$work/build" -j2 >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
"$work/build/consumer"
