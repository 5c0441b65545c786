#!/usr/bin/env bash
# One command per table of the paper (issue #15): runs every cell of scripts/tables/TABLE.txt with
# mdq-train, several at once on one GPU, into runs/reproduce/TABLE/RUN; a second call resumes the
# unfinished runs from their last.ckpt and skips the finished ones; then writes results/TABLE.md
# and the plots (results/TABLE/*.png, scripts/plot_metrics.py, needs matplotlib).
#   scripts/reproduce.sh TABLE [TABLE...] [--data-root DIR] [--build DIR] [--jobs N] [--dry-run] [--only PATTERN]
#                              [--stop-after SECONDS] [--report] [--no-plots]
# Tables: binary-30ep ternary-30ep seeds full-recipe mobilenetv2, and smoke (a CPU test of this script).
# Exit status: 0 all done, 1 a run failed, 75 stopped (signal or --stop-after): call again to resume.
exec python3 "$(dirname "$0")/reproduce.py" "$@"
