"""Small data made in the test for study and report tests: coloured-shape images, study files, records."""

from __future__ import annotations

import random
import textwrap
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = {"red": (220, 30, 30), "green": (30, 190, 40), "blue": (30, 40, 220)}


def make_image_folder(root: Path, per_class: int = 12, size: int = 40) -> Path:
    """One sub-folder per class of ``per_class`` PNGs: a coloured disc on a grey background."""
    rng = random.Random(0)
    for name, colour in COLOURS.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            grey = rng.randrange(60, 200)
            image = Image.new("RGB", (size, size), (grey, grey, grey))
            x, y = rng.randrange(2, size // 2), rng.randrange(2, size // 2)
            ImageDraw.Draw(image).ellipse([x, y, x + size // 3, y + size // 3], fill=colour)
            image.save(folder / f"{name}_{i:02d}.png")
    return root


def write_study(folder: Path, text: str, name: str = "study.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


TINY_BACKBONE = "{name: test_efficientnet, random_init: true}"
