"""Make the recipe search's data sets farther from ImageNet out of Flowers-17 (outside the repository).

    python bench/recipes/make_data.py [--source /work/shared/datasets/flowers17] [--out /tmp/recipe/data]

writes OUT/flowers17-grey (every image converted to greyscale, saved as RGB JPEG) and OUT/flowers17-64px
(every image shrunk to 64 px on its short side; the backbone's transform upscales it back to 224), each with
the source's train/ and test/ folders. Ants vs bees and digits are used as they are.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image


def grey(image: Image.Image) -> Image.Image:
    return image.convert("L").convert("RGB")


def small(image: Image.Image, side: int = 64) -> Image.Image:
    image = image.convert("RGB")
    scale = side / min(image.size)
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                        Image.Resampling.BICUBIC)


def convert(source: Path, out: Path, change) -> int:
    count = 0
    for path in sorted(source.rglob("*")):
        if path.suffix.lower() not in (".jpg", ".jpeg", ".png"):
            continue
        target = (out / path.relative_to(source)).with_suffix(".jpg")
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as image:
            change(image).save(target, quality=92)
        count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=Path("/work/shared/datasets/flowers17"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/recipe/data"))
    args = parser.parse_args()
    for name, change in (("flowers17-grey", grey), ("flowers17-64px", small)):
        made = convert(args.source, args.out / name, change)
        print(f"{args.out / name}: {made} images written")


if __name__ == "__main__":
    main()
