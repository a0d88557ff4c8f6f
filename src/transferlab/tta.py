"""Test-time augmentation: each image seen as N views, the class probabilities averaged.

The views are fixed, so a TTA result repeats exactly: 1 the plain (centre) view, 2 its
horizontal flip, then zoomed crops (``ZOOM`` of each side, resized back to the input size)
at the centre and the four corners, then those crops flipped, as fastai's ``tta`` averages
flipped and cropped views and timm's test-time pooling looks at more of the image. The
views are made on the preprocessed batch, so any model input size works.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable



from .errors import UserError

if TYPE_CHECKING:  # torch loads when a view is made: the configs import the names and limits without it
    import torch

ZOOM = 0.875  # each crop keeps 87.5% of the height and width (timm's default crop_pct)
CROPS = ("centre", "top-left", "top-right", "bottom-left", "bottom-right")
VIEW_NAMES = ("plain", "flip") + tuple(f"crop {c}" for c in CROPS) + tuple(f"flipped crop {c}" for c in CROPS)
MAX_VIEWS = len(VIEW_NAMES)
TTA_HELP = (f"Test-time augmentation: average the class probabilities of N views (1: off; 2 adds the horizontal "
            f"flip, then {ZOOM:.1%} crops at the centre and corners, then those flipped; at most {MAX_VIEWS}).")


def check_views(n: int) -> int:
    """``n`` as a view count, or the one error line that says what is accepted."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_VIEWS:
        raise UserError(f"tta must be a whole number of views from 1 to {MAX_VIEWS}, got {n!r}")
    return n


def _crop(x: torch.Tensor, where: str) -> torch.Tensor:
    import torch

    h, w = x.shape[-2:]
    ch, cw = max(1, round(h * ZOOM)), max(1, round(w * ZOOM))
    top = {"centre": (h - ch) // 2, "top-left": 0, "top-right": 0}.get(where, h - ch)
    left = {"centre": (w - cw) // 2, "top-left": 0, "bottom-left": 0}.get(where, w - cw)
    part = x[..., top : top + ch, left : left + cw]
    return torch.nn.functional.interpolate(part, size=(h, w), mode="bilinear", align_corners=False)


def view(x: torch.Tensor, index: int) -> torch.Tensor:
    """View ``index`` (0-based, in ``VIEW_NAMES``' order) of a batch of preprocessed images (B x C x H x W)."""
    if index == 0:
        return x
    if index == 1:
        return x.flip(-1)
    crop = _crop(x, CROPS[(index - 2) % len(CROPS)])
    return crop if index < 2 + len(CROPS) else crop.flip(-1)


def scored_forward(forward: Callable[[torch.Tensor], torch.Tensor], temperature: float = 1.0,
                   views: int = 1) -> Callable[[torch.Tensor], torch.Tensor]:
    """``forward`` whose outputs are calibrated and view-averaged: ``log(mean over views of softmax(logits / T))``.

    Its softmax is the averaged probabilities and its argmax the averaged prediction, so every
    caller of the engine's ``predict`` (softmax, argmax, cross-entropy) takes it as logits. With
    T = 1 and one view it is ``forward`` itself: plain prediction is untouched."""
    check_views(views)
    if temperature == 1.0 and views == 1:
        return forward

    def scored(x: torch.Tensor) -> torch.Tensor:
        probabilities = sum((forward(view(x, i)).float() / temperature).softmax(dim=1) for i in range(views))
        return (probabilities / views).log()

    return scored
