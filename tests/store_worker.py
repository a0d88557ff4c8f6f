"""A study worker for the kill tests: the real study runner and store, with a runner that logs each run it
starts and each finish the store accepted (``start ID PID`` / ``done ID PID`` lines, appended).

python store_worker.py STUDY_FILE STORE LOG   ($WORKER_RUN_SLEEP: seconds each run waits before probing)
"""

from __future__ import annotations

import os
import sys
import time

from transferlab.study import RunStore, load_study, plan_study, run_study
from transferlab.study.runner import execute


def main(study: str, store: str, log: str) -> None:
    def line(text: str) -> None:
        with open(log, "a", encoding="utf-8") as f:  # one short append per line: whole lines from every process
            f.write(text + "\n")

    def runner(run, models_dir, progress):
        line(f"start {run.run_id} {os.getpid()}")
        time.sleep(float(os.environ.get("WORKER_RUN_SLEEP", "0.2")))
        return execute(run, models_dir, progress)

    def on_run(event) -> None:
        if event.outcome.status == "done":
            line(f"done {event.outcome.run.run_id} {os.getpid()}")

    with RunStore(store) as runs_store:
        run_study(plan_study(load_study(study)), runs_store, on_run=on_run, runner=runner)


if __name__ == "__main__":
    main(*sys.argv[1:4])
