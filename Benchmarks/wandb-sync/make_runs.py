"""Writes N wandb offline runs (STEPS steps x 5 metrics each, like the `basic` fixture) with the
real wandb client, for the sync benchmark. usage: make_runs.py DIR N STEPS"""
import math
import os
import sys

import wandb

out, n, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.environ.update(WANDB_MODE="offline", WANDB_SILENT="true", WANDB_ERROR_REPORTING="false", WANDB_DIR=out)
for r in range(n):
    run = wandb.init(project="sync-bench", id=f"bench{r:04d}", name=f"bench-{r}", config={"lr": 1e-3, "seed": r},
                     tags=["bench"], settings=wandb.Settings(x_disable_stats=True))
    for s in range(steps):
        run.log({"loss": math.exp(-s / 300) + 0.001 * r, "acc": 1 - math.exp(-s / 250), "lr": 1e-3 * math.cos(s / steps),
                 "grad_norm": 1.0 / (1 + s), "val/loss": math.exp(-s / 280)})
    run.finish()
