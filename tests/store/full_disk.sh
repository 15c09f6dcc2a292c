#!/usr/bin/env bash
# A data directory on a small tmpfs that fills up while `meshbus pub` writes to it, with
# default options (durability always): the log refuses writes (publish() returns
# store_failed, the fault names the file), nothing accepted is lost, and publishing goes
# on by itself once space returns. Then `meshbus log` finds every event, in order; and
# a copy of that log on a read-only file system is readable offline but refused as a
# node's data directory. Root only (mount); exit 77 (skipped) otherwise.
# Usage: full_disk.sh MESHBUS_TOOL
set -euo pipefail
tool=$1
if [[ $(id -u) -ne 0 ]]; then
  echo "skipped: mounting a tmpfs needs root"
  exit 77
fi
work=$(mktemp -d /tmp/meshbus-full-XXXXXX)
mnt=$work/mnt
mkdir "$mnt"
if ! mount -t tmpfs -o size=16m tmpfs "$mnt"; then
  echo "skipped: cannot mount a tmpfs"
  rmdir "$mnt" "$work"
  exit 77
fi
pub_pid=
cleanup() {
  if [[ -n $pub_pid ]]; then
    kill "$pub_pid" 2>/dev/null || true
    wait "$pub_pid" 2>/dev/null || true
  fi
  umount "$mnt" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# 12 of the 16 MiB taken: about 4 MiB left for a log of 8 MiB of events.
head -c $((12 * 1024 * 1024)) /dev/zero > "$mnt/filler"
count=8000
payload=$(head -c 1000 /dev/zero | tr '\0' 'x')
cluster=full-$$-$RANDOM
"$tool" pub --cluster "$cluster" --data-dir "$mnt/log" --wait 0 --count $count --timeout 120000 \
  full.test "{n} $payload" 2> "$work/pub.err" &
pub_pid=$!

# The disk fills: the fault is reported, and the publisher waits (it does not exit).
for _ in $(seq 1 300); do
  grep -q "is full" "$work/pub.err" && break
  if ! kill -0 "$pub_pid" 2>/dev/null; then
    echo "FAIL: meshbus pub ended before the disk filled up"; cat "$work/pub.err"; exit 1
  fi
  sleep 0.1
done
if ! grep -q "is full" "$work/pub.err"; then
  echo "FAIL: no 'is full' fault within 30 s"; cat "$work/pub.err"; exit 1
fi
grep -m1 "is full" "$work/pub.err"
kill -0 "$pub_pid" || { echo "FAIL: meshbus pub gave up on a full disk"; cat "$work/pub.err"; exit 1; }

# Space returns: publishing goes on by itself and completes.
rm "$mnt/filler"
if ! wait "$pub_pid"; then
  pub_pid=
  echo "FAIL: meshbus pub did not complete after space returned"; cat "$work/pub.err"; exit 1
fi
pub_pid=
grep -q "takes writes again" "$work/pub.err" || true

# Every event, once, in order, in the log.
"$tool" log "$mnt/log" --topic full.test > "$work/log.txt"
lines=$(wc -l < "$work/log.txt")
seqs=$(grep -o ' #[0-9]*' "$work/log.txt" | tr -d ' #' | tr '\n' ' ')
expected=$(seq 1 $count | tr '\n' ' ')
if [[ $lines -ne $count || "$seqs" != "$expected" ]]; then
  echo "FAIL: the log holds $lines events, expected $count in order"; head -3 "$work/log.txt"; exit 1
fi
values=$(awk '{print $(NF-1)}' "$work/log.txt" | tr '\n' ' ')
if [[ "$values" != "$expected" ]]; then
  echo "FAIL: payloads out of order"; exit 1
fi
echo "ok: the disk filled up, publishing waited, and all $count events are in the log in order"

# The same log on a read-only file system: readable with `meshbus log`, refused (with
# what to do) as a node's data directory.
ro=$work/ro
mkdir "$ro"
mount -t tmpfs -o size=32m tmpfs "$ro"
cp -a "$mnt/log" "$ro/log"
mount -o remount,ro "$ro"
ro_cleanup() { umount "$ro" 2>/dev/null || true; cleanup; }
trap ro_cleanup EXIT
if ! "$tool" log "$ro/log" --topic full.test > "$work/ro-log.txt" 2> "$work/ro-log.err"; then
  echo "FAIL: meshbus log cannot read a log on a read-only file system"; cat "$work/ro-log.err"; exit 1
fi
[[ $(wc -l < "$work/ro-log.txt") -eq $count ]] || { echo "FAIL: the read-only copy lacks events"; exit 1; }
if "$tool" pub --cluster "$cluster" --data-dir "$ro/log" --wait 0 full.test x 2> "$work/ro-pub.err"; then
  echo "FAIL: a node opened a data directory on a read-only file system"; exit 1
fi
if ! grep -q "$ro/log" "$work/ro-pub.err" || ! grep -qi "read-only\|not writable" "$work/ro-pub.err"; then
  echo "FAIL: the error does not name the directory and say it is read-only"; cat "$work/ro-pub.err"; exit 1
fi
grep -m1 "$ro/log" "$work/ro-pub.err"
echo "ok: a read-only copy of the log is readable offline and refused as a data directory"
