"""Per-kernel time of one training step, from a profile of N steps: the top kernels by GPU time,
each as ms per step, % of the step's wall time, % of all kernel time and launches per step.
Reads what scripts/profile-train-step.sh writes: the CSV of `nsys stats --report
cuda_gpu_kern_sum` (or gpukernsum on older nsys), or an `ncu --csv` log with the metric
gpu__time_duration.sum.

usage: python3 scripts/kernel_breakdown.py PROFILE.csv --steps N --step-ms MS [--title T] [--top 20]
"""
import argparse
import csv
import sys
from collections import defaultdict

NS_PER_UNIT = {"nsecond": 1, "ns": 1, "usecond": 1e3, "us": 1e3, "msecond": 1e6, "ms": 1e6, "second": 1e9, "s": 1e9}


def number(text):
    return float(text.replace(",", ""))  # ncu writes thousands separators


def read_rows(path):
    """The CSV's rows as dicts, from its header line on (nsys and ncu may print notes before it)."""
    with open(path, newline="") as f:
        lines = f.read().splitlines()
    start = next((i for i, line in enumerate(lines) if "Name" in line and "," in line), None)
    if start is None:
        raise SystemExit(f"kernel_breakdown: {path} has no CSV header with a kernel name column")
    return list(csv.DictReader(lines[start:]))


def kernel_times(rows):
    """{kernel name: (total ns, launches)} from nsys's summary rows or ncu's per-launch rows."""
    totals = defaultdict(lambda: [0.0, 0])
    for r in rows:
        if "Total Time (ns)" in r:  # nsys: one row per kernel name
            name = r["Name"]
            totals[name][0] += number(r["Total Time (ns)"])
            totals[name][1] += int(number(r["Instances"]))
        elif r.get("Metric Name") == "gpu__time_duration.sum":  # ncu: one row per launch
            unit = r.get("Metric Unit", "nsecond")
            if unit not in NS_PER_UNIT:
                raise SystemExit(f"kernel_breakdown: unknown time unit '{unit}' in the ncu log")
            name = r["Kernel Name"]
            totals[name][0] += number(r["Metric Value"]) * NS_PER_UNIT[unit]
            totals[name][1] += 1
    return {k: tuple(v) for k, v in totals.items()}


def report(times, steps, step_ms, title, top, width=120):
    """The table as text lines."""
    kernel_ms = sum(t for t, _ in times.values()) / 1e6 / steps
    launches = sum(n for _, n in times.values()) / steps
    lines = [f"# {title}: {steps} profiled steps, step {step_ms:.3f} ms wall (measured without the profiler), kernels "
             f"{kernel_ms:.3f} ms/step ({100 * kernel_ms / step_ms:.1f}% of the step: the rest is the GPU waiting "
             f"for the host or for copies), {launches:.0f} kernel launches/step",
             f"{'rank':>4} {'ms/step':>8} {'% step':>7} {'% kern':>7} {'calls':>6}  kernel"]
    ranked = sorted(times.items(), key=lambda kv: -kv[1][0])
    for i, (name, (ns, n)) in enumerate(ranked[:top], 1):
        ms = ns / 1e6 / steps
        short = name if len(name) <= width else name[:width - 3] + "..."
        lines.append(f"{i:>4} {ms:>8.3f} {100 * ms / step_ms:>7.1f} {100 * ms / kernel_ms:>7.1f} {n / steps:>6.0f}  {short}")
    shown = sum(ns for _, (ns, _) in ranked[:top]) / 1e6 / steps
    lines.append(f"top {min(top, len(ranked))} of {len(ranked)} distinct kernels: {100 * shown / kernel_ms:.1f}% of "
                 f"kernel time")
    return lines


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("profile")
    p.add_argument("--steps", type=int, required=True, help="training steps inside the profile")
    p.add_argument("--step-ms", type=float, required=True, help="the wall time of one step, measured without the profiler")
    p.add_argument("--title", default="training step")
    p.add_argument("--top", type=int, default=20)
    a = p.parse_args(argv)
    times = kernel_times(read_rows(a.profile))
    if not times:
        raise SystemExit(f"kernel_breakdown: no kernels in {a.profile} (was the capture range reached?)")
    print("\n".join(report(times, a.steps, a.step_ms, a.title, a.top)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
