"""Training-time augmentation built from the backbone's own preprocessing."""

from __future__ import annotations

from torchvision import transforms

from ..errors import UserError

AUGMENTATIONS = ("flip", "rotate", "crop")


def train_transform(data_config: dict, augment: list[str], eval_transform):
    """The evaluation transform when ``augment`` is empty; otherwise flips/rotations/crops before it."""
    unknown = [a for a in augment if a not in AUGMENTATIONS]
    if unknown:
        raise UserError(f"unknown augmentation {unknown[0]!r}: use {', '.join(AUGMENTATIONS)}")
    if not augment:
        return eval_transform
    size = tuple(data_config["input_size"][1:])
    interpolation = transforms.InterpolationMode(data_config.get("interpolation", "bilinear"))
    steps = []
    if "crop" in augment:
        steps.append(transforms.RandomResizedCrop(size, scale=(0.7, 1.0), interpolation=interpolation))
    else:
        scale = 1.0 / data_config.get("crop_pct", 0.875)
        steps += [transforms.Resize(int(size[0] * scale), interpolation=interpolation), transforms.CenterCrop(size)]
    if "flip" in augment:
        steps.append(transforms.RandomHorizontalFlip())
    if "rotate" in augment:
        steps.append(transforms.RandomRotation(10, interpolation=transforms.InterpolationMode.BILINEAR))
    steps += [transforms.ToTensor(), transforms.Normalize(data_config["mean"], data_config["std"])]
    return transforms.Compose(steps)
