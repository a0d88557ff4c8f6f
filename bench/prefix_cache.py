"""Benchmark: fine-tuning with the frozen-prefix cache vs recomputing the frozen layers every epoch.

Runs the same fine-tuning twice in one process (same data, seed and settings,
early stopping off so both run the same epochs) and prints seconds per epoch,
their ratio, the one-off cost of computing the cache, and both validation
accuracies. Then it splits a recomputed epoch into its parts, per training
image: decoding, the frozen prefix's forward pass and the trainable tail's
training step, with their floating-point operations. The cache removes the
first two, so (all three) / (tail step) is what it gains when an epoch costs
nothing else (the real recomputed epoch also pays for decoding workers
competing with the model's threads).
Usage:

    .venv/bin/python bench/prefix_cache.py [--data DIR] [--freeze half] [--epochs 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from transferlab import tune_allocator
from transferlab.data import image_batches
from transferlab.engine.inputs import CachedInputs
from transferlab.engine.loop import fit
from transferlab.finetune import FinetuneConfig, run_finetune
from transferlab.finetune.optim import build_optimizer, build_schedule
from transferlab.finetune.run import FinetuneRun

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
    tune_allocator()  # as the CLI does

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
    print_breakdown(FinetuneConfig(data=args.data, backbone=args.backbone, freeze=args.freeze,
                                   per_class=args.per_class, num_workers=0))


def warm_seconds(work):
    """Seconds of a second call (the first pays for kernel set-up and heap growth, as an epoch does only once)."""
    work()
    started = time.perf_counter()
    result = work()
    return time.perf_counter() - started, result


def print_breakdown(config: FinetuneConfig) -> None:
    """Time each part of a recomputed epoch on the training images, one after the other (no overlap)."""
    run = FinetuneRun(config)
    run.prepare()
    stage = run.stages[0]
    model = run.model
    model.freeze(stage.frozen_units)
    cut = model.cacheable_steps()
    started = time.perf_counter()
    batches = [b for b in image_batches([s.path for s in run.train_samples], run.eval_transform, config.batch_size, 0)
               if b.images is not None]
    decode = time.perf_counter() - started
    model.eval()
    with torch.no_grad():
        prefix_seconds, prefix = warm_seconds(
            lambda: torch.cat([model.prefix(run.runtime.inputs(b.images), cut) for b in batches]))
    kept = [i for b in batches for i in b.indices]
    inputs = CachedInputs(prefix, torch.tensor([run.train_samples[i].label for i in kept]), cut)
    rates = run.stage_rates(stage)
    optimizer = build_optimizer(model, config.optimizer, rates.head_lr, rates.backbone_lr, rates.layer_decay,
                                config.weight_decay)
    schedule = build_schedule(optimizer, config.schedule, 2 * len(batches))
    # the epoch fine-tuning runs on cached outputs, through the engine
    tail_seconds, _ = warm_seconds(lambda: fit(model, lambda module, x, start: module(x, start=start), run.loss_fn,
                                               optimizer, schedule, inputs, epochs=1, runtime=run.runtime,
                                               batch_size=config.batch_size))
    model.eval()
    with FlopCounterMode(display=False) as prefix_flops, torch.no_grad():
        one = model.prefix(batches[0].images[:1], cut)
    with FlopCounterMode(display=False) as tail_flops, torch.no_grad():
        model(one, start=cut)

    n = len(kept)
    print(f"\nparts of a recomputed epoch, per training image ({n} images, units 0-{stage.frozen_units - 1} frozen, "
          f"{cut} of {len(model.path or [])} path steps cached):")
    print(f"  decode and resize          {decode / n * 1000:7.1f} ms")
    print(f"  frozen prefix forward      {prefix_seconds / n * 1000:7.1f} ms   {prefix_flops.get_total_flops() / 1e6:6.0f} MFLOP")
    print(f"  trainable tail, train step {tail_seconds / n * 1000:7.1f} ms   {tail_flops.get_total_flops() / 1e6:6.0f} MFLOP forward"
          " (about 3x that with backward)")
    gain = (decode + prefix_seconds + tail_seconds) / tail_seconds
    print(f"cache gain if an epoch cost only these parts: {gain:.2f}x")


if __name__ == "__main__":
    main()
