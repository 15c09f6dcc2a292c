#!/usr/bin/env python3
"""Charts of meshbus-perf results with gnuplot (Debian gnuplot-nox).

usage: plot.py OUT_DIR THROUGHPUT.jsonl [THROUGHPUT.jsonl ...] [--latency LATENCY.jsonl ...]

Each THROUGHPUT file holds the JSON lines of `meshbus-perf throughput --json` for one
delivery mode (several sizes); each LATENCY file those of `meshbus-perf latency --json`.
Writes OUT_DIR/throughput_events.png (events/s against payload size, raw ZeroMQ beside
meshbus per mode), OUT_DIR/throughput_mb.png (MB/s) and, with latency results,
OUT_DIR/latency.png (p50, p99, p99.9 and max of raw ZeroMQ and meshbus, per size and
mode). Raw ZeroMQ is measured in every run beside meshbus; its line is the median of
the runs of all modes. The data files used are kept beside the charts.
"""
import json
import os
import statistics
import subprocess
import sys


def read_lines(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                rows.append(json.loads(line))
    if not rows:
        sys.exit(f"plot.py: {path} holds no meshbus-perf JSON lines")
    return rows


def gnuplot(script, out_dir):
    try:
        subprocess.run(["gnuplot"], input=script, text=True, check=True, cwd=out_dir)
    except FileNotFoundError:
        sys.exit("plot.py: gnuplot is not installed (Debian: apt-get install gnuplot-nox)")


def throughput(out_dir, files):
    modes = {}
    raw = {}
    for path in files:
        for r in read_lines(path):
            modes.setdefault(r["mode"], {})[r["size"]] = r
            raw.setdefault(r["size"], []).append(r)
    sizes = sorted(raw)
    with open(os.path.join(out_dir, "raw.dat"), "w", encoding="utf-8") as f:
        f.write("# size events_per_s mb_per_s (raw ZeroMQ, median of the runs)\n")
        for s in sizes:
            f.write(f"{s} {statistics.median(r['baseline_events_per_s'] for r in raw[s])} "
                    f"{statistics.median(r['baseline_mb_per_s'] for r in raw[s])}\n")
    for mode, rows in modes.items():
        with open(os.path.join(out_dir, f"meshbus_{mode}.dat"), "w", encoding="utf-8") as f:
            f.write(f"# size events_per_s mb_per_s ratio (meshbus, {mode})\n")
            for s in sorted(rows):
                r = rows[s]
                f.write(f"{s} {r['events_per_s']} {r['mb_per_s']} {r['ratio']}\n")
    for column, name, label in ((2, "throughput_events.png", "events/s"), (3, "throughput_mb.png", "MB/s")):
        plots = [f"'raw.dat' using 1:{column} with linespoints lw 2 title 'raw ZeroMQ PUB/SUB'"]
        plots += [f"'meshbus_{m}.dat' using 1:{column} with linespoints lw 2 title 'meshbus {m}'"
                  for m in sorted(modes)]
        gnuplot(f"""set terminal pngcairo size 900,540 font 'sans,11' noenhanced
set output '{name}'
set title 'Throughput over TCP loopback, one publisher and one subscriber process'
set logscale x 2
set logscale y 10
set xlabel 'payload size (bytes)'
set ylabel '{label}'
set grid
set key top right
plot {', '.join(plots)}
""", out_dir)


def latency(out_dir, files):
    rows = []
    for path in files:
        rows += read_lines(path)
    with open(os.path.join(out_dir, "latency.dat"), "w", encoding="utf-8") as f:
        f.write("# label raw_p50 raw_p99 raw_p999 raw_max meshbus_p50 meshbus_p99 meshbus_p999 meshbus_max (us)\n")
        for r in rows:
            label = f"{r['size']}B-{r['mode']}"
            f.write(f"{label} {r['baseline_p50_us']} {r['baseline_p99_us']} {r['baseline_p999_us']} "
                    f"{r['baseline_max_us']} {r['p50_us']} {r['p99_us']} {r['p999_us']} {r['max_us']}\n")
    gnuplot("""set terminal pngcairo size 900,540 font 'sans,11' noenhanced
set output 'latency.png'
set title 'Publish to handler latency, one event at a time (percentiles)'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set logscale y 10
set ylabel 'microseconds'
set grid ytics
set key top left
plot 'latency.dat' using 2:xtic(1) title 'raw p50', '' using 3 title 'raw p99', '' using 4 title 'raw p99.9', \\
     '' using 6 title 'meshbus p50', '' using 7 title 'meshbus p99', '' using 8 title 'meshbus p99.9'
""", out_dir)


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    out_dir = argv[1]
    rest = argv[2:]
    lat = []
    if "--latency" in rest:
        at = rest.index("--latency")
        lat = rest[at + 1:]
        rest = rest[:at]
    os.makedirs(out_dir, exist_ok=True)
    throughput(out_dir, rest)
    if lat:
        latency(out_dir, lat)
    for name in ("throughput_events.png", "throughput_mb.png") + (("latency.png",) if lat else ()):
        print(os.path.join(out_dir, name))


if __name__ == "__main__":
    main(sys.argv)
