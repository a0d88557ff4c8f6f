"""Built-in datasets that work offline: rendered from data that installed packages ship."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import UserError
from ..pathkinds import wrong_kind
from ..storage import cache_root, folder_mode

BUILTIN_DATASETS = ("digits",)


def materialize_digits(root: Path | None = None) -> Path:
    """scikit-learn's 1797 8x8 digits written once as greyscale PNGs, one folder per digit.

    Written into a temporary folder and renamed into place, so a concurrent or killed
    run never sees a half-written dataset.
    """
    target = (root or cache_root() / "datasets") / "digits"
    if target.exists():
        return target
    from sklearn.datasets import load_digits

    digits = load_digits()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".digits-"))
    except OSError as exc:
        raise UserError(f"cannot write the built-in digits images to {target.parent}: "
                        f"{(exc.strerror or str(exc)).lower()} (choose a writable --cache-dir)") from None
    try:
        for index, (image, label) in enumerate(zip(digits.images, digits.target)):
            pixels = (image * (255.0 / 16.0)).round().astype(np.uint8)
            folder = staging / str(label)
            folder.mkdir(exist_ok=True)
            Image.fromarray(pixels, mode="L").save(folder / f"{index:04d}.png")
        try:
            staging.chmod(folder_mode())  # mkdtemp makes it private: a shared cache is readable as any folder
            staging.rename(target)
        except OSError:  # another process finished first
            pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


# A list of images and labels (``data.listfile``): its file suffix -> its delimiter.
LIST_SUFFIXES = {".csv": ",", ".tsv": "\t"}


def require_data_folder(data: str | Path) -> None:
    """A built-in name, an existing folder, a .csv/.tsv list, tar shards or ``hf:PATH``, else one clear error
    (cheap: the CLI checks before torch loads)."""
    if str(data) in BUILTIN_DATASETS:
        return
    from .packed import check_packed, is_packed  # (not .sources: it loads torch)

    if is_packed(data):
        return check_packed(data)
    path = Path(data).expanduser()
    if path.is_file() and path.suffix.lower() in LIST_SUFFIXES or path.is_dir():
        return
    raise wrong_kind(path, "data folder", "a folder or a .csv/.tsv list of images (or .tar shards, hf:PATH)")


def resolve_data_path(data: str | Path) -> Path:
    """A folder path, or the folder of a built-in dataset named ``data``."""
    path = Path(data).expanduser()
    if not path.exists() and str(data) == "digits":
        return materialize_digits()
    return path
