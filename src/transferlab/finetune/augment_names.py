"""The augmentation names a fine-tuning run accepts (checked without torch)."""

from __future__ import annotations

from ..errors import UserError

AUGMENTATIONS = ("flip", "rotate", "zoom", "crop", "randaugment", "trivialaugment")


def check_augment(augment: list[str] | str | None) -> list[str]:
    """The augmentation list with each name checked; a comma-separated string is split."""
    if augment is None:
        return []
    if isinstance(augment, str):
        augment = [part.strip() for part in augment.split(",") if part.strip()]
    names = [str(a) for a in augment]
    if names == ["none"]:  # the way to turn a recipe's augmentation off on the command line
        return []
    for name in names:
        if name not in AUGMENTATIONS:
            raise UserError(f"unknown augmentation {name!r}: use {', '.join(AUGMENTATIONS)} (or none alone)")
    if "randaugment" in names and "trivialaugment" in names:
        raise UserError("choose one of randaugment and trivialaugment")
    return names
