"""What every figure of ``bench/run_all.py`` shares: the machine's description, the child processes each
measurement runs in, the plain PyTorch reference loops, timing helpers and tables.

Each measurement runs in a fresh Python process (``bench/child.py``), so no run inherits another's heap,
threads, compiled kernels or page cache state of the model, and a peak-memory figure is that run's alone.
The parent process never imports torch.

The reference is the loop a competent user writes: the same timm model with the same weights,
``resolve_data_config`` + ``create_transform``, ``torchvision.datasets.ImageFolder`` and a ``DataLoader``
with workers; fp32 in the default (NCHW) memory format on a CPU; channels_last, bf16 autocast and pinned
memory on a GPU.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "flowers17"
RESULT_MARK = "BENCH-RESULT "


# -- the machine ------------------------------------------------------------------------------------------

def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def native_bf16() -> list[str]:
    """The native-bf16 flags this CPU has (AVX512-BF16, AMX-BF16); empty: bf16 is emulated and slow."""
    return sorted(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def reference_workers() -> int:
    """The plain loop's DataLoader workers: one per core beyond the first (at most 8)."""
    return max(1, min(8, usable_cores() - 1))


def version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_lines(torch_info: dict) -> list[str]:
    flags = native_bf16()
    lines = [
        f"CPU: {cpu_name()} ({platform.machine()}), {usable_cores()} usable cores "
        f"(os.cpu_count {os.cpu_count()}), torch threads {torch_info.get('threads')}",
        "native bf16: " + (f"yes ({', '.join(flags)})" if flags else "no (no avx512_bf16/amx_bf16 in /proc/cpuinfo)"),
        f"memory: {_memory_gib():.0f} GiB; Python {platform.python_version()}",
        f"torch {torch_info.get('torch')}, torchvision {version('torchvision')}, timm {version('timm')}, "
        f"transferlab {version('transferlab')}",
    ]
    if torch_info.get("cuda"):
        lines.append(f"GPU: {torch_info['gpu']} (CUDA {torch_info.get('cuda_version')}, "
                     f"bf16 {'yes' if torch_info.get('cuda_bf16') else 'no'})")
    else:
        lines.append("GPU: none visible to torch")
    return lines


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return float("nan")


def describe_torch() -> dict:
    """Run in a child: torch's version, threads, and the GPU if any."""
    import torch

    info = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cuda": torch.cuda.is_available()}
    if info["cuda"]:
        info.update(gpu=torch.cuda.get_device_name(0), cuda_version=torch.version.cuda,
                    cuda_bf16=torch.cuda.is_bf16_supported())
    return info


# -- child processes ----------------------------------------------------------------------------------------

class ChildFailed(RuntimeError):
    pass


def run_child(task: str, **kwargs: Any) -> dict:
    """``bench/<module>.py``'s ``function(**kwargs)`` in a fresh process (task ``module:function``); its result.

    The child's own output is shown only when it fails.
    """
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    command = [sys.executable, str(BENCH / "child.py"), task, json.dumps(kwargs)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK):])
    tail = "\n".join((done.stdout + "\n" + done.stderr).strip().splitlines()[-15:])
    raise ChildFailed(f"{task} failed (exit {done.returncode}):\n{tail}")


def child_main(argv: Sequence[str]) -> None:
    """Entry of ``bench/child.py``: import the module, call the function, print its JSON result last."""
    task, payload = argv[0], argv[1]
    module_name, function_name = task.split(":")
    sys.path.insert(0, str(BENCH))
    module = __import__(module_name)
    result = getattr(module, function_name)(**json.loads(payload))
    print(RESULT_MARK + json.dumps(result), flush=True)


# -- torch-side helpers (imported in children only) ------------------------------------------------------------

def pick_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def plain_model(backbone: str, num_classes: int | None = 0, device: str = "cpu"):
    """The reference's model: the same timm model with the same offline weights transferlab loads
    (``load_backbone(name).model``), then as a user holds it: fp32, default memory format on a CPU,
    channels_last on a GPU. ``num_classes=0``: pooled features; K: a new K-class classifier.
    Returns the model and transferlab's ``Backbone`` record (weights source, freeze units)."""
    import torch

    from transferlab.backbones import load_backbone

    loaded = load_backbone(backbone)
    model = loaded.model
    if num_classes is not None:
        model.reset_classifier(num_classes)
    model = model.to(memory_format=torch.contiguous_format)
    if device.startswith("cuda"):
        model = model.to(device, memory_format=torch.channels_last)
    return model, loaded


