#!/usr/bin/env python3
"""A randomized fault schedule against a small meshbus deployment, then a checker.

Eight nodes (tests/procs/chaos_node.cpp), each in its own network namespace on a
bridge (the bridge in a hub namespace, so nothing touches this machine's interfaces):
two publishers (pa: two topics, pb: one), a subscriber in each delivery mode (be,
rel, ack) and a service group of three members (g1, g2, g3), all with the library's
default timing (--defaults 1: peers expire after 5 s). Every node records what it
published, received and was told was lost (chaos_node.cpp says how).

From a seed, random.Random(seed) draws the schedule before anything runs, so the same
seed (with the same duration) gives the same schedule:
  partition   the namespaces split in two sides that drop each other's packets
  one-way     one namespace drops what comes from another, not what goes to it
  pause       SIGSTOP, SIGCONT up to 10 s later
  kill        SIGKILL, restarted (same node id, a new epoch and record) 0.5-3 s later
  injector    some incarnations run with MESHBUS_FAULTS (drop/dup/reorder/delay, a
              seed drawn from the schedule's; sometimes a cut of the link)
At the end everything heals, the publishers stop and flush, the driver waits until no
record grows, stops every node with SIGTERM and runs the checker (chaos_check.py).

Exit status: 0 no violation, 1 violations, 2 harness failure, 77 skipped (not root,
no ip netns or iptables). Needs root.

Usage: chaos.py --node PATH_TO_CHAOS_NODE [--seed N] [--duration SECONDS]
                [--workdir DIR] [--keep] [--rate EVENTS_PER_S] [--schedule-only]
"""
import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chaos_check  # noqa: E402

SUBNET = "10.78.0"
# name, role arguments
PROCS = [
    ("pa", ["--publish", "chaos.a.one,chaos.a.two"]),
    ("pb", ["--publish", "chaos.b.one"]),
    ("be", ["--subscribe", "chaos.**", "--mode", "best_effort"]),
    ("rel", ["--subscribe", "chaos.**", "--mode", "reliable"]),
    ("ack", ["--subscribe", "chaos.**", "--mode", "acknowledged"]),
    ("g1", ["--subscribe", "chaos.**", "--group", "workers"]),
    ("g2", ["--subscribe", "chaos.**", "--group", "workers"]),
    ("g3", ["--subscribe", "chaos.**", "--group", "workers"]),
]
PUBLISHERS = ("pa", "pb")
SUBSCRIBERS = [n for n, _ in PROCS if n not in PUBLISHERS]
GROUP = ("g1", "g2", "g3")
NAMES = [n for n, _ in PROCS]


def now_ms():
    return int(time.monotonic() * 1000)  # CLOCK_MONOTONIC, as the nodes record


def log(text):
    print(text, flush=True)


# --- the schedule: a pure function of (seed, duration) ------------------------------
def injector_plan(rng, duration):
    """A MESHBUS_FAULTS value, or None (most incarnations run without)."""
    if rng.random() >= 0.35:
        return None
    items = [f"drop={rng.uniform(0.002, 0.05):.3f}", f"dup={rng.uniform(0, 0.02):.3f}",
             f"reorder={rng.uniform(0, 0.05):.3f}", f"delay={rng.uniform(0, 0.05):.3f}",
             f"max_delay_ms={rng.randint(1, 20)}"]
    if rng.random() < 0.3:
        items += [f"cut_at_ms={rng.randint(1000, max(1000, int(duration * 1000)))}",
                  f"cut_for_ms={rng.randint(500, 8000)}"]
    items.append(f"seed={rng.randrange(1, 2**31)}")
    return ",".join(items)


