"""Freeze policies: which of the backbone's units train, stage by stage.

A *unit* is one of the backbone's parameter groups in timm's own grouping
(``group_matcher``): the stem, each block, the neck (``transferlab layers NAME``
lists them). Policies, for a backbone of n units:
- ``all``: every unit frozen, only the new head trains (feature extraction, trained end to end);
- ``none``: everything trains;
- ``half``: the first n // 2 units frozen;
- ``first:N``: the first N units frozen (Keras' ``fine_tune_at = N``);
- ``top:K``: only the top K units (and the head) train;
- ``two-stage``: the head trains with every unit frozen, then all units are
  unfrozen and training continues with lower, discriminative learning rates
  (fastai's ``fine_tune``); ``two-stage:top:K`` (and ``two-stage:half``,
  ``two-stage:first:N``) unfreeze only part (the TensorFlow tutorial's recipe).

Importable without torch: studies check a policy's syntax when they load.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UserError

POLICIES = ("all", "none", "half", "first:N", "top:K", "two-stage", "two-stage:top:K")


@dataclass(frozen=True)
class Stage:
    frozen_units: int  # the first this-many units are frozen
    name: str  # "train" for single-stage runs, "head" / "fine-tune" for two-stage


def _usage(policy: str) -> UserError:
    return UserError(f"unknown freeze policy {policy!r}: use one of {', '.join(POLICIES)}")


def _count(text: str, policy: str, n_units: int | None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise UserError(f"freeze policy {policy!r}: {text!r} is not a whole number of units") from None
    if value < 0 or (n_units is not None and value > n_units):
        upper = f" and {n_units} (the backbone's units; `transferlab layers NAME` lists them)" if n_units else ""
        raise UserError(f"freeze policy {policy!r}: the count must be between 0{upper or ' and the unit count'}")
    return value


def frozen_units(policy: str, n_units: int | None) -> int:
    """Frozen prefix length of a single-stage policy (``n_units=None``: check the syntax only)."""
    n = n_units if n_units is not None else 0
    if policy == "all":
        return n
    if policy == "none":
        return 0
    if policy == "half":
        return n // 2
    kind, _, arg = policy.partition(":")
    if kind == "first" and arg:
        return _count(arg, policy, n_units)
    if kind == "top" and arg:
        return n - _count(arg, policy, n_units)
    raise _usage(policy)


def plan_stages(policy: str, n_units: int | None) -> list[Stage]:
    """The stages a policy trains in, each with its frozen prefix."""
    n = n_units if n_units is not None else 0
    if policy in ("two-stage", "two-stage:none"):
        return [Stage(n, "head"), Stage(0, "fine-tune")]
    if policy.startswith("two-stage:"):
        second = frozen_units(policy.split(":", 1)[1], n_units)
        return [Stage(n, "head"), Stage(second, "fine-tune")]
    return [Stage(frozen_units(policy, n_units), "train")]


def check_policy(policy: str) -> str:
    """The policy, if its syntax is right (the unit count is checked when the backbone is known)."""
    plan_stages(policy, None)
    return policy
