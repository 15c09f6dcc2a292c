#!/usr/bin/env python3
"""The checker of the randomized fault schedule: reads the record files the chaos
nodes wrote (tests/procs/chaos_node.cpp) and the driver's run.json, and checks the
promises of meshbus streams:

* per subscriber incarnation and stream (publisher, epoch, topic) it received or was
  notified about: sequence numbers strictly increase; no duplicates (acknowledged:
  duplicates only as re-deliveries of a sequence already seen, counted); no event
  delivered after it was reported lost; the payload is the sequence number;
* never silence: every sequence number from the first the incarnation got or was
  notified of to the last it could expect is delivered or covered by a loss notice.
  The last it could expect is, for an incarnation alive at the end, the last the
  publisher's epoch published; for a killed incarnation, the last it got or was
  notified of (what it had not heard of when killed was never due to it);
* the service group: every event of a publisher epoch that was never killed is
  handled by at least one member incarnation (or reported lost to one), and by at
  most one among the member incarnations that were never killed.

A killed process loses at most the record line it was writing: the last sequence of
a killed publisher epoch is the highest either recorded by it or seen by anyone.

Run alone on a kept work directory: python3 chaos_check.py WORKDIR
"""
import collections
import json
import os
import sys

OPEN_END = 2**64 - 1


class Incarnation:
    def __init__(self, meta):
        self.proc = meta["proc"]
        self.inc = meta["inc"]
        self.path = meta["record"]
        self.killed = meta["killed"]
        self.start_ms = meta["start_ms"]
        self.end_ms = meta.get("end_ms")
        self.node_id = None
        self.epoch = None
        self.role = None
        self.ready = None
        self.ended = False
        self.flushed = False
        self.pubs = collections.defaultdict(dict)  # topic -> {seq: t}
        self.recvs = collections.defaultdict(list)  # (pub, epoch, topic) -> [(seq, payload_ok, t)]
        self.losses = collections.defaultdict(list)  # stream -> [(from, to, reason, t, index)]
        self.order = collections.defaultdict(list)  # stream -> [("recv", seq) | ("loss", from, to)]
        self.stats = {}
        self.peers = []  # (kind, node_id, epoch, t)
        self.errors = []
        self.partial_lines = 0

    @property
    def name(self):
        return f"{self.proc}#{self.inc}"

    def load(self):
        with open(self.path, "rb") as f:
            data = f.read().decode("utf-8", "replace")
        lines = data.split("\n")
        if lines and lines[-1] != "":
            self.partial_lines += 1  # the line a SIGKILL cut short
        for line in lines[:-1]:
            w = line.split(" ")
            kind = w[0]
            try:
                if kind == "node":
                    self.node_id, self.epoch, self.role = w[1], int(w[2]), w[3]
                elif kind == "ready":
                    self.ready = w[1] == "yes"
                elif kind == "pub":
                    self.pubs[w[1]][int(w[2])] = int(w[3])
                elif kind == "recv":
                    stream = (w[1], int(w[2]), w[3])
                    self.recvs[stream].append((int(w[4]), w[5] == "1", int(w[6])))
                    self.order[stream].append(("recv", int(w[4])))
                elif kind == "loss":
                    stream = (w[1], int(w[2]), w[3])
                    self.losses[stream].append((int(w[4]), int(w[5]), w[6], int(w[7])))
                    self.order[stream].append(("loss", int(w[4]), int(w[5])))
                elif kind == "peer":
                    self.peers.append((w[1], w[2], int(w[3]), int(w[4])))
                elif kind == "stat":
                    self.stats[w[1]] = int(w[2])
                elif kind == "flushed":
                    self.flushed = True
                elif kind == "end":
                    self.ended = True
                elif kind == "error":
                    self.errors.append(line)
            except (IndexError, ValueError):
                self.errors.append(f"unreadable record line: {line!r}")


