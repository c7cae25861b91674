"""Drives the real wandb client (0.31.0) against a RunLog server for the W&B interop tests.

usage: scenarios.py SCENARIO ENTITY PROJECT [RUN_ID]
  online         init(project, entity, config, tags, notes), 50 x log, summary, finish; prints the run id
  resume-must    init(id=RUN_ID, resume="must"), 10 x log, finish
  resume-missing init(id=RUN_ID, resume="must") of a run the server does not have: must fail
  fork           init(fork_from=f"{RUN_ID}?_step=20"), 5 x log, finish; prints the new run id
  rewind         init(resume_from=f"{RUN_ID}?_step=30"), 5 x log, finish

The server URL and key come from WANDB_BASE_URL and WANDB_API_KEY. Every line printed is a
JSON object, so the Swift test can read what the client saw.
"""
import json
import sys

import wandb


def main():
    scenario, entity, project = sys.argv[1:4]
    run_id = sys.argv[4] if len(sys.argv) > 4 else None
    if scenario == "online":
        run = wandb.init(project=project, entity=entity,
                         config={"lr": 0.01, "batch_size": 64, "optimizer": {"name": "sgd", "momentum": 0.9}},
                         tags=["interop", "online"], notes="online interop run")
        for i in range(50):
            run.log({"loss": 1.0 / (i + 1), "acc": i / 50.0})
        run.summary["best_acc"] = 0.98
        print("hello from the online run")
        rid = run.id
        run.finish()
    elif scenario == "resume-must":
        run = wandb.init(project=project, entity=entity, id=run_id, resume="must")
        start = run.starting_step
        for i in range(10):
            run.log({"loss": 0.01, "acc": 0.99, "resumed_metric": i})
        rid = run.id
        run.finish()
        print(json.dumps({"starting_step": start}))
    elif scenario == "resume-missing":
        try:
            wandb.init(project=project, entity=entity, id=run_id, resume="must")
        except Exception as e:  # UsageError: the run does not exist
            print(json.dumps({"error": type(e).__name__, "message": str(e)}))
            return
        print(json.dumps({"error": None}))
        return
    elif scenario == "fork":
        run = wandb.init(project=project, entity=entity, fork_from=f"{run_id}?_step=20")
        start = run.starting_step
        for i in range(5):
            run.log({"loss": 0.2 - 0.01 * i, "fork_metric": i})
        rid = run.id
        run.finish()
        print(json.dumps({"starting_step": start}))
    elif scenario == "rewind":
        run = wandb.init(project=project, entity=entity, resume_from=f"{run_id}?_step=30")
        start = run.starting_step
        for i in range(5):
            run.log({"loss": 0.3 - 0.01 * i, "rewind_metric": i})
        rid = run.id
        run.finish()
        print(json.dumps({"starting_step": start}))
    else:
        raise SystemExit(f"unknown scenario {scenario}")
    print(json.dumps({"run_id": rid}))


if __name__ == "__main__":
    main()
