"""Optimizers from timm, with discriminative learning rates, and learning-rate schedules.

Parameter groups follow the model's freeze units (timm's own grouping): the head
trains at its rate, the top trainable unit at the backbone rate, and each unit
below at ``layer_decay`` times the one above (layer-wise rate decay, as BEiT and
timm's ``param_groups_layer_decay`` do). Norm weights and biases get no weight
decay. The optimizer itself is ``timm.optim.create_optimizer_v2``, so any name
timm knows works.
"""

from __future__ import annotations

import math

import torch
from timm.optim import create_optimizer_v2, list_optimizers

from ..errors import UserError
from .model import TransferModel

# transferlab's names where they differ from timm's: plain SGD with momentum (timm's "sgd" is Nesterov).
ALIASES = {"sgd": "momentum"}


def optimizer_name(name: str) -> str:
    timm_name = ALIASES.get(name.lower(), name.lower())
    if timm_name not in list_optimizers():
        raise UserError(f"unknown optimizer {name!r}: use adam, adamw, sgd, rmsprop or a timm optimizer "
                        f"({', '.join(list_optimizers()[:12])}, ...)")
    return timm_name


def param_groups(model: TransferModel, head_lr: float, backbone_lr: float, layer_decay: float,
                 weight_decay: float) -> list[dict]:
    """Trainable parameters grouped by unit, each group with its learning rate and weight decay."""
    no_decay = set(getattr(model.net, "no_weight_decay", lambda: set())())
    named = dict(model.net.named_parameters())
    groups: list[dict] = []

    def add(name: str, names: list[str], lr: float) -> None:
        trainable = [(n, named[n]) for n in names if named[n].requires_grad]
        decay = [p for n, p in trainable if p.ndim > 1 and n not in no_decay]
        plain = [p for n, p in trainable if p.ndim <= 1 or n in no_decay]
        for params, wd in ((decay, weight_decay), (plain, 0.0)):
            if params:
                groups.append({"name": name, "params": params, "lr": lr, "weight_decay": wd})

    add("head", [n for n, _ in model.head_parameters()], head_lr)
    trainable_units = [u for u in model.units if any(named[n].requires_grad for n in u.parameter_names)]
    for depth, unit in enumerate(reversed(trainable_units)):
        add(f"unit {unit.index}", list(unit.parameter_names), backbone_lr * layer_decay**depth)
    return groups


def build_optimizer(model: TransferModel, name: str, head_lr: float, backbone_lr: float, layer_decay: float = 1.0,
                    weight_decay: float = 0.0) -> torch.optim.Optimizer:
    groups = param_groups(model, head_lr, backbone_lr, layer_decay, weight_decay)
    return create_optimizer_v2(groups, opt=optimizer_name(name), lr=head_lr, weight_decay=weight_decay,
                               momentum=0.9)


def build_schedule(optimizer: torch.optim.Optimizer, name: str, total_steps: int, warmup_steps: int = 0):
    """A per-batch schedule (stepped after every optimizer step), with optional linear warm-up."""
    total_steps = max(1, total_steps)
    if name == "one-cycle":  # its own warm-up
        max_lr = [group["lr"] for group in optimizer.param_groups]
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=total_steps)
    if name not in ("constant", "cosine"):
        raise UserError(f"unknown schedule {name!r}: use constant, cosine or one-cycle")

    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
        if name == "cosine":
            decay_steps = max(1, total_steps - warmup_steps)
            progress = min(1.0, max(0, step - warmup_steps) / decay_steps)
            return warm * 0.5 * (1.0 + math.cos(math.pi * progress))
        return warm

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
