"""Figure: one 12-run probe study with ``study run --jobs 1`` and with ``--jobs 2`` (a figure, not a test).

The study: EfficientNet-Lite0 on the built-in digits (the first ``--num-classes`` classes), a logistic-regression
probe swept over 3 per-class sizes x 4 seeds. Each mode runs in fresh processes with an empty feature cache and
an empty store, so neither inherits the other's features; the time is the whole command's wall clock (worker
start-up included). With N jobs each worker gets cores // N torch threads.

Usage: ``.venv/bin/python bench/study_jobs.py [--backbone efficientnet_lite0] [--num-classes 4] [--jobs 1,2]``
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def study_text(backbone: str, num_classes: int) -> str:
    return textwrap.dedent(f"""
        name: jobs-bench
        data: digits
        backbones: [{backbone}]
        settings: {{num_classes: {num_classes}, num_workers: 0, batch_size: 32, device: cpu}}
        methods: [{{name: logreg, kind: probe, head: logreg}}]
        sweep:
          per_class: [8, 16, 24]
          seed: [0, 1, 2, 3]
        """).lstrip()


def time_study(study: Path, jobs: int, folder: Path) -> float:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFERLAB_CACHE_DIR": str(folder / f"cache-{jobs}"),
           "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    # the digits as PNGs: written once into each cache before timing, so neither mode pays for it
    subprocess.run([sys.executable, "-c", "from transferlab.data.builtin import materialize_digits; "
                    "materialize_digits()"], env=env, check=True)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "transferlab", "study", "run", str(study), "--store",
                           str(folder / f"runs-{jobs}.sqlite"), "--jobs", str(jobs)], env=env, capture_output=True,
                          text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"--jobs {jobs} failed:\n{done.stderr[-2000:]}")
    print(f"  --jobs {jobs}: {done.stdout.strip()}", flush=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--num-classes", type=int, default=4)
    parser.add_argument("--jobs", default="1,2", help="comma-separated job counts, the first is the baseline")
    args = parser.parse_args()
    counts = [int(j) for j in args.jobs.split(",")]
    print(f"12-run probe study ({args.backbone}, digits, {args.num_classes} classes), {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="tl-jobs-bench-") as tmp:
        folder = Path(tmp)
        study = folder / "study.yaml"
        study.write_text(study_text(args.backbone, args.num_classes))
        times = {jobs: time_study(study, jobs, folder) for jobs in counts}
    base = times[counts[0]]
    print(f"{'jobs':>5} {'wall s':>8} {'vs --jobs ' + str(counts[0]):>12}")
    for jobs, seconds in times.items():
        print(f"{jobs:>5} {seconds:>8.1f} {base / seconds:>11.2f}x")


if __name__ == "__main__":
    main()
