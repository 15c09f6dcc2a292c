#!/usr/bin/env bash
# perf/plot.py turns meshbus-perf JSON lines (recorded samples here) into PNG charts.
# Skipped (exit 77) without gnuplot.
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")
if ! command -v gnuplot >/dev/null; then
  echo "SKIPPED: gnuplot is not installed (Debian: apt-get install gnuplot-nox)"
  exit 77
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
python3 "$here/../../perf/plot.py" "$out" "$here/throughput_best_effort.jsonl" "$here/throughput_reliable.jsonl" \
  --latency "$here/latency.jsonl"
for chart in throughput_events throughput_mb latency; do
  file="$out/$chart.png"
  [[ -s $file ]] || { echo "missing $file"; exit 1; }
  # A PNG, and not a tiny empty one.
  [[ $(head -c 8 "$file" | od -An -tx1 | tr -d ' \n') == 89504e470d0a1a0a ]] || { echo "$file is not a PNG"; exit 1; }
  (( $(stat -c %s "$file") > 10000 )) || { echo "$file is too small to hold a chart"; exit 1; }
done
grep -q "^1024 " "$out/meshbus_best_effort.dat"
grep -q "^64 " "$out/raw.dat"
echo "charts written and checked"
