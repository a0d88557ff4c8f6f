"""Training-time augmentation on uint8 tensors (torchvision's ``transforms.v2``), and mixup/cutmix on batches.

Names: ``flip`` (horizontal, p=0.5), ``crop`` (random resized crop of 70-100% of the
image, aspect 3/4-4/3, as timm's training transform), ``rotate`` (up to ``rotation``
degrees) and ``zoom`` (in or out by up to ``zoom``, Keras's ``RandomZoom``) as one
random affine transform, ``randaugment`` (torchvision's ``RandAugment``, 2 operations at
magnitude 9, timm's ``rand-m9`` without its magnitude noise) and ``trivialaugment``
(``TrivialAugmentWide``). Without ``crop`` the image is framed as in evaluation (resize
the short side to size / crop_pct, centre crop). Normalisation is the backbone's own.

The transform takes what ``decode_rgb`` gives (a PIL image works too), so fine-tuning
decodes each training image once, resized to the evaluation resize (``keep_size``),
and augments that copy every epoch (``engine.inputs.DecodedInputs``): no epoch decodes
a JPEG again.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from timm.data import Mixup
from timm.data.mixup import mixup_target
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as F

from ..data.transforms import DECODE_MARGIN, DEFAULT_CROP_PCT
from .augment_names import check_augment

CROP_SCALE = (0.7, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
RANDAUGMENT_OPS, RANDAUGMENT_MAGNITUDE = 2, 9
ROTATION_DEGREES = 10.0
ZOOM = 0.2
_INTERPOLATION = {"nearest": InterpolationMode.NEAREST_EXACT, "bilinear": InterpolationMode.BILINEAR,
                  "bicubic": InterpolationMode.BICUBIC}


class KeepResized:
    """uint8 3 x H x W -> the same picture with its short side at most ``size`` (what fine-tuning keeps in memory).

    Decoded at reduced scale where a JPEG allows (``decode_min_size``), so keeping costs one
    cheap decode per image. Picklable, for DataLoader workers.
    """

    tensor_input = True

    def __init__(self, size: int, interpolation: str = "bilinear"):
        self.size = int(size)
        self.interpolation = _INTERPOLATION.get(interpolation, InterpolationMode.BILINEAR)
        self.decode_min_size = DECODE_MARGIN * self.size

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if isinstance(image, torch.Tensor) and min(image.shape[-2:]) > self.size:
            image = F.resize(image, self.size, interpolation=self.interpolation, antialias=True)
        return image.contiguous()


class TensorTrainTransform:
    """uint8 3 x H x W (or PIL) -> float32 normalised 3 x h x w, randomly augmented on tensors."""

    tensor_input = True  # image_batches decodes files with decode_rgb for this transform

    def __init__(self, data_config: dict, augment: list[str], rotation: float = ROTATION_DEGREES,
                 zoom: float = ZOOM):
        size = tuple(int(v) for v in data_config["input_size"][1:])
        crop_pct = data_config.get("crop_pct") or DEFAULT_CROP_PCT
        self.keep_size = math.floor(max(size) / crop_pct)  # the evaluation resize: what DecodedInputs keeps
        self.interpolation = str(data_config.get("interpolation", "bilinear"))
        interpolation = _INTERPOLATION.get(self.interpolation, InterpolationMode.BILINEAR)
        self.decode_min_size = DECODE_MARGIN * self.keep_size
        steps: list[Callable] = [v2.ToImage()]
        if "crop" in augment:
            steps.append(v2.RandomResizedCrop(size, scale=CROP_SCALE, ratio=CROP_RATIO, interpolation=interpolation,
                                              antialias=True))
        else:
            steps += [v2.Resize(self.keep_size, interpolation=interpolation, antialias=True), v2.CenterCrop(size)]
        if "flip" in augment:
            steps.append(v2.RandomHorizontalFlip(0.5))
        if "rotate" in augment or "zoom" in augment:
            steps.append(v2.RandomAffine(rotation if "rotate" in augment else 0.0,
                                         scale=(1.0 - zoom, 1.0 + zoom) if "zoom" in augment else None,
                                         interpolation=InterpolationMode.BILINEAR))
        if "randaugment" in augment:
            steps.append(v2.RandAugment(num_ops=RANDAUGMENT_OPS, magnitude=RANDAUGMENT_MAGNITUDE))
        if "trivialaugment" in augment:
            steps.append(v2.TrivialAugmentWide())
        steps += [v2.ToDtype(torch.float32, scale=True),
                  v2.Normalize(list(data_config["mean"]), list(data_config["std"]))]
        self.steps = v2.Compose(steps)

    def keeper(self) -> KeepResized:
        """The transform that decodes an image into what this one augments every epoch."""
        return KeepResized(self.keep_size, self.interpolation)

    def __call__(self, image) -> torch.Tensor:
        return self.steps(image).as_subclass(torch.Tensor).contiguous()

    def __repr__(self) -> str:
        return f"TensorTrainTransform({self.steps})"


def train_transform(data_config: dict, augment: list[str], rotation: float = ROTATION_DEGREES,
                    zoom: float = ZOOM) -> TensorTrainTransform | None:
    """The training transform for ``augment`` (None when it is empty: train on the evaluation transform)."""
    augment = check_augment(augment)
    if not augment:
        return None
    return TensorTrainTransform(data_config, augment, rotation, zoom)


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
