"""Optimizers and learning-rate schedules by name, with a lower rate for backbone layers."""

from __future__ import annotations

import torch

from ..errors import UserError
from .model import TransferModel

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("constant", "cosine", "one-cycle")


def build_optimizer(model: TransferModel, name: str, lr: float, backbone_lr: float, weight_decay: float):
    head = [p for p in model.head.parameters() if p.requires_grad]
    backbone = [p for p in model.layers.parameters() if p.requires_grad]
    groups = [{"params": head, "lr": lr}]
    if backbone:
        groups.append({"params": backbone, "lr": backbone_lr})
    if name == "adam":
        return torch.optim.Adam(groups, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(groups, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(groups, momentum=0.9, weight_decay=weight_decay)
    if name == "rmsprop":
        return torch.optim.RMSprop(groups, weight_decay=weight_decay)
    raise UserError(f"unknown optimizer {name!r}: use one of {', '.join(OPTIMIZERS)}")


def build_schedule(optimizer, name: str, total_steps: int):
    """A per-batch schedule (stepped after every optimizer step)."""
    total_steps = max(1, total_steps)
    if name == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    if name == "one-cycle":
        max_lr = [group["lr"] for group in optimizer.param_groups]
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=total_steps)
    raise UserError(f"unknown schedule {name!r}: use one of {', '.join(SCHEDULES)}")