def make_schedule(seed, duration):
    """Node ids, the initial injector plans and the timed faults, all from the seed."""
    rng = random.Random(seed)
    node_ids = {n: "%032x" % rng.getrandbits(128) for n in NAMES}
    initial_faults = {n: injector_plan(rng, duration) for n in NAMES}
    faults = []
    busy = {n: 0.0 for n in NAMES}  # paused or down until then
    t = rng.uniform(2, 5)
    k = 0
    while t < duration:
        kind = rng.choices(["partition", "one-way", "pause", "kill"], weights=[3, 2, 3, 2])[0]
        k += 1
        if kind == "partition":
            side = rng.sample(NAMES, rng.randint(1, 3))
            dur = rng.uniform(1, 10)
            faults.append({"id": k, "kind": kind, "at": t, "for": dur, "side": sorted(side),
                           "what": f"#{k} partition {{{','.join(sorted(side))}}} | rest for {dur:.1f} s"})
        elif kind == "one-way":
            dst, src = rng.sample(NAMES, 2)
            dur = rng.uniform(1, 10)
            faults.append({"id": k, "kind": kind, "at": t, "for": dur, "dst": dst, "src": src,
                           "what": f"#{k} one-way: {dst} drops what comes from {src} for {dur:.1f} s"})
        else:
            free = [n for n in NAMES if busy[n] <= t]
            if kind == "kill":
                # At most one member of the group down at a time: the group stays a group.
                if any(busy[g] > t for g in GROUP):
                    free = [n for n in free if n not in GROUP]
            if not free:
                t += rng.uniform(1, 6)
                continue
            target = rng.choice(free)
            if kind == "pause":
                dur = rng.uniform(0.5, 10)
                faults.append({"id": k, "kind": kind, "at": t, "for": dur, "target": target,
                               "what": f"#{k} pause {target} for {dur:.1f} s"})
            else:
                dur = rng.uniform(0.5, 3)
                plan = injector_plan(rng, duration)
                faults.append({"id": k, "kind": kind, "at": t, "for": dur, "target": target, "faults": plan,
                               "what": f"#{k} kill -9 {target}, restart after {dur:.1f} s"
                                       + (f" with MESHBUS_FAULTS={plan}" if plan else "")})
            busy[target] = t + dur + 0.5
        t += rng.uniform(1, 6)
    return {"node_ids": node_ids, "initial_faults": initial_faults, "faults": faults}


# --- the network ---------------------------------------------------------------------
class Network:
    def __init__(self, tag):
        self.hub = f"{tag}-hub"
        self.ns = {n: f"{tag}-{n}" for n in NAMES}
        self.ip = {n: f"{SUBNET}.{i + 1}" for i, n in enumerate(NAMES)}
        self.created = []

    def sh(self, *cmd, check=True):
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if check and r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()}")
        return r

    def setup(self):
        self.sh("ip", "netns", "add", self.hub)
        self.created.append(self.hub)
        self.sh("ip", "-n", self.hub, "link", "add", "br0", "type", "bridge")
        self.sh("ip", "-n", self.hub, "link", "set", "br0", "up")
        for i, n in enumerate(NAMES):
            ns = self.ns[n]
            self.sh("ip", "netns", "add", ns)
            self.created.append(ns)
            self.sh("ip", "-n", self.hub, "link", "add", f"h{i}", "type", "veth", "peer", "name", "mb0", "netns", ns)
            self.sh("ip", "-n", self.hub, "link", "set", f"h{i}", "master", "br0", "up")
            self.sh("ip", "-n", ns, "addr", "add", f"{self.ip[n]}/24", "broadcast", f"{SUBNET}.255", "dev", "mb0")
            self.sh("ip", "-n", ns, "link", "set", "mb0", "up")
            self.sh("ip", "-n", ns, "link", "set", "lo", "up")

    def drop(self, ns_name, src, add=True):
        """In ns_name's namespace, drop every packet from src (add) or stop dropping (remove)."""
        op = "-A" if add else "-D"
        self.sh("ip", "netns", "exec", self.ns[ns_name], "iptables", op, "INPUT", "-s", self.ip[src], "-j", "DROP",
                check=add)

    def drop_both(self, a, b, add=True):
        op = "-A" if add else "-D"
        self.drop(a, b, add)
        self.sh("ip", "netns", "exec", self.ns[a], "iptables", op, "OUTPUT", "-d", self.ip[b], "-j", "DROP",
                check=add)

    def heal_all(self):
        for n in NAMES:
            for chain in ("INPUT", "OUTPUT"):
                self.sh("ip", "netns", "exec", self.ns[n], "iptables", "-F", chain, check=False)

    def dropped_packets(self, names=None):
        total = 0
        for n in names or NAMES:
            r = self.sh("ip", "netns", "exec", self.ns[n], "iptables", "-L", "-v", "-n", "-x", check=False)
            for line in r.stdout.splitlines():
                w = line.split()
                if len(w) > 2 and w[2] == "DROP" and w[0].isdigit():
                    total += int(w[0])
        return total

    def teardown(self):
        for ns in reversed(self.created):
            self.sh("ip", "netns", "del", ns, check=False)


