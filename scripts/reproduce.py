#!/usr/bin/env python3
"""Runs every cell of one or more tables of scripts/tables/ and writes results/TABLE.md (see scripts/reproduce.sh).

A cell is a line `group method data args...` of scripts/tables/TABLE.txt; its run folder is
runs/reproduce/TABLE/GROUP-METHOD[-seedN]. A line `group method data =OTHER/RUN` shares the run of
another table (the same training: a ternary table's float REF is the binary table's). Once a run
is done, its record (metrics.jsonl, config.txt, reproduce-sessions.tsv; no checkpoints) is copied
to results/TABLE/runs/RUN, which is committed: the report and plots read a run folder when there
is one, else that record, so a fresh clone regenerates every table without the runs.
State of a run, from what mdq-train wrote:
  done      metrics.jsonl ends with the final test line ({"test_top1": ...}): skipped
  diverged  metrics.jsonl holds {"diverged_at": N} (mdq-train exit 3): skipped, reported; a resume
            from last.ckpt would replay the same steps, so delete the folder to try again
  partial   last.ckpt is there: continued with `mdq-train --resume` (its own config.txt)
  new       nothing, or a start killed before its first checkpoint: started (--overwrite)
Each session of a run appends one line to reproduce-sessions.tsv in its folder (start, seconds,
exit status) and its output to train.log; the wall time reported is the sum of the sessions.
"""
import argparse
import fnmatch
import json
import os
import shutil
import shlex
import signal
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


RECORD_FILES = ("metrics.jsonl", "config.txt", "reproduce-sessions.tsv")


class Cell:
    def __init__(self, table, group, method, data, args):
        self.group, self.method, self.data, self.args = group, method, data, args
        self.seed = None
        if "--seed" in args:
            self.seed = args[args.index("--seed") + 1]
        self.name = f"{group}-{method}" + (f"-seed{self.seed}" if self.seed is not None else "")
        self.dir = os.path.join(ROOT, "runs", "reproduce", table, self.name)
        self.record = os.path.join(ROOT, "results", table, "runs", self.name)
        self.shared = None  # "OTHER/RUN" when the line names another table's run
        self.label = f"{table}/{self.name}"  # unique over tables

    def metrics_dir(self):
        """The run folder when it has metrics, else the committed record of the run."""
        return self.dir if os.path.exists(os.path.join(self.dir, "metrics.jsonl")) else self.record

    def save_record(self):
        os.makedirs(self.record, exist_ok=True)
        for f in RECORD_FILES:
            if os.path.exists(os.path.join(self.dir, f)):
                shutil.copyfile(os.path.join(self.dir, f), os.path.join(self.record, f))


def shared_cell(table, line_no, group, method, data, ref):
    """The cell of line `group method data =OTHER/RUN`: OTHER's run, under this line's group and method."""
    other, _, run = ref[1:].partition("/")
    if other == table:
        sys.exit(f"scripts/tables/{table}.txt:{line_no}: '{ref}' names its own table")
    found = [c for c in read_table(other)[1] if c.name == run]
    if not found:
        sys.exit(f"scripts/tables/{table}.txt:{line_no}: '{ref}': {other} has no run {run}")
    c = found[0]
    if c.shared or c.data != data:
        sys.exit(f"scripts/tables/{table}.txt:{line_no}: '{ref}' is itself shared or reads other data ({c.data})")
    c.group, c.method, c.shared = group, method, f"{other}/{run}"
    return c


