"""How a layer's output becomes one vector per image, for the probe's features and fine-tuning's head alike."""

from __future__ import annotations

import torch

from ..errors import UserError


def pool_features(x: torch.Tensor, pooling: str, prefix_tokens: int = 0, model: str = "the model") -> torch.Tensor:
    """A feature map (B, C, H, W), or a ViT's tokens (B, N, D), as vectors: pooled, flattened or the class token."""
    if x.ndim == 2:
        return x
    if x.ndim == 3:
        if pooling == "token":
            if not prefix_tokens:
                raise UserError(f"pooling 'token' takes a ViT's class token; {model} has none: use avg, max or flatten")
            return x[:, 0]
        x = x[:, prefix_tokens:]
        return x.mean(1) if pooling == "avg" else x.amax(1) if pooling == "max" else x.flatten(1)
    if x.ndim != 4 or pooling == "token":
        raise UserError(f"pooling {pooling!r} does not apply to {model}'s features of shape {tuple(x.shape)}: "
                        "use pre_logits")
    return x.mean((2, 3)) if pooling == "avg" else x.amax((2, 3)) if pooling == "max" else x.flatten(1)
