"""wandb 0.31.0 in offline mode under workload W: N steps of 10 metrics through wandb.log.

    WANDB_MODE=offline WANDB_SILENT=true WANDB_DIR=$(mktemp -d) python3 wandb_offline.py [--steps 100000] [--json]

Workload W's names and values come from shared/bench/workload.py (found beside the repository,
or at $RUNLOG_WORKLOAD_DIR); they are generated before the timed part, so the loop times
`wandb.log` alone (plus building the 10-key dict, as a training loop does).

Reports: wandb.init, the log loop, wandb.finish (and teardown of the wandb-core service), the
per-call latency of wandb.log (perf_counter_ns around each call), the bytes of the offline run
on disk (the .wandb file, and the whole offline-run-* directory), and peak RSS (getrusage: this
Python process, and the wandb-core service process once it has exited and been reaped).
"""
import argparse
import json
import os
import resource
import sys
import time


def find_workload():
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [os.environ.get("RUNLOG_WORKLOAD_DIR", ""),
                  os.path.join(here, "..", "..", "..", "shared", "bench"),
                  os.path.join(here, "..", "..", "shared", "bench")]
    for c in candidates:
        if c and os.path.exists(os.path.join(c, "workload.py")):
            sys.path.insert(0, os.path.abspath(c))
            import workload  # noqa: E402
            return workload
    sys.exit("workload.py not found: set RUNLOG_WORKLOAD_DIR to the folder holding shared/bench/workload.py")


def tree_size(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            p = os.path.join(root, f)
            if os.path.isfile(p) and not os.path.islink(p):
                total += os.path.getsize(p)
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--json", action="store_true", help="one JSON line instead of text")
    a = ap.parse_args()
    if os.environ.get("WANDB_MODE") != "offline":
        sys.exit("set WANDB_MODE=offline (and WANDB_DIR to a temp dir)")
    wandb_dir = os.environ.get("WANDB_DIR") or sys.exit("set WANDB_DIR to a temp dir")
    os.makedirs(wandb_dir, exist_ok=True)

    workload = find_workload()
    names = workload.NAMES
    rows = [v for _, v in workload.steps(a.steps)]

    import wandb
    assert wandb.__version__ == "0.31.0", f"wandb {wandb.__version__}, expected 0.31.0"

    t0 = time.perf_counter()
    run = wandb.init(project="bench", name="wandb-offline-w", config={"workload": "W64"}, dir=wandb_dir)
    t1 = time.perf_counter()
    lat = [0] * a.steps
    pc = time.perf_counter_ns
    log = run.log
    for i, v in enumerate(rows):
        d = {names[0]: v[0], names[1]: v[1], names[2]: v[2], names[3]: v[3], names[4]: v[4],
             names[5]: v[5], names[6]: v[6], names[7]: v[7], names[8]: v[8], names[9]: v[9]}
        s = pc()
        log(d)
        lat[i] = pc() - s
    t2 = time.perf_counter()
    run_dir = run.dir  # .../offline-run-*/files
    run.finish()
    t3 = time.perf_counter()
    wandb.teardown()  # stops the wandb-core service, so its rusage is counted below
    t4 = time.perf_counter()

    offline_dir = os.path.dirname(run_dir)
    wandb_file = [os.path.join(offline_dir, f) for f in os.listdir(offline_dir) if f.endswith(".wandb")]
    wandb_bytes = sum(os.path.getsize(f) for f in wandb_file)
    dir_bytes = tree_size(offline_dir)
    lat.sort()
    self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    r = {
        "steps": a.steps, "init_seconds": t1 - t0, "loop_seconds": t2 - t1, "finish_seconds": t3 - t2,
        "teardown_seconds": t4 - t3, "total_seconds": t4 - t0,
        "log_p50_ns": lat[len(lat) // 2], "log_p99_ns": lat[min(len(lat) - 1, len(lat) * 99 // 100)],
        "wandb_file_bytes": wandb_bytes, "run_dir_bytes": dir_bytes,
        "bytes_per_step": wandb_bytes / a.steps, "dir_bytes_per_step": dir_bytes / a.steps,
        "python_peak_rss": self_rss, "service_peak_rss": child_rss,
    }
    if a.json:
        print(json.dumps(r))
    else:
        for k, v in r.items():
            print(f"{k}: {v}")


if __name__ == "__main__":
    main()
