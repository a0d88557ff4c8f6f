"""Small helpers for making test data and running the command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

# Few-image settings of the real backbone on the built-in digits, shared so its features are cached once.
DIGITS_SMALL = {"num_classes": 3, "per_class": 10}


def write_image(path: Path, seed: int, size: tuple[int, int] = (48, 40), mode: str = "RGB") -> Path:
    """A random-noise picture of ``size`` (width, height) saved at ``path``."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).convert(mode).save(path)
    return path


def make_class_folders(root: Path, counts: dict[str, int], seed: int = 0) -> Path:
    """``root/<class>/<i>.png`` for each class; classes differ in colour so they are learnable."""
    root.mkdir(parents=True, exist_ok=True)
    for c, (name, count) in enumerate(counts.items()):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(seed + 1000 * c)
        for i in range(count):
            base = np.zeros((32, 32, 3), np.float64)
            base[..., c % 3] = 200
            noisy = np.clip(base + rng.normal(0, 30, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(noisy).save(folder / f"{name}_{i:03d}.png")
    return root


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m transferlab ARGS`` offline, with this session's cache, captured."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "transferlab", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=600,
    )