def missing_ranges(lo, hi, covered_points, covered_ranges):
    """Maximal ranges in [lo, hi] covered neither by a point nor by a range."""
    if hi < lo:
        return []
    marks = sorted(covered_ranges)
    out = []
    s = lo
    points = sorted(p for p in covered_points if lo <= p <= hi)
    # Walk the points and ranges in order.
    events = [(p, p) for p in points] + [(a, b) for a, b in marks if b >= lo and a <= hi]
    events.sort()
    for a, b in events:
        if a > s:
            out.append((s, min(a - 1, hi)))
        s = max(s, b + 1)
        if s > hi:
            break
    if s <= hi:
        out.append((s, hi))
    return out


def fmt_range(a, b):
    return str(a) if a == b else f"{a}..{b}"


class Checker:
    def __init__(self, workdir):
        with open(os.path.join(workdir, "run.json")) as f:
            self.run = json.load(f)
        self.seed = self.run["seed"]
        self.incs = [Incarnation(m) for m in self.run["incarnations"]]
        for i in self.incs:
            i.load()
        self.schedule = self.run.get("executed", [])
        self.violations = []  # (kind, text)
        self.notes = []
        self.events_checked = 0
        self.redeliveries = {}
        self.group_loss_covered = 0

    # --- the publishers' side -------------------------------------------------
    def publisher_epochs(self):
        """(node_id, epoch) -> incarnation, for every publisher incarnation."""
        return {(i.node_id, i.epoch): i for i in self.incs if i.role == "publisher" and i.node_id}

    def last_seq(self, stream):
        """The last sequence the epoch published: recorded by it or seen by anyone."""
        pub, epoch, topic = stream
        last = 0
        p = self.pub_epochs.get((pub, epoch))
        if p is not None and p.pubs.get(topic):
            last = max(p.pubs[topic])
        last = max(last, self.seen_max.get(stream, 0))
        return last

    def pub_time(self, stream, seq):
        p = self.pub_epochs.get((stream[0], stream[1]))
        if p is None:
            return None
        return p.pubs.get(stream[2], {}).get(seq)

    # --- context for a violation ------------------------------------------------
    def proc_of_node(self, node_id):
        for i in self.incs:
            if i.node_id == node_id:
                return i.proc
        return "?"

    def context(self, stream, a, b, procs, inc=None):
        """The faults of the schedule around the time sequences a..b were published, and
        what the subscriber incarnation `inc` saw of the publisher meanwhile."""
        t0 = self.pub_time(stream, a)
        t1 = self.pub_time(stream, b) or t0
        if t0 is None:
            return "published at an unrecorded time"
        base = self.run["t0_ms"]
        around = []
        for e in self.schedule:
            if e["end_ms"] < t0 - 12000 or e["start_ms"] > t1 + 2000:
                continue
            if procs & set(e["procs"]):
                around.append(f"{e['what']} [{(e['start_ms'] - base) / 1000:.1f}s..{(e['end_ms'] - base) / 1000:.1f}s]")
        when = f"published at {(t0 - base) / 1000:.1f}s..{(t1 - base) / 1000:.1f}s"
        text = when + ("; faults around then: " + "; ".join(around) if around else "; no fault of these nodes around then")
        if inc is not None:
            seen = [f"{k} {(t - base) / 1000:.1f}s" for k, node, _, t in inc.peers
                    if node == stream[0] and t0 - 12000 <= t <= t1 + 12000]
            if inc.peers:
                text += f"; {inc.name} saw the publisher " + (", ".join(seen) if seen else "with no peer event")
        return text

    def violation(self, kind, text):
        self.violations.append((kind, f"seed {self.seed}: {kind}: {text}"))

    # --- subscribers --------------------------------------------------------------
    def check_subscriber(self, inc):
        mode = inc.role.split(":", 1)[1] if ":" in inc.role else "?"
        group = inc.role.startswith("group:")
        streams = set(inc.recvs) | set(inc.losses)
        redelivered = 0
        for stream in sorted(streams):
            pub, epoch, topic = stream
            pproc = self.proc_of_node(pub)
            label = f"{inc.name} ({inc.role}) stream {pproc}/{pub[:8]} epoch {epoch} {topic}"
            seen = set()
            top = 0
            lost = []
            for item in inc.order[stream]:
                if item[0] == "loss":
                    lost.append((item[1], item[2]))
                    continue
                seq = item[1]
                if any(a <= seq <= b for a, b in lost):
                    self.violation("delivered after reported lost", f"{label}: sequence {seq}")
                if seq in seen:
                    if group or mode == "acknowledged":
                        redelivered += 1
                    else:
                        self.violation("duplicate", f"{label}: sequence {seq} delivered again")
                elif seq < top and not group:
                    self.violation("order", f"{label}: sequence {seq} after {top}")
                seen.add(seq)
                top = max(top, seq)
            for seq, ok, _ in inc.recvs.get(stream, []):
                if not ok:
                    self.violation("payload", f"{label}: sequence {seq} carried another number")
            if group:
                continue  # a member sees a share of each stream: covered by check_group
            ranges = [(a, b) for a, b, _, _ in inc.losses.get(stream, [])]
            known = [s for s in seen] + [a for a, _ in ranges]
            lo = min(known)
            reached = max([s for s in seen] + [b for _, b in ranges if b != OPEN_END] + [lo])
            last = self.last_seq(stream)
            hi = reached if inc.killed else max(reached, last)
            if any(b == OPEN_END for _, b in ranges):
                hi = max(hi, last)
            self.events_checked += max(0, hi - lo + 1)
            for a, b in missing_ranges(lo, hi, seen, ranges):
                tail = a > reached
                pub_inc = self.pub_epochs.get((pub, epoch))
                pub_killed = pub_inc is not None and pub_inc.killed
                if tail:
                    kind = "silent tail after the publisher was killed" if pub_killed else "silent tail"
                else:
                    kind = "silent gap"
                self.violation(kind, f"{label}: {fmt_range(a, b)} ({b - a + 1} events) neither delivered nor "
                               f"reported lost (checked {lo}..{hi}); "
                               + self.context(stream, a, b, {inc.proc, pproc}, inc))
        if redelivered:
            self.redeliveries[inc.name] = redelivered

    # --- the service group -----------------------------------------------------------
    def check_group(self):
        members = [i for i in self.incs if i.role and i.role.startswith("group:")]
        if not members:
            return
        for (pub, epoch), p in sorted(self.pub_epochs.items()):
            if p.killed:
                continue
            if not p.ready:
                self.notes.append(f"{p.name}: publisher was not ready (wait_for_subscribers timed out); group "
                                  "check of its epoch skipped")
                continue
            for topic, pubs in sorted(p.pubs.items()):
                stream = (pub, epoch, topic)
                last = self.last_seq(stream)
                handled = collections.Counter()
                handled_live = collections.defaultdict(list)
                covered = []
                for m in members:
                    for seq, _, _ in m.recvs.get(stream, []):
                        handled[seq] += 1
                        if not m.killed:
                            handled_live[seq].append(m.name)
                    covered += [(a, b) for a, b, _, _ in m.losses.get(stream, [])]
                self.events_checked += last
                label = f"group, stream {p.proc}/{pub[:8]} epoch {epoch} {topic}"
                silent = []
                for a, b in missing_ranges(1, last, set(handled), []):
                    rest = missing_ranges(a, b, set(), covered)
                    self.group_loss_covered += (b - a + 1) - sum(y - x + 1 for x, y in rest)
                    silent += rest
                # One line per stream: what is missing often comes as every n-th event (one
                # member's share).
                if silent:
                    n = sum(y - x + 1 for x, y in silent)
                    a, b = silent[0][0], silent[-1][1]
                    shown = ", ".join(fmt_range(x, y) for x, y in silent[:10]) + (", ..." if len(silent) > 10 else "")
                    self.violation("group: never handled",
                                   f"{label}: {n} events in {fmt_range(a, b)} ({shown}) handled by no member and "
                                   "reported lost to none; " + self.context(stream, a, b, {p.proc, "g1", "g2", "g3"}))
                # Duplicates come in many short runs (a batch each): one line per set of members.
                by_members = collections.defaultdict(list)
                for seq, names in handled_live.items():
                    # The same member again is a redelivery (allowed, counted above).
                    if len(set(names)) > 1:
                        by_members[", ".join(sorted(set(names)))].append(seq)
                for names, seqs in sorted(by_members.items()):
                    seqs.sort()
                    rs = runs(seqs)
                    shown = ", ".join(fmt_range(a, b) for a, b in rs[:10]) + (", ..." if len(rs) > 10 else "")
                    self.violation("group: handled twice by members never killed",
                                   f"{label}: {len(seqs)} events in {fmt_range(seqs[0], seqs[-1])} by {names} "
                                   f"({shown}); " + self.context(stream, seqs[0], seqs[-1], {p.proc, "g1", "g2", "g3"}))

    def check(self):
        self.pub_epochs = self.publisher_epochs()
        self.seen_max = {}
        for i in self.incs:
            for stream, recvs in i.recvs.items():
                self.seen_max[stream] = max([self.seen_max.get(stream, 0)] + [s for s, _, _ in recvs])
        for i in self.incs:
            if i.node_id is None:
                self.notes.append(f"{i.name}: the record has no node line (killed before it started?)")
                continue
            for e in i.errors:
                self.notes.append(f"{i.name}: {e}")
            if not i.killed and not i.ended:
                self.violation("no clean end", f"{i.name} was not killed but its record has no end line")
            if i.role == "publisher" and not i.killed and i.ready is not None and not i.flushed:
                self.notes.append(f"{i.name}: flush() never completed: "
                                  f"{i.stats.get('unacknowledged_events', '?')} events unacknowledged at the end")
        for i in self.incs:
            if i.node_id is not None and i.role != "publisher":
                self.check_subscriber(i)
        self.check_group()
        return self.violations