# --- the nodes -------------------------------------------------------------------------
class Nodes:
    def __init__(self, binary, net, workdir, cluster, node_ids, rate):
        self.binary = binary
        self.net = net
        self.workdir = workdir
        self.cluster = cluster
        self.node_ids = node_ids
        self.rate = rate
        self.proc = {}  # name -> Popen of the current incarnation
        self.inc = {n: 0 for n in NAMES}
        self.incarnations = []  # metadata for the checker
        self.current = {}  # name -> its metadata entry
        self.paused = set()

    def start(self, name, faults):
        self.inc[name] += 1
        k = self.inc[name]
        record = os.path.join(self.workdir, f"{name}.{k}.rec")
        role = dict(PROCS)[name]
        cmd = ["ip", "netns", "exec", self.net.ns[name], self.binary, "--defaults", "1", "--cluster", self.cluster,
               "--interface", "mb0", "--name", name, "--node-id", self.node_ids[name], "--record", record] + role
        if name in PUBLISHERS:
            cmd += ["--rate", str(self.rate), "--wait-subscribers", str(len(SUBSCRIBERS))]
        env = dict(os.environ)
        env.pop("MESHBUS_FAULTS", None)
        if faults:
            env["MESHBUS_FAULTS"] = faults
        out = open(os.path.join(self.workdir, f"{name}.{k}.out"), "w")
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        out.close()
        self.proc[name] = p
        meta = {"proc": name, "inc": k, "record": record, "killed": False, "start_ms": now_ms(), "end_ms": None,
                "faults": faults, "pid": p.pid}
        self.incarnations.append(meta)
        self.current[name] = meta

    def record_of(self, name):
        return self.current[name]["record"]

    def has_line(self, name, prefix):
        try:
            with open(self.record_of(name)) as f:
                return any(line.startswith(prefix) for line in f)
        except FileNotFoundError:
            return False

    def signal(self, name, sig):
        p = self.proc.get(name)
        if p is not None and p.poll() is None:
            os.kill(p.pid, sig)

    def kill(self, name):
        self.signal(name, signal.SIGKILL)
        self.proc[name].wait()
        self.current[name]["killed"] = True
        self.current[name]["end_ms"] = now_ms()
        self.paused.discard(name)

    def pause(self, name):
        self.signal(name, signal.SIGSTOP)
        self.paused.add(name)

    def resume(self, name):
        self.signal(name, signal.SIGCONT)
        self.paused.discard(name)

    def record_sizes(self):
        sizes = {}
        for m in self.incarnations:
            try:
                sizes[m["record"]] = os.path.getsize(m["record"])
            except FileNotFoundError:
                sizes[m["record"]] = -1
        return sizes

    def terminate_all(self, timeout=30):
        for n in NAMES:
            self.resume(n)
            self.signal(n, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        unclean = []
        for n in NAMES:
            p = self.proc[n]
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                unclean.append(n)
            self.current[n]["end_ms"] = now_ms()
            if p.returncode != 0:
                unclean.append(f"{n} (exit {p.returncode})")
        return unclean

    def kill_all(self):
        for n, p in self.proc.items():
            if p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGCONT)
                    os.kill(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()


def wait_for(cond, timeout, step=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


# --- one run ---------------------------------------------------------------------------
def run(args):
    sched = make_schedule(args.seed, args.duration)
    log(f"chaos: seed {args.seed}, duration {args.duration} s, rate {args.rate}/s per topic "
        f"(reproduce: chaos.py --node {args.node} --seed {args.seed} --duration {args.duration})")
    for n in NAMES:
        if sched["initial_faults"][n]:
            log(f"  {n}: MESHBUS_FAULTS={sched['initial_faults'][n]}")
    log("schedule:")
    for f in sched["faults"]:
        log(f"  {f['at']:6.1f}s  {f['what']}")

    tag = f"mc{os.getpid()}"
    net = Network(tag)
    workdir = args.workdir or tempfile.mkdtemp(prefix="meshbus-chaos.")
    os.makedirs(workdir, exist_ok=True)
    nodes = Nodes(args.node, net, workdir, f"chaos-{os.getpid()}", sched["node_ids"], args.rate)
    executed = []
    run_info = {"seed": args.seed, "duration": args.duration, "rate": args.rate, "schedule": sched,
                "incarnations": nodes.incarnations, "executed": executed, "t0_ms": now_ms()}

    def save():
        with open(os.path.join(workdir, "run.json"), "w") as f:
            json.dump(run_info, f, indent=1)

    try:
        try:
            net.setup()
        except RuntimeError as e:
            log(f"SKIP: cannot set up network namespaces: {e}")
            return 77
        for n in SUBSCRIBERS:
            nodes.start(n, sched["initial_faults"][n])
        if not wait_for(lambda: all(nodes.has_line(n, "node ") for n in SUBSCRIBERS), 20):
            log("harness: the subscribers did not start")
            return 2
        for n in PUBLISHERS:
            nodes.start(n, sched["initial_faults"][n])
        if not wait_for(lambda: all(nodes.has_line(n, "ready ") for n in PUBLISHERS), 40):
            log("harness: the publishers did not get ready")
            return 2
        for n in PUBLISHERS:
            if not nodes.has_line(n, "ready yes"):
                log(f"harness: note: {n} started publishing before every subscriber was ready")
        t0 = time.monotonic()
        run_info["t0_ms"] = now_ms()
        log(f"running the schedule ({workdir})")

        # The timeline: every fault starts and ends; ends may fall after the duration.
        timeline = []
        for f in sched["faults"]:
            timeline.append((f["at"], 0, f["id"], "start", f))
            timeline.append((f["at"] + f["for"], 1, f["id"], "end", f))
        timeline.sort(key=lambda x: (x[0], x[1], x[2]))
        active = {}
        for at, _, _, phase, f in timeline:
            delay = t0 + at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            stamp = f"[{time.monotonic() - t0:6.1f}s]"
            if phase == "start":
                entry = {"what": f["what"], "start_ms": now_ms(), "end_ms": None, "procs": []}
                active[f["id"]] = entry
                executed.append(entry)
                if f["kind"] == "partition":
                    other = [n for n in NAMES if n not in f["side"]]
                    for a in f["side"]:
                        for b in other:
                            net.drop_both(a, b)
                            net.drop_both(b, a)
                    entry["procs"] = NAMES[:]  # everyone is cut from someone
                elif f["kind"] == "one-way":
                    net.drop(f["dst"], f["src"])
                    entry["procs"] = [f["dst"], f["src"]]
                elif f["kind"] == "pause":
                    nodes.pause(f["target"])
                    entry["procs"] = [f["target"]]
                else:
                    nodes.kill(f["target"])
                    entry["procs"] = [f["target"]]
                log(f"{stamp} start {f['what']}")
            else:
                entry = active.pop(f["id"])
                entry["end_ms"] = now_ms()
                dropped = ""
                if f["kind"] in ("partition", "one-way"):
                    entry["dropped"] = net.dropped_packets(NAMES if f["kind"] == "partition" else [f["dst"]])
                    dropped = f" ({entry['dropped']} packets dropped by the rules then in force)"
                if f["kind"] == "partition":
                    other = [n for n in NAMES if n not in f["side"]]
                    for a in f["side"]:
                        for b in other:
                            net.drop_both(a, b, add=False)
                            net.drop_both(b, a, add=False)
                elif f["kind"] == "one-way":
                    net.drop(f["dst"], f["src"], add=False)
                elif f["kind"] == "pause":
                    nodes.resume(f["target"])
                else:
                    nodes.start(f["target"], f["faults"])
                log(f"{stamp} end   {f['what']}{dropped}")
            save()

        log(f"[{time.monotonic() - t0:6.1f}s] schedule done; healing everything")
        net.heal_all()
        for n in NAMES:
            nodes.resume(n)
        for n in PUBLISHERS:
            nodes.signal(n, signal.SIGUSR1)
        # Restarted publishers may still wait for their subscribers before they publish
        # (and so take SIGUSR1 only then): up to their 10 s wait per topic.
        if not wait_for(lambda: all(nodes.has_line(n, "stopped-publishing") for n in PUBLISHERS), 30, 0.2):
            log("harness: a publisher did not stop publishing in 30 s")
            return 2
        log(f"[{time.monotonic() - t0:6.1f}s] publishers stopped; waiting for quiet")
        # Quiet: no record grew for 12 s (more than the peer expiry) and every publisher's
        # flush() completed; or, with a flush still open, no record grew for 40 s (more
        # than the longest redelivery back-off, 30 s). At most 150 s.
        last = nodes.record_sizes()
        quiet_since = time.monotonic()
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            time.sleep(1)
            sizes = nodes.record_sizes()
            if sizes != last:
                last = sizes
                quiet_since = time.monotonic()
            quiet = time.monotonic() - quiet_since
            flushed = all(nodes.has_line(n, "flushed") for n in PUBLISHERS)
            if (quiet >= 12 and flushed) or quiet >= 40:
                break
        else:
            log("harness: note: the records were still growing after 150 s")
        for n in PUBLISHERS:
            if not nodes.has_line(n, "flushed"):
                log(f"note: {n}: flush() has not completed")
        log(f"[{time.monotonic() - t0:6.1f}s] quiet; stopping every node")
        unclean = nodes.terminate_all()
        if unclean:
            log(f"harness: nodes that did not stop cleanly: {', '.join(unclean)}")
        save()
    finally:
        nodes.kill_all()
        net.teardown()
        save()

    for m in nodes.incarnations:
        with open(m["record"].replace(".rec", ".out")) as f:
            for line in f:
                if line.strip():
                    log(f"  {m['proc']}#{m['inc']}: {line.rstrip()}")
    checker = chaos_check.Checker(workdir)
    checker.check()
    chaos_check.report(checker)
    status = 1 if checker.violations else 0
    if status == 0 and not args.keep and not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        log(f"records kept in {workdir} (check again: python3 {os.path.join(os.path.dirname(__file__), 'chaos_check.py')} "
            f"{workdir})")
    return status


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--node", required=True, help="path to meshbus_test_chaos_node")
    ap.add_argument("--seed", type=int, default=None, help="default: drawn at random and printed")
    ap.add_argument("--duration", type=float, default=60, help="seconds of faults")
    ap.add_argument("--rate", type=int, default=100, help="events per second per topic")
    ap.add_argument("--workdir", help="where the records go (kept)")
    ap.add_argument("--keep", action="store_true", help="keep the records of a run without violations")
    ap.add_argument("--schedule-only", action="store_true", help="print the seed's schedule and exit")
    args = ap.parse_args()
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 1_000_000)
    if args.schedule_only:
        print(json.dumps(make_schedule(args.seed, args.duration), indent=1))
        return 0
    if os.geteuid() != 0:
        print("SKIP: needs root for network namespaces")
        return 77
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            print(f"SKIP: {tool} is not installed")
            return 77
    # A SIGTERM (ctest's time-out, a Ctrl-C) still kills the nodes and deletes the namespaces.
    def interrupted(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)
    if not os.access(args.node, os.X_OK):
        print(f"harness: {args.node} is not an executable")
        return 2
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
