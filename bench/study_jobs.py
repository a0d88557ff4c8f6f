"""Figure: one 12-run probe study with ``study run --jobs 1`` and with ``--jobs 2`` (a figure, not a test).

The study: the shape of ``examples/samples-per-class.yaml``, EfficientNet-Lite0 on the built-in digits (the first
``--num-classes`` classes; or ``--data DIR``), a logistic-regression probe and a linear softmax probe (trained by the engine) over 2
per-class sizes x 3 seeds: 12 runs that share one feature extraction. With ``--jobs N`` the workers extract those
shared features together (each every N-th image) before claiming runs; ``--heads logreg`` times a study of
head fits alone. Each mode runs in fresh processes with an empty feature cache and
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


def study_text(backbone: str, num_classes: int | None, heads: list[str], data: str = "digits") -> str:
    methods = ", ".join(f"{{name: {head}, kind: probe, head: {head}}}" for head in heads)
    per_class = [8, 32] if len(heads) == 2 else [8, 16, 24, 32][: 12 // (3 * len(heads))]
    return textwrap.dedent(f"""
        name: jobs-bench
        data: {data}
        backbones: [{backbone}]
        settings: {{{f"num_classes: {num_classes}, " if num_classes else ""}num_workers: 0, batch_size: 32, device: cpu}}
        methods: [{methods}]
        sweep:
          per_class: {per_class}
          seed: [0, 1, 2]
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
    parser.add_argument("--data", default="digits", help="the study's data: digits, or an image folder")
    parser.add_argument("--num-classes", type=int, default=None, help="only the first N classes (default: all)")
    parser.add_argument("--heads", default="logreg,linear", help="comma-separated probe heads (one method each)")
    parser.add_argument("--jobs", default="1,2", help="comma-separated job counts, the first is the baseline")
    args = parser.parse_args()
    counts = [int(j) for j in args.jobs.split(",")]
    heads = [h.strip() for h in args.heads.split(",") if h.strip()]
    data = "digits" if args.data == "digits" else str(Path(args.data).resolve())
    print(f"12-run probe study ({args.backbone}, {data}, {args.num_classes or 'all'} classes, heads {', '.join(heads)}), "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="tl-jobs-bench-") as tmp:
        folder = Path(tmp)
        study = folder / "study.yaml"
        study.write_text(study_text(args.backbone, args.num_classes, heads, data))
        times = {jobs: time_study(study, jobs, folder) for jobs in counts}
    base = times[counts[0]]
    print(f"{'jobs':>5} {'wall s':>8} {'vs --jobs ' + str(counts[0]):>12}")
    for jobs, seconds in times.items():
        print(f"{jobs:>5} {seconds:>8.1f} {base / seconds:>11.2f}x")


if __name__ == "__main__":
    main()
