#!/usr/bin/env bash
# A publisher and a subscriber in two network namespaces on a bridge (in a third,
# hub namespace). iptables in the subscriber's namespace cuts every packet between
# them for 5 seconds, then the partition heals. Every event must arrive, once, in
# order, with no loss notice, and the publisher must flush. Two variants:
#   long-expiry  30,000 events at 3,000/s, peers expire after 15 s (they outlive the
#                partition); the cut starts once the subscriber has 6,000.
#   defaults     the library's own timing (--defaults 1: 1 s beacons, 5 s expiry), so
#                the partition lasts as long as the expiry: 6,000 events at 1,000/s,
#                the cut starts 2.0 s after the publisher starts publishing (it printed
#                "ready yes"). The publisher's history holds every event, so a healed
#                partition must lose nothing, whether or not a peer was declared gone.
# Needs root and iproute2/iptables; exits 77 (ctest: skipped) otherwise.
set -euo pipefail
usage="usage: netns_partition.sh defaults|long-expiry PATH_TO_STREAM_PUB PATH_TO_STREAM_SUB"
variant=${1:?$usage}
pub_bin=${2:?$usage}
sub_bin=${3:?$usage}
case $variant in
  long-expiry)
    count=30000 rate=3000 timeout_ms=120000
    timing=(--beacon-ms 200 --expiry-ms 15000)
    ;;
  defaults)
    count=6000 rate=1000 timeout_ms=60000
    timing=(--defaults 1)
    ;;
  *) echo "$usage" >&2; exit 2 ;;
esac

skip() { echo "SKIP: $*"; exit 77; }
[[ $(id -u) -eq 0 ]] || skip "needs root for network namespaces"
command -v ip >/dev/null || skip "iproute2 (ip) is not installed"
command -v iptables >/dev/null || skip "iptables is not installed"

tag="mp$$"
hub="${tag}-hub"
nodes=("${tag}-1" "${tag}-2")
workdir=$(mktemp -d /tmp/meshbus-partition.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  for ns in "${nodes[@]}" "$hub"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$workdir"
}
trap cleanup EXIT

ip netns add "$hub" 2>/dev/null || skip "cannot create network namespaces here"
ip -n "$hub" link add br0 type bridge
ip -n "$hub" link set br0 up
for i in 1 2; do
  ns=${nodes[$((i - 1))]}
  ip netns add "$ns"
  ip -n "$hub" link add "h$i" type veth peer name mb0 netns "$ns"
  ip -n "$hub" link set "h$i" master br0 up
  ip -n "$ns" addr add "10.77.0.$i/24" broadcast 10.77.0.255 dev mb0
  ip -n "$ns" link set mb0 up
  ip -n "$ns" link set lo up
done

common=(--cluster "partition-$$" --interface mb0 "${timing[@]}" --timeout-ms "$timeout_ms")
ip netns exec "${nodes[1]}" "$sub_bin" "${common[@]}" --expect "$count" >"$workdir/sub.out" 2>"$workdir/sub.err" &
pids+=($!)
ip netns exec "${nodes[0]}" "$pub_bin" "${common[@]}" --count "$count" --rate "$rate" >"$workdir/pub.out" 2>"$workdir/pub.err" &
pids+=($!)

# Waits (up to 30 s) until FILE has a line PATTERN.
wait_for_line() {
  for _ in $(seq 1 600); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.05
  done
  grep -q "$2" "$1"
}
if [[ $variant == defaults ]]; then
  wait_for_line "$workdir/pub.out" "ready yes" || { echo "FAIL: the publisher never found the subscriber"; tail -n 5 "$workdir"/*; exit 1; }
  sleep 2.0
else
  wait_for_line "$workdir/sub.out" "progress 6000" || { echo "FAIL: the stream never got going"; tail -n 5 "$workdir"/*; exit 1; }
fi
echo "partition: cutting 10.77.0.1 <-> 10.77.0.2 for 5 s"
ip netns exec "${nodes[1]}" iptables -A INPUT -s 10.77.0.1 -j DROP
ip netns exec "${nodes[1]}" iptables -A OUTPUT -d 10.77.0.1 -j DROP
before=$(grep -c progress "$workdir/sub.out" || true)
sleep 5
during=$(grep -c progress "$workdir/sub.out" || true)
dropped=$(ip netns exec "${nodes[1]}" iptables -L INPUT -v -n -x | awk '/DROP/ {print $1}')
ip netns exec "${nodes[1]}" iptables -F
echo "partition healed: ${dropped:-0} packets dropped; progress lines before $before, after 5 s $during"
echo "pub at the heal: $(grep progress "$workdir/pub.out" | tail -1)"

status=0
pub_rc=0 sub_rc=0
wait "${pids[1]}" || pub_rc=$?
wait "${pids[0]}" || sub_rc=$?
pids=()
[[ $pub_rc -eq 0 && $sub_rc -eq 0 ]] || status=1
echo "sub (exit $sub_rc): $(tail -1 "$workdir/sub.out")"
echo "pub (exit $pub_rc): $(tail -1 "$workdir/pub.out")"
grep -q "\"received\":$count,\"out_of_order\":0" "$workdir/sub.out" || status=1
grep -q '"events_lost":0' "$workdir/sub.out" || status=1
grep -q '"flushed":true' "$workdir/pub.out" || status=1
[[ ${dropped:-0} -gt 0 ]] || { echo "FAIL: the partition dropped nothing"; status=1; }
if [[ $status -eq 0 ]]; then
  echo "PASS ($variant): 5 s partition healed with 0 lost, order kept"
else
  echo "FAIL ($variant): sub exit and summary above; progress and errors:"
  grep -H -E "progress|ready|loss" "$workdir"/*.out | tail -n 20
  cat "$workdir"/*.err
fi
exit $status
