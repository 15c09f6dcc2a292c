#!/usr/bin/env bash
# A publisher and a subscriber in two network namespaces on a bridge (in a third,
# hub namespace). The publisher sends 30,000 events at 3,000/s; after the subscriber
# has 6,000, iptables cuts every packet between them for 5 seconds, then the
# partition heals. Every event must arrive, once, in order, with no loss notice.
# Needs root and iproute2/iptables; exits 77 (ctest: skipped) otherwise.
set -euo pipefail
pub_bin=${1:?usage: netns_partition.sh PATH_TO_STREAM_PUB PATH_TO_STREAM_SUB}
sub_bin=${2:?usage: netns_partition.sh PATH_TO_STREAM_PUB PATH_TO_STREAM_SUB}

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

# Peers must outlive the partition: expiry 15 s.
common=(--cluster "partition-$$" --interface mb0 --beacon-ms 200 --expiry-ms 15000 --timeout-ms 120000)
ip netns exec "${nodes[1]}" "$sub_bin" "${common[@]}" --expect 30000 >"$workdir/sub.out" 2>"$workdir/sub.err" &
pids+=($!)
ip netns exec "${nodes[0]}" "$pub_bin" "${common[@]}" --count 30000 --rate 3000 >"$workdir/pub.out" 2>"$workdir/pub.err" &
pids+=($!)

for _ in $(seq 1 600); do
  grep -q "progress 6000" "$workdir/sub.out" 2>/dev/null && break
  sleep 0.05
done
grep -q "progress 6000" "$workdir/sub.out" || { echo "FAIL: the stream never got going"; cat "$workdir"/*; exit 1; }
echo "partition: cutting 10.77.0.1 <-> 10.77.0.2 for 5 s"
ip netns exec "${nodes[1]}" iptables -A INPUT -s 10.77.0.1 -j DROP
ip netns exec "${nodes[1]}" iptables -A OUTPUT -d 10.77.0.1 -j DROP
before=$(grep -c progress "$workdir/sub.out" || true)
sleep 5
during=$(grep -c progress "$workdir/sub.out" || true)
dropped=$(ip netns exec "${nodes[1]}" iptables -L INPUT -v -n -x | awk '/DROP/ {print $1}')
ip netns exec "${nodes[1]}" iptables -F
echo "partition healed: ${dropped:-0} packets dropped; progress lines before $before, after 5 s $during"

status=0
wait "${pids[1]}" || status=1
wait "${pids[0]}" || status=1
pids=()
echo "sub: $(tail -1 "$workdir/sub.out")"
echo "pub: $(tail -1 "$workdir/pub.out")"
grep -q '"received":30000,"out_of_order":0' "$workdir/sub.out" || status=1
grep -q '"events_lost":0' "$workdir/sub.out" || status=1
grep -q '"flushed":true' "$workdir/pub.out" || status=1
[[ ${dropped:-0} -gt 0 ]] || { echo "FAIL: the partition dropped nothing"; status=1; }
[[ $status -eq 0 ]] && echo "PASS: 5 s partition healed with 0 lost, order kept" || { echo "FAIL"; cat "$workdir"/*.err; }
exit $status
