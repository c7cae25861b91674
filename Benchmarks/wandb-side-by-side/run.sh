#!/usr/bin/env bash
# Side by side: wandb 0.31.0 offline (Python) vs RunLog (Swift), N steps of workload W (10 metrics).
#
#   bash Benchmarks/wandb-side-by-side/run.sh            # N = 100,000
#   STEPS=20000 bash Benchmarks/wandb-side-by-side/run.sh
#
# Installs wandb==0.31.0 with pip when the Python at $PYTHON (default python3) lacks it, builds
# sdk-figures (release), runs each side once under /usr/bin/time -v in its own temp dir, and
# prints a Markdown table: time (start + N logs + finish, timed inside each program; and the whole
# process), per-call latency of log, bytes/step on disk, peak memory, and the ratios.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
STEPS=${STEPS:-100000}
PY=${PYTHON:-python3}

if ! "$PY" -c 'import sys, wandb; sys.exit(wandb.__version__ != "0.31.0")' >/dev/null 2>&1; then
    echo "installing wandb==0.31.0 into $("$PY" -c 'import sys; print(sys.prefix)') …" >&2
    "$PY" -m pip install -q wandb==0.31.0 >&2
fi
swift build -c release --package-path Benchmarks --product sdk-figures >&2
bin=$(swift build -c release --package-path Benchmarks --show-bin-path)/sdk-figures

tmp=$(mktemp -d "${RUNLOG_BENCH_DIR:-${TMPDIR:-/tmp}}/wandb-side-by-side.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/wandb" "$tmp/runlog"

echo "wandb 0.31.0 offline, $STEPS steps …" >&2
/usr/bin/time -v -o "$tmp/py.time" env WANDB_MODE=offline WANDB_SILENT=true WANDB_DIR="$tmp/wandb" \
    "$PY" "$here/wandb_offline.py" --steps "$STEPS" --json > "$tmp/py.json"
echo "RunLog (sdk-figures --steps $STEPS --json) …" >&2
/usr/bin/time -v -o "$tmp/swift.time" env RUNLOG_BENCH_DIR="$tmp/runlog" "$bin" --steps "$STEPS" --json > "$tmp/swift.json"

"$PY" - "$tmp" "$STEPS" <<'EOF'
import json, os, re, sys
tmp, steps = sys.argv[1], int(sys.argv[2])
py = json.loads(open(os.path.join(tmp, "py.json")).read().strip().splitlines()[-1])
sw = json.loads(open(os.path.join(tmp, "swift.json")).read().strip().splitlines()[-1])

def gnu_time(path):
    t = open(path).read()
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1)) * 1024
    m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", t)
    wall = int(m.group(1) or 0) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    return wall, rss

py_wall, py_rss = gnu_time(os.path.join(tmp, "py.time"))
sw_wall, sw_rss = gnu_time(os.path.join(tmp, "swift.time"))
py_run = py["init_seconds"] + py["loop_seconds"] + py["finish_seconds"]
sw_run = sw["start_seconds"] + sw["loop_seconds"] + sw["finish_seconds"]
py_mem = py["python_peak_rss"] + py["service_peak_rss"]
cmd = "`bash Benchmarks/wandb-side-by-side/run.sh`" if steps == 100000 else f"`STEPS={steps} bash Benchmarks/wandb-side-by-side/run.sh`"
MiB = 1048576

def s(x): return f"{x:.3f} s" if x < 10 else f"{x:.1f} s"
def us(ns): return f"{ns / 1000:.2f} µs" if ns < 10_000 else f"{ns / 1000:.0f} µs"
def r(a, b): return f"{a / b:.0f}×" if a / b >= 10 else f"{a / b:.1f}×"

print(f"wandb 0.31.0 offline (WANDB_MODE=offline, Python {sys.version.split()[0]}) vs RunLog offline (`Run.start(mode: .offline)`, release build), "
      f"{steps:,} steps of workload W (10 metrics, W64), one log call per step; {os.cpu_count()} cores.\n")
print("| figure | wandb 0.31.0 offline | RunLog | wandb ÷ RunLog | command |")
print("|---|---|---|---|---|")
print(f"| time: start + {steps:,} logs + finish (timed inside each program) | {s(py_run)} (init {s(py['init_seconds'])}, logs {s(py['loop_seconds'])}, finish {s(py['finish_seconds'])}) "
      f"| {s(sw_run)} (start {s(sw['start_seconds'])}, logs {s(sw['loop_seconds'])}, finish {s(sw['finish_seconds'])}) | {r(py_run, sw_run)} | {cmd} |")
print(f"| time: whole process (/usr/bin/time) | {s(py_wall)} | {s(sw_wall)} | {r(py_wall, sw_wall)} | {cmd} |")
print(f"| `log` per call, median / p99 | {us(py['log_p50_ns'])} / {us(py['log_p99_ns'])} | {us(sw['log_p50_ns'])} / {us(sw['log_p99_ns'])} | {r(py['log_p50_ns'], sw['log_p50_ns'])} | {cmd} |")
print(f"| bytes/step on disk: the log (.wandb file / run.rlog) | {py['bytes_per_step']:.1f} | {sw['log_bytes'] / steps:.1f} | {r(py['bytes_per_step'], sw['log_bytes'] / steps)} | {cmd} |")
print(f"| bytes/step on disk: the whole run directory | {py['dir_bytes_per_step']:.1f} | {sw['bytes_per_step']:.1f} | {r(py['dir_bytes_per_step'], sw['bytes_per_step'])} | {cmd} |")
print(f"| peak RSS: Python process + wandb-core service (getrusage) / RunLog process (VmHWM) | {py_mem / MiB:.1f} MiB ({py['python_peak_rss'] / MiB:.1f} + {py['service_peak_rss'] / MiB:.1f}) "
      f"| {sw['peak_rss'] / MiB:.1f} MiB | {r(py_mem, sw['peak_rss'])} | {cmd} |")
print(f"| peak RSS of the largest process (/usr/bin/time -v) | {py_rss / MiB:.1f} MiB | {sw_rss / MiB:.1f} MiB | {r(py_rss, sw_rss)} | {cmd} |")
EOF
