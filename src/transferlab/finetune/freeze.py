"""Freeze policies: which of the backbone's layers train, stage by stage.

A *layer* is an entry of the backbone's layer view (``transferlab layers NAME``).
Policies, for a backbone of n layers:
- ``all``: every layer frozen, only the new head trains (feature extraction, trained end to end);
- ``none``: everything trains;
- ``half``: the first n // 2 layers frozen;
- ``first:N``: the first N layers frozen (Keras' ``fine_tune_at = N``);
- ``top:K``: only the top K layers (and the head) train;
- ``two-stage``: the head trains with every layer frozen, then all layers are
  unfrozen and training continues at a lower learning rate (fastai's ``fine_tune``);
  ``two-stage:top:K`` unfreezes only the top K layers (the TensorFlow tutorial's recipe).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UserError

POLICIES = ("all", "none", "half", "first:N", "top:K", "two-stage", "two-stage:top:K")


@dataclass(frozen=True)
class Stage:
    frozen_layers: int  # the first this-many layers are frozen
    name: str  # "train" for single-stage runs, "head" / "fine-tune" for two-stage


def _count(text: str, policy: str, n_layers: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= n_layers:
        raise UserError(f"freeze policy {policy!r}: the count must be between 0 and {n_layers} (the backbone's layers)")
    return value


def frozen_layers(policy: str, n_layers: int) -> int:
    """Frozen prefix length for a single-stage policy."""
    if policy == "all":
        return n_layers
    if policy == "none":
        return 0
    if policy == "half":
        return n_layers // 2
    kind, _, arg = policy.partition(":")
    if kind == "first" and arg:
        return _count(arg, policy, n_layers)
    if kind == "top" and arg:
        return n_layers - _count(arg, policy, n_layers)
    raise UserError(f"unknown freeze policy {policy!r}: use one of {', '.join(POLICIES)}")


def plan_stages(policy: str, n_layers: int) -> list[Stage]:
    """The stages a policy trains in, each with its frozen prefix."""
    if policy == "two-stage" or policy == "two-stage:all":
        return [Stage(n_layers, "head"), Stage(0, "fine-tune")]
    if policy.startswith("two-stage:"):
        return [Stage(n_layers, "head"), Stage(frozen_layers(policy.split(":", 1)[1], n_layers), "fine-tune")]
    return [Stage(frozen_layers(policy, n_layers), "train")]
