"""Training-time augmentation: timm's ``create_transform(is_training=True)`` for the backbone's own preprocessing,
and mixup/cutmix on batches.

Names: ``flip`` (horizontal, p=0.5), ``crop`` (random resized crop of 70-100% of the
image), ``rotate`` (up to +-10 degrees), ``randaugment`` (timm's ``rand-m9-mstd0.5-inc1``)
and ``trivialaugment`` (torchvision's ``TrivialAugmentWide``). Without ``crop`` the
image is framed as in evaluation (resize, centre crop); ``rotate`` (up to ``rotation``
degrees) and ``zoom`` (in or out by up to ``zoom``, Keras's ``RandomZoom``) are one random
affine transform; timm's colour jitter is off unless asked for through RandAugment.
"""

from __future__ import annotations

from typing import Callable

import torch
from timm.data import Mixup, create_transform
from timm.data.mixup import mixup_target
from torchvision import transforms

from .augment_names import check_augment

RANDAUGMENT = "rand-m9-mstd0.5-inc1"
CROP_SCALE = (0.7, 1.0)
ROTATION_DEGREES = 10.0
ZOOM = 0.2


def train_transform(data_config: dict, augment: list[str], rotation: float = ROTATION_DEGREES,
                    zoom: float = ZOOM) -> Callable | None:
    """The training transform for ``augment`` (None when it is empty: train on the evaluation transform)."""
    augment = check_augment(augment)
    if not augment:
        return None
    config = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data_config.items()}
    primary, secondary, final = create_transform(
        input_size=config["input_size"], is_training=True, interpolation=config.get("interpolation", "bilinear"),
        mean=config["mean"], std=config["std"], crop_pct=config.get("crop_pct"),
        scale=CROP_SCALE, hflip=0.5 if "flip" in augment else 0.0, vflip=0.0, color_jitter=None,
        auto_augment=RANDAUGMENT if "randaugment" in augment else None, separate=True,
    )
    steps: list[Callable] = []
    if "crop" in augment:
        steps.append(primary)
    else:
        size = tuple(config["input_size"][1:])
        interpolation = transforms.InterpolationMode(config.get("interpolation", "bilinear"))
        scale = 1.0 / (config.get("crop_pct") or 0.875)
        steps += [transforms.Resize(int(size[0] * scale), interpolation=interpolation), transforms.CenterCrop(size)]
        if "flip" in augment:
            steps.append(transforms.RandomHorizontalFlip(0.5))
    if "rotate" in augment or "zoom" in augment:
        steps.append(transforms.RandomAffine(rotation if "rotate" in augment else 0.0,
                                             scale=(1.0 - zoom, 1.0 + zoom) if "zoom" in augment else None,
                                             interpolation=transforms.InterpolationMode.BILINEAR))
    if "trivialaugment" in augment:
        steps.append(transforms.TrivialAugmentWide())
    steps += [secondary, final]
    return transforms.Compose(steps)


class BatchMix:
    """Mixup and/or CutMix of a batch into soft targets (timm's ``Mixup``); odd-sized batches keep their images."""

    def __init__(self, num_classes: int, mixup: float = 0.0, cutmix: float = 0.0, label_smoothing: float = 0.0):
        self.num_classes = num_classes
        self.smoothing = label_smoothing
        self.mixup = Mixup(mixup_alpha=mixup, cutmix_alpha=cutmix, label_smoothing=label_smoothing,
                           num_classes=num_classes)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if len(x) % 2:
            return x, mixup_target(y, self.num_classes, 1.0, self.smoothing)
        return self.mixup(x, y)