def read_table(table):
    path = os.path.join(ROOT, "scripts", "tables", table + ".txt")
    if not os.path.exists(path):
        names = sorted(f[:-4] for f in os.listdir(os.path.join(ROOT, "scripts", "tables")) if f.endswith(".txt"))
        sys.exit(f"reproduce: no table '{table}' (scripts/tables/{table}.txt); tables: {' '.join(names)}")
    cells, title = [], ""
    with open(path) as f:
        for i, line in enumerate(f):
            if i == 0 and line.startswith("#"):
                title = line[1:].strip()
            line = line.split("#", 1)[0].strip()
            if line:
                w = shlex.split(line)
                if len(w) < 4:
                    sys.exit(f"{path}:{i + 1}: expected 'group method data args...'")
                if w[3].startswith("="):
                    if len(w) != 4:
                        sys.exit(f"{path}:{i + 1}: a shared run ('{w[3]}') takes no further arguments")
                    cells.append(shared_cell(table, i + 1, w[0], w[1], w[2], w[3]))
                else:
                    cells.append(Cell(table, w[0], w[1], w[2], w[3:]))
    return title, cells


def read_metrics(run_dir):
    rows = []
    try:
        with open(os.path.join(run_dir, "metrics.jsonl")) as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        rows.append(json.loads(line))
                    except ValueError:
                        pass  # a line cut by a kill
    except OSError:
        pass
    return rows


def test_top1(rows):
    """The rounded test top-1 of a finished run (its last metrics line), else None."""
    return rows[-1]["test_top1"] if rows and "test_top1" in rows[-1] else None


def state(cell, rows=None):
    """rows: the cell's metrics when the caller has read them already."""
    rows = read_metrics(cell.metrics_dir()) if rows is None else rows
    if test_top1(rows) is not None:
        return "done"
    if any("diverged_at" in r for r in rows):
        return "diverged"
    if os.path.exists(os.path.join(cell.dir, "last.ckpt")):
        return "partial"
    return "new"


def command(cell, st, build, data_root):
    exe = os.path.join(build, "mdq-train")
    if st == "partial":
        return [exe, "--resume", "--out", cell.dir, "--quiet"]
    data = cell.data if "/" in cell.data else os.path.join(data_root, cell.data)
    data = os.path.abspath(os.path.join(ROOT, data))
    return [exe] + cell.args + ["--data-dir", data, "--out", cell.dir, "--overwrite", "--quiet"]


def run_cells(todo, args):
    """At most args.jobs trainings at once; SIGINT/SIGTERM (or --stop-after) stops each with one
    SIGTERM, so each saves last.ckpt (a second signal would make mdq-train quit without saving:
    the children run in their own sessions so a terminal's Ctrl-C reaches only this script)."""
    running = {}  # Popen -> (cell, start, log, started fresh)
    stopping = [False]

    def stop(signum=None, frame=None):
        if not stopping[0]:
            stopping[0] = True
            print(f"reproduce: stopping {len(running)} run(s); each saves last.ckpt, the next call resumes", flush=True)
            for p in running:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    deadline = time.time() + args.stop_after if args.stop_after else None
    queue = list(todo)
    failed = []
    finished_secs = []  # wall times of the runs that started fresh and ended here
    left_over = [False]  # runs left unstarted: the caller exits 75 (call again)

    def fits():
        """With --stop-after, a run joins after the first wave only if the quickest whole run that
        ended here would still end before the stop (a resumed run's time says nothing of a whole
        one's: after resumed runs alone, nothing more starts). A run stopped half-way costs GPU time
        now and needs its last.ckpt later, which a machine given back loses."""
        if not deadline or not ended[0]:
            return True
        return bool(finished_secs) and time.time() + min(finished_secs) < deadline

    ended = [0]  # runs that ended here (exit 0), resumed or not

    while queue or running:
        while queue and len(running) < args.jobs and not stopping[0] and fits():
            cell, st = queue.pop(0)
            cmd = command(cell, st, args.build, args.data_root)
            os.makedirs(cell.dir, exist_ok=True)
            log = open(os.path.join(cell.dir, "train.log"), "a")
            log.write(f"=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {shlex.join(cmd)}\n")
            log.flush()
            p = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            running[p] = (cell, time.time(), log, st == "new")
            print(f"[{time.strftime('%H:%M:%S')}] {'resume' if st == 'partial' else 'start '} {cell.label}", flush=True)
        if deadline and time.time() > deadline:
            stop()
        if stopping[0] or (queue and not running and not fits()):
            if queue:
                why = "stopping" if stopping[0] else "they would not end before --stop-after"
                print(f"reproduce: {len(queue)} run(s) not started ({why}); the next call starts them", flush=True)
                left_over[0] = True
            queue.clear()
        time.sleep(0.2)
        for p in [p for p in running if p.poll() is not None]:
            cell, start, log, fresh = running.pop(p)
            secs = time.time() - start
            if p.returncode == 0:
                ended[0] += 1
                if fresh:
                    finished_secs.append(secs)
            log.write(f"=== exit {p.returncode} after {secs:.1f} s\n")
            log.close()
            with open(os.path.join(cell.dir, "reproduce-sessions.tsv"), "a") as f:
                f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.localtime(start))}\t{secs:.1f}\t{p.returncode}\t{args.jobs}\n")
            what = {0: "done", 3: "DIVERGED", 75: "stopped (resumable)"}.get(p.returncode, f"FAILED (exit {p.returncode})")
            print(f"[{time.strftime('%H:%M:%S')}] {what:7s} {cell.label} ({secs:.0f} s; log {os.path.relpath(cell.dir, ROOT)}/train.log)", flush=True)
            if p.returncode in (0, 3):
                cell.save_record()
            if p.returncode not in (0, 3, 75):
                failed.append(cell.label)
    return failed, stopping[0] or left_over[0]