def plain_transform(model, training: bool = False):
    from timm.data import create_transform, resolve_data_config

    return create_transform(**resolve_data_config(model=model), is_training=training)


def image_folders(data: str | Path, transform, paths: Iterable[str | Path] | None = None):
    """``ImageFolder`` over the data folder (one per split folder when it has train/ val/ test/, joined),
    kept to ``paths`` when given (the same images transferlab's run used), in their order."""
    from torch.utils.data import ConcatDataset, Subset
    from torchvision.datasets import ImageFolder

    root = Path(data)
    splits = [root / name for name in ("train", "val", "validation", "valid", "test") if (root / name).is_dir()]
    folders = [ImageFolder(str(folder), transform=transform) for folder in (splits or [root])]
    dataset = ConcatDataset(folders) if len(folders) > 1 else folders[0]
    if paths is None:
        return dataset
    where: dict[str, int] = {}
    offset = 0
    for folder in folders:
        for i, (path, _) in enumerate(folder.samples):
            where[str(Path(path).resolve())] = offset + i
        offset += len(folder)
    # files ImageFolder does not take (extensions it does not know) are left out: the image counts show it
    indices = [where[key] for key in (str(Path(p).resolve()) for p in paths) if key in where]
    return Subset(dataset, indices)


def plain_loader(dataset, batch_size: int, device: str, shuffle: bool = False):
    from torch.utils.data import DataLoader

    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=reference_workers(),
                      pin_memory=device.startswith("cuda"))


def plain_autocast(device: str):
    """The reference's precision: none on a CPU, bf16 autocast on a GPU."""
    import contextlib

    import torch

    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def plain_inputs(x, device: str):
    import torch

    if device.startswith("cuda"):
        return x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
    return x


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def transferlab_process() -> None:
    """transferlab's runs go as its command line runs them (``tune_allocator()``, see the README)."""
    import transferlab

    transferlab.tune_allocator()


def rate(work: Callable[[], Any], items: int, device: str = "cpu", warmup: int = 3, min_seconds: float = 5.0,
         min_runs: int = 5) -> dict:
    """Items per second of ``work`` (which handles ``items`` items) after ``warmup`` calls: from the median
    call (robust to other processes taking the CPU now and then), with the mean rate beside it."""
    for _ in range(warmup):
        work()
    sync(device)
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - started < min_seconds:
        call_started = time.perf_counter()
        work()
        sync(device)
        times.append(time.perf_counter() - call_started)
    seconds = time.perf_counter() - started
    return {"per_second": items / statistics.median(times), "mean_per_second": items * len(times) / seconds,
            "runs": len(times), "seconds": seconds}


def median_ms(work: Callable[[int], Any], runs: int, warmup: int, device: str = "cpu") -> dict:
    """Median and spread of ``work(i)`` in milliseconds over ``runs`` calls after ``warmup`` calls."""
    for i in range(warmup):
        work(i)
    times = []
    for i in range(runs):
        sync(device)
        started = time.perf_counter()
        work(warmup + i)
        sync(device)
        times.append((time.perf_counter() - started) * 1000.0)
    times.sort()
    return {"median_ms": statistics.median(times), "p10_ms": times[len(times) // 10],
            "p90_ms": times[min(len(times) - 1, (9 * len(times)) // 10)], "runs": runs}


# -- output ---------------------------------------------------------------------------------------------------

@dataclass
class SummaryRow:
    figure: str
    transferlab: str
    reference: str
    ratio: float | None  # >1: transferlab better (faster, or for memory: see the figure)
    note: str = ""


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:,.{digits}f}"


def ratio_text(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.2f}x"


def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]], notes: Sequence[str] = ()) -> None:
    """A plain aligned text table (first column and a last "note" column left-aligned, the rest right-aligned)."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        left = {0, len(widths) - 1} if headers[-1] == "note" else {0}
        return "  ".join(c.ljust(w) if i in left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    print()
    print(f"== {title}")
    print(line(cells[0]))
    print("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        print(line(row))
    for note in notes:
        print(f"   {note}")
    sys.stdout.flush()


def safe_ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b or not math.isfinite(a) or not math.isfinite(b):
        return None
    return a / b
