#!/usr/bin/env bash
# Compares the CPU that two (or more) `runlog` binaries spend folding the same wandb offline
# runs into RunLog runs (`runlog sync --dry-run`: the fold, no server), interleaved so that
# each binary meets the same machine. This project's 2-core VMs drift by 30% and more
# within minutes, so two timings taken apart compare the machine, not the code.
#
#   RUNS=DIR bash Benchmarks/wandb-sync/fold-ab.sh [ROUNDS=6] BIN_A BIN_B ...
#
# DIR holds wandb/offline-run-* (as `run.sh` makes them with RUNS=DIR). Prints, per binary,
# the minimum and median of wall time and of CPU time (user + system).
set -euo pipefail
ROUNDS=6
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then ROUNDS=$1; shift; fi
[ $# -ge 1 ] || { echo "usage: RUNS=DIR $0 [ROUNDS] BIN..." >&2; exit 64; }
RUNS=${RUNS:?set RUNS to a folder holding wandb/offline-run-*}
WORK=$(mktemp -d /tmp/runlog-fold-ab-XXXX)
trap 'rm -rf "$WORK"' EXIT
for r in $(seq "$ROUNDS"); do
  for b in "$@"; do
    /usr/bin/time -f "$b %e %U %S" -a -o "$WORK/times" \
      "$b" sync --dry-run --import-cache "$WORK/cache-$r-$(basename "$b")-$RANDOM" "$RUNS"/wandb/offline-run-* > /dev/null
  done
done
python3 - "$WORK/times" "$@" <<'PY'
import statistics as st, sys
rows = [line.rsplit(None, 3) for line in open(sys.argv[1])]
for b in sys.argv[2:]:
    r = [(float(w), float(u) + float(s)) for n, w, u, s in rows if n == b]
    print(f"{b}: n={len(r)}  wall min {min(x[0] for x in r):.3f} s, median {st.median(x[0] for x in r):.3f} s"
          f"  CPU min {min(x[1] for x in r):.3f} s, median {st.median(x[1] for x in r):.3f} s")
PY
