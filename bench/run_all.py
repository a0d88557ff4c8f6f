"""transferlab against the plain PyTorch loop, every figure in one run (``make bench``).

Prints the machine (CPU model, cores, native bf16, GPU) and the torch/timm versions, then one table per
figure and a summary "figure | transferlab | reference | ratio". Every reference is measured in the same
run, each measurement in its own process. Figures:

  extraction  feature extraction end to end from the JPEG files; probe accuracy in auto vs fp32
  model       the network alone on a random batch, against the compiled-bf16 ceiling
  finetune    fine-tuning seconds per epoch, --freeze none / half / all
  predict     predict latency for one image
  memory      peak memory of extracting 1,000 and 10,000 images

transferlab runs with its defaults (device auto, precision auto) and, where auto is not fp32 here, also
with precision fp32, so each speed-up shows by itself. Benchmarks are measurements, not tests: nothing
here asserts a speed. On a 2-core CPU the whole run took 34 minutes while other jobs shared it; ``--quick`` is a small
version for development.

Usage: ``.venv/bin/python bench/run_all.py [--data DIR] [--device auto|cpu|cuda] [--figures model,memory] [--quick]``
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from common import (DEFAULT_DATA, ChildFailed, SummaryRow, machine_lines, ratio_text,  # noqa: E402
                    run_child, table)

FIGURES = ("extraction", "model", "finetune", "predict", "memory")


def parse_args(doc: str | None = None, argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=doc or __doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="image folder (class folders, or train/ test/)")
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="auto: CUDA when present (transferlab gets device='auto')")
    parser.add_argument("--figures", default=",".join(FIGURES), help="comma-separated: " + ", ".join(FIGURES))
    parser.add_argument("--batch-size", type=int, default=32, help="batch of every loop (transferlab's default)")
    parser.add_argument("--probe-per-class", type=int, default=None,
                        help="extraction: training images per class (default: all; the test images are all used)")
    parser.add_argument("--per-class", type=int, default=20, help="fine-tuning: training images per class")
    parser.add_argument("--epochs", type=int, default=2, help="fine-tuning epochs")
    parser.add_argument("--freeze", default="none,half,all", help="fine-tuning policies")
    parser.add_argument("--augment", default="", help="fine-tuning: augmentation (e.g. flip,crop); the reference "
                        "then uses timm's training transform, transferlab decodes each image once")
    parser.add_argument("--model-batch", type=int, default=None, help="model alone: batch (default 32, 256 on CUDA)")
    parser.add_argument("--min-seconds", type=float, default=5.0, help="model alone: seconds timed per row")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="skip the compiled ceiling")
    parser.add_argument("--predict-runs", type=int, default=30, help="predict: timed calls per row")
    parser.add_argument("--memory-images", default="1000,10000", help="memory: image counts")
    parser.add_argument("--always-fp32", action="store_true",
                        help="also run transferlab with precision fp32 where auto already is fp32")
    parser.add_argument("--quick", action="store_true", help="small sizes for development")
    args = parser.parse_args(argv)
    if args.quick:
        args.probe_per_class = args.probe_per_class or 3
        args.per_class = 4
        args.epochs = 1
        args.min_seconds = 1.0
        args.predict_runs = 8
        args.memory_images = "100,300"
    args.figures = [f.strip() for f in args.figures.split(",") if f.strip()]
    unknown = [f for f in args.figures if f not in FIGURES]
    if unknown:
        parser.error(f"unknown figure(s) {', '.join(unknown)}: use {', '.join(FIGURES)}")
    if not Path(args.data).is_dir():
        parser.error(f"data folder not found: {args.data}")
    args.data = str(Path(args.data).resolve())
    return args


def describe(device: str) -> dict:
    """Child: torch's description and what transferlab's ``auto`` resolves to here."""
    from common import describe_torch
    from transferlab.engine import resolve_runtime

    return {**describe_torch(), "auto": resolve_runtime(device, "auto").describe()}


def load_text() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min)"


def print_header(args: argparse.Namespace) -> None:
    """Print the machine and versions; resolve the device and which transferlab precisions to run."""
    info = run_child("run_all:describe", device=args.device)
    args.resolved_device = "cuda" if (args.device == "cuda" or (args.device == "auto" and info["cuda"])) else "cpu"
    auto = info["auto"]
    args.transferlab_precisions = ["auto"] + (["fp32"] if auto["precision"] != "fp32" or args.always_fp32 else [])
    print("transferlab benchmark: transferlab against the plain PyTorch loop, measured in the same run")
    for line in machine_lines(info):
        print(line)
    memory = "channels_last" if auto["channels_last"] else "default memory format"
    print(f"device: {args.resolved_device}; transferlab auto = {auto['device']} {auto['precision']} {memory}"
          + ("" if "fp32" in args.transferlab_precisions else " (so its fp32 runs are the auto runs)"))
    print(f"data: {args.data}; backbone: {args.backbone}; batch {args.batch_size}")
    print("transferlab runs as its command line does (transferlab.tune_allocator()); the reference runs plain")
    print(f"load average: {load_text()}" + ("  (other processes are using the CPU: figures measured at different "
                                             "times compete with them differently)" if os.getloadavg()[0] > 1.0
                                            else ""))
    sys.stdout.flush()


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    print_header(args)
    import extraction
    import finetune_epochs
    import memory
    import model_only
    import predict_latency

    modules = {"extraction": extraction, "model": model_only, "finetune": finetune_epochs,
               "predict": predict_latency, "memory": memory}
    summary: list[SummaryRow] = []
    for name in args.figures:
        figure_started = time.perf_counter()
        try:
            summary.extend(modules[name].run(args))
        except ChildFailed as exc:
            print(f"\n== {name}: failed\n{exc}")
            summary.append(SummaryRow(name, "failed", "", None, "see above"))
        print(f"   ({name}: {time.perf_counter() - figure_started:.0f} s)")
    table("Summary", ["figure", "transferlab", "reference", "ratio", "note"],
          [[r.figure, r.transferlab, r.reference, ratio_text(r.ratio), r.note] for r in summary],
          ["ratio: speed of transferlab over the reference (>1: transferlab faster); for memory, 10,000 over "
           "1,000 images (1.00: flat)",
           f"total {time.perf_counter() - started:.0f} s; load average at the end: {load_text()}"])


def run_alone(run, doc: str) -> None:
    """One figure's script run by itself: the same options and header as the whole benchmark."""
    args = parse_args(doc)
    print_header(args)
    run(args)


if __name__ == "__main__":
    main()
