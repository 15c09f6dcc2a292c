#!/usr/bin/env bash
# Runs a browser test (its command line follows) when Chromium and Node.js are here;
# otherwise says what is missing and exits 77, which ctest reports as skipped.
chromium=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
if [[ -z $chromium ]]; then
  echo "SKIPPED: Chromium is not installed (Debian: apt-get install chromium); the dashboard test drives it"
  exit 77
fi
if ! command -v node >/dev/null; then
  echo "SKIPPED: Node.js is not installed (Debian: apt-get install nodejs); it drives Chromium for the dashboard test"
  exit 77
fi
export CHROMIUM=$chromium
exec "$@"