# ---- the report


def fmt_wall(s):
    if s is None:
        return ""
    h, m = int(s // 3600), int(s % 3600 // 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{int(s % 60):02d}s"


def summary(cell):
    rows = read_metrics(cell.metrics_dir())
    st = state(cell, rows)
    r = {"state": st, "test": None, "best_iter": None, "best_val": None, "img_s": None, "wall": None,
         "iters": None, "jobs": None}
    val = [x for x in rows if "val_acc_rounded" in x]
    if val:
        r["iters"] = val[-1]["iter"]
        best = max(val, key=lambda x: x["val_acc_rounded"])  # first maximum, like mdq-train
        r["best_iter"], r["best_val"] = best["iter"], best["val_acc_rounded"]
    if st == "done":
        r["test"], r["best_iter"], r["img_s"] = rows[-1]["test_top1"], rows[-1]["best_iter"], rows[-1]["train_img_per_s"]
    elif st == "diverged":
        r["iters"] = next(x["diverged_at"] for x in rows if "diverged_at" in x)
    try:
        with open(os.path.join(cell.metrics_dir(), "reproduce-sessions.tsv")) as f:
            sessions = [l.split("\t") for l in f if l.strip()]  # start, seconds, exit status, --jobs
        r["wall"] = sum(float(x[1]) for x in sessions)
        r["jobs"] = max(int(x[3]) for x in sessions) if sessions else None
    except (OSError, ValueError, IndexError):
        pass
    return r


def mean_std(xs):
    if len(xs) == 1:
        return f"{xs[0]:.2f}"
    return f"{statistics.mean(xs):.2f} ± {statistics.stdev(xs):.2f}"


def report(table, title, cells):
    out = os.path.join(ROOT, "results", table + ".md")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    for c in cells:  # runs finished before records were kept, or by hand
        if c.metrics_dir() == c.dir and state(c) in ("done", "diverged"):
            c.save_record()
    s = {c.name: summary(c) for c in cells}
    groups = list(dict.fromkeys(c.group for c in cells))
    methods = list(dict.fromkeys(c.method for c in cells))

    def tests(group, method):
        return [s[c.name]["test"] for c in cells if c.group == group and c.method == method and s[c.name]["test"] is not None]

    def ref(group):
        t = tests(group, "float")
        return statistics.mean(t) if t else None

    lines = [f"# {table}", "", title, "",
             "Rounded test top-1 (%) of the best-on-validation network (float: the network itself)"
             + (", mean ± std over seeds" if any(c.seed for c in cells) else "")
             + "; in brackets the gap to REF (float) of the same column. Empty: not finished.", ""]
    lines.append("| method | " + " | ".join(groups) + " |")
    lines.append("|---|" + "---|" * len(groups))
    for m in methods:
        row = []
        for g in groups:
            t = tests(g, m)
            n_cells = sum(1 for c in cells if c.group == g and c.method == m)
            if not n_cells:
                row.append("")
                continue
            txt = mean_std(t) if t else ""
            if t and len(t) < n_cells:
                txt += f" ({len(t)}/{n_cells} runs)"
            if t and m != "float" and ref(g) is not None:
                txt += f" ({statistics.mean(t) - ref(g):+.2f})"
            row.append(txt)
        lines.append(f"| {'REF (float)' if m == 'float' else m} | " + " | ".join(row) + " |")
    jobs = max((r["jobs"] for r in s.values() if r["jobs"]), default=None)
    shared = f" (up to {jobs} runs shared the GPU)" if jobs else ""
    lines += ["", "Per run: best-val iteration (of the last validated), its rounded val top-1, training img/s of "
              f"the last session{shared}, wall time summed over sessions.", "",
              "| run | state | test top-1 | gap to REF | best-val iter | val top-1 | img/s | wall |",
              "|---|---|---|---|---|---|---|---|"]
    for c in cells:
        r = s[c.name]
        gap = ref(c.group)
        gap = f"{r['test'] - gap:+.2f}" if r["test"] is not None and gap is not None and c.method != "float" else ""
        st = r["state"]
        if st == "partial" and r["iters"]:
            st = f"partial (validated to iter {r['iters']})"
        elif st == "diverged":
            st = f"diverged (iter {r['iters']})"
        num = lambda v, d=2: "" if v is None else f"{v:.{d}f}"
        name = f"{c.name} (= {c.shared})" if c.shared else c.name
        lines.append(f"| {name} | {st} | {num(r['test'])} | {gap} | {r['best_iter'] or ''} | "
                     f"{num(r['best_val'])} | {num(r['img_s'], 0)} | {fmt_wall(r['wall'])} |")
    lines += ["", f"Run folders: `runs/reproduce/{table}/RUN` (config.txt, metrics.jsonl, train.log, checkpoints); "
              f"the committed record of each finished run: `results/{table}/runs/RUN`; "
              f"cells: `scripts/tables/{table}.txt`; regenerate with `scripts/reproduce.sh {table} --report`.", ""]
    plots = os.path.join(ROOT, "results", table)
    if os.path.isdir(plots):
        pngs = sorted(f for f in os.listdir(plots) if f.endswith(".png"))
        lines += [f"![{p[:-4]}]({table}/{p})" for p in pngs]
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    return out


README_BEGIN = "<!-- reproduce.py: the tables of results/, regenerated by scripts/reproduce.sh; do not edit by hand -->"
README_END = "<!-- reproduce.py: end of the tables -->"


def update_readme():
    """Rewrites the block between README_BEGIN and README_END of README.md with the summary grid of
    every results/TABLE.md that holds a finished run (tables in alphabetical order); True when the
    block changed."""
    path = os.path.join(ROOT, "README.md")
    with open(path) as f:
        text = f.read()
    if README_BEGIN not in text or README_END not in text:
        return False
    tables = sorted(f[:-4] for f in os.listdir(os.path.join(ROOT, "scripts", "tables"))
                    if f.endswith(".txt") and f != "smoke.txt")
    block = [README_BEGIN, ""]
    for t in tables:
        cells = read_table(t)[1]
        done = [c for c in cells if state(c) == "done"]
        md = os.path.join(ROOT, "results", t + ".md")
        if not done or not os.path.exists(md):
            continue
        with open(md) as f:
            lines = [l.rstrip("\n") for l in f]
        first = lines.index(next(l for l in lines if l.startswith("| method |")))
        grid = lines[first:lines.index("", first)]  # the method x group grid, up to its blank line
        block += [f"**[{t}](results/{t}.md)** ({len(done)} of {len(set(c.dir for c in cells))} runs finished; "
                  "rounded test top-1 %, gap to REF in brackets):", ""] + grid + [""]
    if len(block) == 2:
        block += ["No table has a finished run yet.", ""]
    block.append(README_END)
    start, end = text.index(README_BEGIN), text.index(README_END) + len(README_END)
    new = text[:start] + "\n".join(block) + text[end:]
    if new == text:
        return False
    with open(path, "w") as f:
        f.write(new)
    return True


def main():
    ap = argparse.ArgumentParser(prog="scripts/reproduce.sh", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tables", nargs="+", metavar="TABLE",
                    help="one or more tables; their runs share the --jobs slots (a shared run goes once)")
    ap.add_argument("--data-root", default="/tmp/data", help="folder holding cifar10/, cifar100/ (default /tmp/data)")
    ap.add_argument("--build", default=None, help="folder holding mdq-train (default build-gpu if it has one, else build)")
    ap.add_argument("--jobs", type=int, default=4, help="trainings at once (default 4: they share the GPU)")
    ap.add_argument("--dry-run", action="store_true", help="print each run's state and command, run nothing")
    ap.add_argument("--only", help="only the runs whose name matches this shell pattern (e.g. 'c10-r18-*')")
    ap.add_argument("--stop-after", type=float, default=0,
                    help="stop the runs (SIGTERM: they save last.ckpt) after this many seconds; the next call resumes")
    ap.add_argument("--report", action="store_true", help="only rebuild results/TABLE.md and the plots")
    ap.add_argument("--no-plots", action="store_true")
    args = ap.parse_args()
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # --dry-run | head
    if args.build is None:
        args.build = "build-gpu" if os.path.exists(os.path.join(ROOT, "build-gpu", "mdq-train")) else "build"
    args.build = os.path.abspath(os.path.join(ROOT, args.build))
    tables = {t: read_table(t) for t in args.tables}
    selected = {}  # run folder -> cell, in table order: a run shared by two tables goes once
    for t, (_, cells) in tables.items():
        for c in cells:
            if not args.only or fnmatch.fnmatch(c.name, args.only):
                selected.setdefault(c.dir, c)
    if args.only and not selected:
        sys.exit(f"reproduce: no run of {' '.join(args.tables)} matches '{args.only}'")
    failed, interrupted = [], False
    if not args.report:
        todo = []
        for c in selected.values():
            st = state(c)
            if args.dry_run:
                cmd = "" if st in ("done", "diverged") else shlex.join(command(c, st, args.build, args.data_root))
                print(f"{c.label:40s} {st:8s} {cmd}")
            elif st in ("new", "partial"):
                todo.append((c, st))
            else:
                print(f"{c.label}: {st}, skipped")
        if args.dry_run:
            return 0
        if todo and not os.path.exists(os.path.join(args.build, "mdq-train")):
            sys.exit(f"reproduce: no {args.build}/mdq-train; build it or pass --build DIR")
        failed, interrupted = run_cells(todo, args)
    for t, (title, cells) in tables.items():
        if not args.no_plots:  # first, so that the report links the plots
            subprocess.call([sys.executable, os.path.join(ROOT, "scripts", "plot_metrics.py"), "--table", t])
        print(f"wrote {os.path.relpath(report(t, title, cells), ROOT)}")
    if update_readme():
        print("updated the results section of README.md")
    if failed:
        print(f"reproduce: failed: {' '.join(failed)} (see their train.log)")
        return 1
    return 75 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
