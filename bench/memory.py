"""Figure: peak memory of extracting features of 1,000 and 10,000 images (``cache=False``).

The images are made first in a temporary folder: copies of the data folder's images resized to a short
side of 96 px, each with its own pixel noise so no two files are equal (features cannot come from any
cache). Each count is extracted in its own process with ``FeatureExtractor(load_backbone(name),
cache=False, runtime=resolve_runtime(device, "auto")).extract(paths)``; its peak is ``ru_maxrss`` of
that process (the DataLoader workers' peak is shown beside it, and on a GPU
``torch.cuda.max_memory_allocated``). "Features excluded" subtracts the returned feature matrix
(images x dimension x 4 bytes) from the peak: what is left should not grow with the number of images.

Usage: ``.venv/bin/python bench/memory.py [--memory-images 1000,10000] [--data DIR]``
"""

from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path

from common import SummaryRow, fmt, run_child, safe_ratio, table

MB = 1024**2
SIDE = 96


def make_images(data: str, count: int, folder: Path, seed: int = 0) -> float:
    """``count`` distinct small JPEGs in ``folder`` made from the data folder's images; seconds taken."""
    import numpy as np
    from PIL import Image

    started = time.perf_counter()
    sources = sorted(p for p in Path(data).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")
                     and not p.name.startswith("."))
    if not sources:
        raise SystemExit(f"no JPEG or PNG images under {data}")
    bases = []
    for path in sources[: min(len(sources), count)]:
        with Image.open(path) as image:
            image = image.convert("RGB")
            scale = SIDE / min(image.size)
            image = image.resize((max(SIDE, round(image.width * scale)), max(SIDE, round(image.height * scale))),
                                 Image.BILINEAR)
            bases.append(np.asarray(image, dtype=np.int16))
    rng = np.random.default_rng(seed)
    for i in range(count):
        base = bases[i % len(bases)]
        noisy = np.clip(base + rng.integers(-8, 9, size=base.shape, dtype=np.int16), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(folder / f"{i:06d}.jpg", quality=90)
    return time.perf_counter() - started


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def measure(folder: str, count: int, backbone: str, device: str, precision: str, batch_size: int) -> dict:
    from common import transferlab_process

    transferlab_process()
    from transferlab.backbones import load_backbone
    from transferlab.engine import resolve_runtime
    from transferlab.features import FeatureExtractor

    paths = sorted(Path(folder).glob("*.jpg"))[:count]
    runtime = resolve_runtime(device, precision)
    extractor = FeatureExtractor(load_backbone(backbone), cache=False, runtime=runtime, batch_size=batch_size)
    ready = _rss_bytes()
    features = extractor.extract(paths)
    result = {
        "images": len(features.kept),
        "peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "worker_peak_bytes": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
        "ready_bytes": ready,
        "features_bytes": int(features.features.nbytes),
        "seconds": features.seconds,
        "images_per_second": features.images_per_second,
        "runtime": runtime.describe(),
    }
    if runtime.device_type == "cuda":
        import torch

        result["gpu_peak_bytes"] = torch.cuda.max_memory_allocated()
    return result


def run(args) -> list[SummaryRow]:
    counts = sorted({int(c) for c in args.memory_images.split(",") if c.strip()})
    results = {}
    with tempfile.TemporaryDirectory(prefix="transferlab-bench-images-") as tmp:
        made = make_images(args.data, max(counts), Path(tmp))
        for count in counts:
            results[count] = run_child("memory:measure", folder=tmp, count=count, backbone=args.backbone,
                                       device=args.device, precision="auto", batch_size=args.batch_size)
    gpu = any("gpu_peak_bytes" in r for r in results.values())
    rows = []
    for count, r in results.items():
        excluded = r["peak_bytes"] - r["features_bytes"]
        rows.append([f"{count:,} images", fmt(r["peak_bytes"] / MB, 0), fmt(r["features_bytes"] / MB, 1),
                     fmt(excluded / MB, 0), fmt(r["ready_bytes"] / MB, 0), fmt(r["worker_peak_bytes"] / MB, 0),
                     fmt(r["images_per_second"])] + ([fmt(r.get("gpu_peak_bytes", 0) / MB, 0)] if gpu else []))
    runtime = next(iter(results.values()))["runtime"]
    table(f"Peak memory of feature extraction ({args.backbone}, cache off, {runtime['device']} "
          f"{runtime['precision']}, batch {args.batch_size}), MB",
          ["extract", "peak RSS", "features", "peak - features", "RSS before", "worker peak", "images/s"]
          + (["GPU peak"] if gpu else []), rows,
          [f"images: {max(counts):,} distinct {SIDE}-px JPEGs made from {args.data} in {made:.0f} s; "
           "each count in its own process; 'RSS before' = after loading the backbone, before extracting"])
    if len(counts) < 2:
        return []
    small, large = results[counts[0]], results[counts[-1]]
    small_x = small["peak_bytes"] - small["features_bytes"]
    large_x = large["peak_bytes"] - large["features_bytes"]
    return [
        SummaryRow(f"peak memory {counts[-1]:,} vs {counts[0]:,} images, MB (features excluded)",
                   fmt(large_x / MB, 0), fmt(small_x / MB, 0), safe_ratio(large_x, small_x),
                   f"transferlab = {counts[-1]:,} images, reference column = {counts[0]:,}; lower is better, "
                   "1.00 = flat, aim <= 1.2"),
        SummaryRow(f"peak memory {counts[-1]:,} vs {counts[0]:,} images, MB (features included)",
                   fmt(large["peak_bytes"] / MB, 0), fmt(small["peak_bytes"] / MB, 0),
                   safe_ratio(large["peak_bytes"], small["peak_bytes"]), "as above"),
    ]


if __name__ == "__main__":
    from run_all import run_alone

    run_alone(run, __doc__)
