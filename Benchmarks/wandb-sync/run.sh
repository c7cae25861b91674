#!/usr/bin/env bash
# Benchmark: `runlog sync` of N wandb offline runs vs `wandb sync` of the same runs, each into
# a `runlog server` (the same binary and configuration, a fresh database each), wall time end
# to end. Then checks on the servers that both delivered every row.
#
#   bash Benchmarks/wandb-sync/run.sh [N=100] [STEPS=1000]
#
# Needs a built `runlog` (swift build -c release --product runlog) and pip (wandb==0.31.0 is
# installed into .build-wandb-venv at the repository root).
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-100}
STEPS=${2:-1000}
BIN=${RUNLOG_BINARY:-.build/release/runlog}
[ -x "$BIN" ] || swift build -c release --product runlog
VENV=.build-wandb-venv
if ! "$VENV/bin/python" -c "import wandb,sys; sys.exit(wandb.__version__!='0.31.0')" 2>/dev/null; then
  python3 -m venv "$VENV" && "$VENV/bin/pip" install -q --disable-pip-version-check wandb==0.31.0
fi
# This machine class's ext4 has no journal, and then a new inode is never one freed in the
# last 60 s (300 s while its inode table block is dirty): each such inode is skipped with a
# lookup, so creating files is slow for a while after many were deleted. Both tools create
# files (the markers `wandb sync` writes, RunLog's import cache), so a run right after an
# earlier one's cleanup is skewed. The cleanup time is kept in a stamp, and a run starts
# at least 70 s after it (CLEANUP_GAP=0 skips the wait); before each tool, `sync` writes
# dirty metadata back (so that the window is 60 s, not 300) and the machine settles.
STAMP=/tmp/runlog-wandb-sync-bench.cleanup
GAP=${CLEANUP_GAP:-70}
if [ -f "$STAMP" ]; then
  wait_s=$(( $(cat "$STAMP") + GAP - $(date +%s) ))
  if [ "$wait_s" -gt 0 ]; then echo "waiting ${wait_s} s after the previous run's cleanup (see the comment in $0)"; sleep "$wait_s"; fi
fi
WORK=$(mktemp -d /tmp/runlog-wandb-sync-XXXX)
trap 'kill $SERVERS 2>/dev/null || true; rm -rf "$WORK"; date +%s > "$STAMP"' EXIT
# RUNS=DIR reuses runs made before (DIR/wandb/offline-run-*); made once into it otherwise.
RUNS=${RUNS:-$WORK/runs}
if ! ls -d "$RUNS"/wandb/offline-run-* >/dev/null 2>&1; then
  echo "making $N wandb offline runs of $STEPS steps in $RUNS ..."
  mkdir -p "$RUNS"
  "$VENV/bin/python" Benchmarks/wandb-sync/make_runs.py "$RUNS" "$N" "$STEPS"
fi
# Copies, so that the markers `wandb sync` writes and the cache are this run's own.
cp -r "$RUNS/wandb" "$WORK/wandb"
DIRS=$(ls -d "$WORK"/wandb/offline-run-*)
# Each tool syncs into a server of its own (same binary, same configuration, a fresh
# SQLite database), so that neither pays for the other's writes still being checkpointed.
start_server() {  # $1: name; sets PORT and KEY, appends the pid to SERVERS
  local db="$WORK/$1.db"
  KEY=$("$BIN" server create-key --entity "$1" --database "$db" | tail -1)
  PORT=$((20000 + RANDOM % 20000))
  "$BIN" server --database "$db" --port "$PORT" > "$WORK/$1-server.log" 2>&1 &
  SERVERS="$SERVERS $!"
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.2; done
}
SERVERS=""
start_server wb; WPORT=$PORT; KW=$KEY
start_server rl; RPORT=$PORT; KR=$KEY

# Each tool starts on an idle machine (this class is a shared VM: right after seconds of
# work on both cores, the next command runs measurably slower).
SETTLE=${SETTLE:-10}
sync; sleep "$SETTLE"
t0=$(date +%s.%N)
env HOME="$WORK/home" WANDB_BASE_URL="http://127.0.0.1:$WPORT" WANDB_API_KEY="$KW" WANDB_SILENT=true WANDB_ERROR_REPORTING=false \
  "$VENV/bin/wandb" sync --entity wb $DIRS > "$WORK/wandb-sync.log" 2>&1
t1=$(date +%s.%N)
sync; sleep "$SETTLE"
t1s=$(date +%s.%N)
"$BIN" sync --server "http://127.0.0.1:$RPORT" --api-key "$KR" --entity rl --import-cache "$WORK/cache" --json $DIRS > "$WORK/runlog-sync.log"
t2=$(date +%s.%N)

rows() { curl -s -H "Authorization: Bearer $2" "http://127.0.0.1:$3/api/v1/projects/$1/sync-bench/runs" |
  python3 -c "import json,sys; r=json.load(sys.stdin); print(len(r), sum(x['history_rows'] for x in r))"; }
read -r WR WROWS <<<"$(rows wb "$KW" "$WPORT")"
read -r RR RROWS <<<"$(rows rl "$KR" "$RPORT")"
python3 - "$t0" "$t1" "$t1s" "$t2" "$N" "$STEPS" "$WR" "$WROWS" "$RR" "$RROWS" <<'PY'
import sys
t0, t1, t1s, t2 = map(float, sys.argv[1:5]); n, steps, wr, wrows, rr, rrows = map(int, sys.argv[5:])
w, r = t1 - t0, t2 - t1s
print(f"| sync of {n} wandb offline runs x {steps} steps into a runlog server (one each) | wall time | runs / rows on the server |")
print("| --- | ---: | ---: |")
print(f"| `wandb sync` (wandb 0.31.0, W&B protocol) | {w:.2f} s | {wr} / {wrows} |")
print(f"| `runlog sync` (native engine) | {r:.2f} s | {rr} / {rrows} |")
print(f"| ratio | {w / r:.1f}x less wall time | |")
ok = wr == rr == n and wrows == rrows == n * steps
print("all rows arrived through both" if ok else "MISSING ROWS", file=sys.stderr)
sys.exit(0 if ok else 1)
PY
