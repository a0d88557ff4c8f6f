"""Grad-CAM heat maps of a fine-tuned model: where in the image the evidence for a class lies.

Selvaraju et al.'s Grad-CAM on the model's last feature map, taken through timm's
own split of every model, ``forward_head(forward_features(x))``: the feature map's
channels are weighted by the mean gradient of the class score over their positions,
summed, rectified and scaled to [0, 1], then upsampled to the input. A ViT's last
map is its patch tokens laid out as their grid (prefix tokens left out).
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..data import image_batches
from ..errors import UserError
from ..storage import FolderLock, WriteError
from .bundle import Bundle

OVERLAY_ALPHA = 0.45  # weight of the heat map over the image


def feature_map_grid(net: torch.nn.Module, features: torch.Tensor) -> torch.Tensor:
    """The last feature map as (B, C, h, w): a CNN's as it is, a ViT's patch tokens as their grid."""
    if features.ndim == 4:
        return features
    if features.ndim == 3:
        tokens = features[:, int(getattr(net, "num_prefix_tokens", 0)):]
        side = math.isqrt(tokens.shape[1])
        if side * side == tokens.shape[1]:
            return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], side, side)
    raise UserError(f"Grad-CAM needs a spatial feature map; {type(net).__name__}'s last features have shape "
                    f"{tuple(features.shape)}")


def grad_cam(net: torch.nn.Module, image: torch.Tensor, class_index: int) -> np.ndarray:
    """Heat map (H, W) in [0, 1] for ``class_index`` of a preprocessed image (3, H, W) or (1, 3, H, W)."""
    x = image.unsqueeze(0) if image.ndim == 3 else image
    return grad_cams(net, x, torch.tensor([class_index]))[0].numpy()


def grad_cams(net: torch.nn.Module, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Heat maps (B, H, W) in [0, 1] of a batch of preprocessed images, each for its class in ``classes``: one
    forward and one backward pass (in eval mode the images do not interact, so each map is its own image's)."""
    was_training = net.training
    net.eval()
    try:
        with torch.enable_grad():
            x = x.detach().float().requires_grad_(True)  # gradients flow even through frozen weights
            features = net.forward_features(x)
            features.retain_grad()
            logits = net.forward_head(features)
            score = logits.gather(1, classes.to(logits.device).view(-1, 1)).sum()
            (gradient,) = torch.autograd.grad(score, features)
    finally:
        net.train(was_training)
    fmap = feature_map_grid(net, features.detach())
    grads = feature_map_grid(net, gradient)
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * fmap).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)[:, 0]
    top = cam.flatten(1).max(dim=1).values.view(-1, 1, 1)
    return torch.where(top > 0, cam / top.clamp_min(1e-30), cam).float().cpu()


def overlay(image: torch.Tensor, heat: np.ndarray, mean, std) -> Image.Image:
    """The preprocessed image (de-normalised) with the heat map in matplotlib's jet colours over it."""
    from matplotlib import colormaps

    pixels = image.float().cpu() * torch.tensor(std).view(3, 1, 1) + torch.tensor(mean).view(3, 1, 1)
    rgb = pixels.clamp(0, 1).permute(1, 2, 0).numpy()
    colours = colormaps["jet"](heat)[..., :3]
    blended = (1 - OVERLAY_ALPHA) * rgb + OVERLAY_ALPHA * colours
    return Image.fromarray((blended * 255).round().astype(np.uint8), mode="RGB")


def write_gradcams(bundle: Bundle, files: list[Path], classes: list[int | None], out_dir: Path) -> list[Path | None]:
    """A heat-map PNG in ``out_dir`` for each readable file, for its class in ``classes`` (None: skip it).

    ``out_dir`` must be new or empty: earlier heat maps are never overwritten. It is claimed (``FolderLock``) from
    that check to the last heat map: a second ``predict --gradcam`` into it meanwhile is refused.
    """
    taken = f"{out_dir} already exists and is not an empty folder: choose another Grad-CAM folder"
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(taken)
    lock = FolderLock(out_dir)
    try:
        lock.acquire(f"another predict is writing Grad-CAM heat maps into {out_dir} now: choose another folder")
    except WriteError as exc:
        raise UserError(f"cannot write the Grad-CAM folder {out_dir}: {str(exc).rsplit(': ', 1)[-1]}") from None
    with lock:
        if any(p.name != lock.name for p in out_dir.iterdir()):
            raise UserError(taken)
        return _write_gradcams(bundle, files, classes, out_dir)


def _write_gradcams(bundle: Bundle, files: list[Path], classes: list[int | None], out_dir: Path) -> list[Path | None]:
    """The heat maps through the engine's ``predict``, a batch at a time (each image for its class)."""
    from ..engine.loop import predict
    from ..engine.runtime import CPU

    pre = bundle.meta["preprocessing"]
    net = bundle.net
    device = str(next(net.parameters()).device)
    runtime = CPU if device == "cpu" else replace(CPU, device=device)
    written: list[Path | None] = [None] * len(files)
    wanted = [i for i, c in enumerate(classes) if c is not None]
    batch_classes: dict[str, torch.Tensor] = {}

    def images(batch):  # the batch's classes go with its images into the forward below
        batch_classes["now"] = torch.tensor([int(classes[wanted[j]]) for j in batch.indices])  # type: ignore[arg-type]
        return batch.images

    batches = image_batches([files[i] for i in wanted], bundle.transform(), 16, 0, device=None)
    for batch, heats in predict(net, lambda x: grad_cams(net, x, batch_classes["now"]), batches, runtime,
                                inputs_of=images):
        if heats is None:
            continue
        for j, image, heat in zip(batch.indices, batch.images, heats):
            i = wanted[j]
            label = re.sub(r"[^\w.-]+", "_", bundle.classes[int(classes[i])])  # type: ignore[arg-type]
            path = out_dir / f"{i:04d}-{files[i].stem}-{label}.png"
            overlay(image, heat.numpy(), pre["mean"], pre["std"]).save(path)
            written[i] = path
    return written
