"""Benchmark: fine-tuning with the frozen-prefix cache vs recomputing the frozen layers every epoch.

Runs the same fine-tuning twice in one process (same data, seed and settings,
early stopping off so both run the same epochs) and prints seconds per epoch,
their ratio, the one-off cost of computing the cache, and both validation
accuracies. Usage:

    .venv/bin/python bench/prefix_cache.py [--data DIR] [--freeze half] [--epochs 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from transferlab.finetune import FinetuneConfig, run_finetune

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "hymenoptera_data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA) if DEFAULT_DATA.exists() else "digits")
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--freeze", default="half")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--per-class", type=int, default=None)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    rows = {}
    with tempfile.TemporaryDirectory() as out:
        for cached in (False, True):
            config = FinetuneConfig(
                data=args.data, backbone=args.backbone, freeze=args.freeze, epochs=args.epochs,
                early_stopping="none", prefix_cache=cached, per_class=args.per_class,
                output=str(Path(out) / ("cached" if cached else "recomputed")),
            )
            started = time.perf_counter()
            result = run_finetune(config)
            rows[cached] = (result, time.perf_counter() - started)

    recomputed, cached = rows[False][0], rows[True][0]
    prefix_note = next((n for n in cached.notes if n.startswith("frozen-prefix cache")), "")
    print(f"data: {args.data}  backbone: {args.backbone}  freeze: {args.freeze}  epochs: {args.epochs}")
    print(f"train/val images: {recomputed.train_images}/{recomputed.val_images}")
    print(f"{'':24}{'recomputed':>12}{'cached':>12}")
    print(f"{'seconds per epoch':24}{recomputed.seconds_per_epoch:12.2f}{cached.seconds_per_epoch:12.2f}")
    for i, (a, b) in enumerate(zip(recomputed.history, cached.history), 1):
        print(f"{'  epoch ' + str(i):24}{a['seconds']:12.2f}{b['seconds']:12.2f}")
    print(f"{'run seconds (all)':24}{rows[False][1]:12.1f}{rows[True][1]:12.1f}")
    final_val = [r.history[-1]['val_accuracy'] for r in (recomputed, cached)]
    print(f"{'final val accuracy':24}{final_val[0]:12.4f}{final_val[1]:12.4f}")
    print(f"{'test accuracy':24}{recomputed.accuracy:12.4f}{cached.accuracy:12.4f}")
    print(f"speed-up per epoch: {recomputed.seconds_per_epoch / cached.seconds_per_epoch:.2f}x  ({prefix_note})")
    print(f"val accuracy difference: {abs(final_val[0] - final_val[1]) * 100:.2f} points")


if __name__ == "__main__":
    main()