def runs(sorted_seqs):
    out = []
    for s in sorted_seqs:
        if out and out[-1][1] + 1 == s:
            out[-1][1] = s
        else:
            out.append([s, s])
    return [tuple(r) for r in out]


def report(checker, out=sys.stdout):
    v = checker.violations
    published = sum(len(t) for p in checker.pub_epochs.values() for t in p.pubs.values())
    print(f"seed {checker.seed}: {len(checker.pub_epochs)} publisher epochs published {published} events; "
          f"{checker.events_checked} (subscriber, event) pairs checked; "
          f"{len([i for i in checker.incs if i.killed])} incarnations killed", file=out)
    if checker.redeliveries:
        print("redeliveries (acknowledged and group, allowed): "
              + ", ".join(f"{k} {n}" for k, n in sorted(checker.redeliveries.items())), file=out)
    if checker.group_loss_covered:
        print(f"group: {checker.group_loss_covered} events not handled but reported lost to a member", file=out)
    for n in checker.notes:
        print(f"note: {n}", file=out)
    kinds = collections.Counter(k for k, _ in v)
    for _, text in v:
        print(f"VIOLATION {text}", file=out)
    if v:
        print(f"seed {checker.seed}: {len(v)} violations: "
              + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())), file=out)
    else:
        print(f"seed {checker.seed}: no violation", file=out)


def main():
    if len(sys.argv) != 2:
        print("usage: chaos_check.py WORKDIR", file=sys.stderr)
        return 2
    c = Checker(sys.argv[1])
    c.check()
    report(c)
    return 1 if c.violations else 0


if __name__ == "__main__":
    sys.exit(main())
