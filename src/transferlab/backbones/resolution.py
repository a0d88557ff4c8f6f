"""Running a backbone at another input resolution than its weights were trained at.

CNNs take any size: only the preprocessing changes (resize to N / crop_pct, centre
crop N). Models with a fixed input size (timm's ``fixed_input_size``: ViTs and other
patch-embedding models) are built for the size with timm's ``img_size`` argument;
timm resamples their position embeddings when it loads pretrained weights, and
``resample_state_dict`` does the same for a weights file loaded here.
"""

from __future__ import annotations

import importlib
from typing import Any

import torch
from timm.models import get_pretrained_cfg
from torch import nn


def fixed_input_size(timm_name: str) -> bool:
    """Whether the model is built for one input size (it then takes timm's ``img_size``)."""
    cfg = get_pretrained_cfg(timm_name)
    if cfg is None:
        cfg = get_pretrained_cfg(timm_name.split(".", 1)[0])
    return bool(cfg is not None and cfg.fixed_input_size)


def model_arguments(timm_name: str, image_size: int | None) -> dict[str, Any]:
    """``create_model`` keyword arguments for ``image_size`` (none for a CNN or the default size)."""
    if image_size is None or not fixed_input_size(timm_name):
        return {}
    return {"img_size": int(image_size)}


def data_arguments(image_size: int | None) -> dict[str, Any] | None:
    """``resolve_data_config(args=...)`` for ``image_size``: the other preprocessing stays the weights' own."""
    return None if image_size is None else {"input_size": (3, int(image_size), int(image_size))}


def resample_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict made to fit ``model``'s input size by its family's own timm filter (position embeddings
    resampled); unchanged for a family without one."""
    module = importlib.import_module(type(model).__module__)
    filter_fn = getattr(module, "checkpoint_filter_fn", None)
    return filter_fn(state, model) if filter_fn is not None else state
