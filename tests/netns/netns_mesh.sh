#!/usr/bin/env bash
# Three hosts in three network namespaces, joined by a bridge that lives in a
# fourth (hub) namespace, so nothing touches this machine's own interfaces.
#   broadcast: nodes discover each other by subnet broadcast on their veth.
#   seed:      iptables drops every beacon in every namespace; nodes 2 and 3 know
#              only node 1 (fixed port) as a seed and must meet each other by gossip.
# Each namespace runs one mesh_peer (10,000 events each, all checked in order).
# Needs root and iproute2/iptables; exits 77 (ctest: skipped) otherwise.
set -euo pipefail
variant=${1:?usage: netns_mesh.sh broadcast|seed PATH_TO_MESH_PEER}
peer_bin=${2:?usage: netns_mesh.sh broadcast|seed PATH_TO_MESH_PEER}

skip() { echo "SKIP: $*"; exit 77; }
[[ $(id -u) -eq 0 ]] || skip "needs root for network namespaces"
command -v ip >/dev/null || skip "iproute2 (ip) is not installed"
[[ $variant != seed ]] || command -v iptables >/dev/null || skip "iptables is not installed"

tag="mb$$"
hub="${tag}-hub"
nodes=("${tag}-1" "${tag}-2" "${tag}-3")
workdir=$(mktemp -d /tmp/meshbus-netns.XXXXXX)
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
for i in 1 2 3; do
  ns=${nodes[$((i - 1))]}
  ip netns add "$ns"
  ip -n "$hub" link add "h$i" type veth peer name mb0 netns "$ns"
  ip -n "$hub" link set "h$i" master br0 up
  ip -n "$ns" addr add "10.77.0.$i/24" broadcast 10.77.0.255 dev mb0
  ip -n "$ns" link set mb0 up
  ip -n "$ns" link set lo up
  if [[ $variant == seed ]]; then
    ip netns exec "$ns" iptables -A INPUT -p udp --dport 5670 -j DROP
  fi
done

cluster="netns-$variant-$$"
common=(--cluster "$cluster" --peers 2 --events 10000 --timeout-ms 120000 --interface mb0)
for i in 1 2 3; do
  ns=${nodes[$((i - 1))]}
  extra=()
  if [[ $variant == seed ]]; then
    if [[ $i == 1 ]]; then extra=(--port 7001); else extra=(--seeds 10.77.0.1:7001); fi
  fi
  ip netns exec "$ns" "$peer_bin" --name "n$i" "${common[@]}" "${extra[@]}" \
    >"$workdir/n$i.out" 2>"$workdir/n$i.err" &
  pids+=($!)
done

status=0
for i in 1 2 3; do
  if ! wait "${pids[$((i - 1))]}"; then status=1; fi
  echo "n$i: $(cat "$workdir/n$i.out")"
  if [[ -s $workdir/n$i.err ]]; then sed "s/^/n$i stderr: /" "$workdir/n$i.err"; fi
  grep -q '"ok":true' "$workdir/n$i.out" || status=1
  grep -q '"received":20000' "$workdir/n$i.out" || status=1
done
pids=()

if [[ $variant == seed ]]; then
  # Prove the beacons were really sent and really dropped.
  dropped=0
  for ns in "${nodes[@]}"; do
    n=$(ip netns exec "$ns" iptables -L INPUT -v -n -x | awk '/dpt:5670/ {print $1}')
    dropped=$((dropped + ${n:-0}))
  done
  echo "beacons dropped by iptables: $dropped"
  [[ $dropped -gt 0 ]] || { echo "FAIL: no beacon was dropped, the seed path was not exercised"; status=1; }
fi

[[ $status -eq 0 ]] && echo "PASS: netns $variant" || echo "FAIL: netns $variant"
exit $status
