#!/usr/bin/env python3
"""Plots from mdq-train's metrics.jsonl files, with matplotlib.

  scripts/plot_metrics.py --table TABLE
      results/TABLE/bars.png: the rounded test top-1 of every finished run (mean ± std over seeds);
      results/TABLE/GROUP.png per group (a column of the table): training loss, rounded and soft
      (projected) validation accuracy and β against iterations, every method of the group on one figure.
  scripts/plot_metrics.py --out fig.png RUN_DIR [RUN_DIR ...]
      the same four panels for any run folders (labelled by folder name).
"""
import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reproduce import ROOT, read_metrics, read_table, test_top1  # noqa: E402
from short_config import read_cfg  # noqa: E402

try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    sys.exit("plot_metrics.py: matplotlib is not installed (python3 -m pip install --user matplotlib); no plots written")


def run_method(run_dir):
    """The method of a run, from its config.txt ('' when there is none)."""
    path = os.path.join(run_dir, "config.txt")
    return read_cfg(path).get("method", "") if os.path.exists(path) else ""


def curves(ax_row, rows, label, color, has_beta=True):
    train = [r for r in rows if "loss" in r]
    val = [r for r in rows if "val_acc_rounded" in r or "test_acc_rounded" in r]
    key = "val" if any("val_acc_rounded" in r for r in val) else "test"
    ax_row[0].plot([r["iter"] for r in train], [r["loss"] for r in train], label=label, color=color)
    ax_row[1].plot([r["iter"] for r in val], [r[f"{key}_acc_rounded"] for r in val], label=label, color=color)
    ax_row[2].plot([r["iter"] for r in val], [r[f"{key}_acc_projected"] for r in val], label=label, color=color)
    if has_beta:  # float logs the schedule's β but never uses it
        ax_row[3].plot([r["iter"] for r in train], [r["beta"] for r in train], label=label, color=color)


def panel_figure(runs, title, out):
    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    for i, (label, d) in enumerate(runs):
        curves(axes, read_metrics(d), label, f"C{i % 10}", has_beta=run_method(d) != "float")
    for ax, t in zip(axes, ["training loss", "val top-1, rounded (%)", "val top-1, soft / projected (%)", "β"]):
        ax.set_title(t)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[3].set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def table_plots(table):
    title, cells = read_table(table)
    outdir = os.path.join(ROOT, "results", table)
    os.makedirs(outdir, exist_ok=True)
    written = []
    groups = list(dict.fromkeys(c.group for c in cells))
    for g in groups:
        runs = [(f"{c.method}" + (f" seed {c.seed}" if c.seed else ""), c.metrics_dir()) for c in cells
                if c.group == g and read_metrics(c.metrics_dir())]
        if runs:
            written.append(panel_figure(runs, f"{table}: {g}", os.path.join(outdir, f"{g}.png")))
    # bar chart: one bar per (group, method), grouped by group
    methods = list(dict.fromkeys(c.method for c in cells))
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(groups) * len(methods) / 2), 4.5))
    width = 0.8 / len(methods)
    any_bar = False
    for j, m in enumerate(methods):
        xs, ys, es = [], [], []
        for i, g in enumerate(groups):
            t = [test_top1(read_metrics(c.metrics_dir())) for c in cells if c.group == g and c.method == m]
            t = [x for x in t if x is not None]
            if t:
                xs.append(i + (j - (len(methods) - 1) / 2) * width)
                ys.append(statistics.mean(t))
                es.append(statistics.stdev(t) if len(t) > 1 else 0)
        if xs:
            any_bar = True
            ax.bar(xs, ys, width, yerr=es if any(es) else None, label="REF (float)" if m == "float" else m)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups)
    ax.set_ylabel("rounded test top-1 (%)")
    ax.set_title(f"{table}" + ("" if any_bar else " (no finished runs yet)"))
    ax.grid(axis="y", alpha=0.3)
    if any_bar:
        ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    out = os.path.join(outdir, "bars.png")
    fig.savefig(out, dpi=100)
    plt.close(fig)
    written.append(out)
    return written


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table")
    ap.add_argument("--out", help="with run folders: the PNG to write")
    ap.add_argument("runs", nargs="*")
    a = ap.parse_args()
    if a.table:
        written = table_plots(a.table)
    elif a.runs and a.out:
        written = [panel_figure([(os.path.basename(os.path.normpath(d)), d) for d in a.runs], "", a.out)]
    else:
        ap.error("give --table TABLE, or --out FILE.png RUN_DIR ...")
    for w in written:
        print(f"wrote {os.path.relpath(w, ROOT) if w.startswith(ROOT) else w}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
