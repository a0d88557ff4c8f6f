"""Freeze policies: which of the backbone's units train, stage by stage.

A *unit* is one of the backbone's parameter groups in timm's own grouping
(``group_matcher``): the stem, each block, the neck (``transferlab layers NAME``
lists them with their modules, parameter tensors and cumulative shares). Policies:

- ``all``: every unit frozen, only the new head trains (feature extraction, trained end to end);
- ``none``: everything trains;
- ``half``: the first n // 2 units frozen;
- ``first:POINT``: the units before POINT frozen (Keras' ``fine_tune_at``);
- ``top:POINT``: only the units from POINT counted from the top (and the head) train;
- ``from:MODULE``: train from the unit holding MODULE upwards (``from:blocks.5``, ``from:layer4``);
- ``two-stage``: the head trains with every unit frozen, then all units are
  unfrozen and training continues with lower, discriminative learning rates
  (fastai's ``fine_tune``); ``two-stage:POLICY`` unfreezes only part in stage 2
  (``two-stage:top:25%``, ``two-stage:from:blocks.5``: the TensorFlow tutorial's recipe).

A POINT is counted in units or in parameter tensors, as a number or a share:

- ``7`` / ``50%``: units (``first:50%`` freezes floor(n / 2) units);
- ``params:146`` / ``params:40%``: parameter tensors, the nearest thing to a Keras
  "layer" count: "unfreeze the top 146 of 346 layers" is ``top:params:42%`` (146 / 346).
  Units are indivisible, so a tensor point rounds to a unit boundary, never freezing a
  tensor past it (``first:params:K`` freezes the units lying wholly in the first K tensors;
  ``top:params:K`` trains at least the top K).

The syntax is checked here, when a value enters (``check_policy``); the point against a
backbone's units once its structure is known (``plan_stages`` with its units).
Importable without torch: studies check a policy's syntax when they load.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, Sequence

from ..errors import UserError

POLICIES = ("all", "none", "half", "first:N|P%|params:N|params:P%", "top:...", "from:MODULE", "two-stage",
            "two-stage:POLICY")


class UnitLike(Protocol):
    name: str
    parameter_names: tuple[str, ...]


@dataclass(frozen=True)
class Stage:
    frozen_units: int  # the first this-many units are frozen
    name: str  # "train" for single-stage runs, "head" / "fine-tune" for two-stage


@dataclass(frozen=True)
class FreezePoint:
    """One parsed single-stage policy (``first:``/``top:``/``from:``/``all``/``none``/``half``)."""

    kind: str  # all, none, half, first, top, from
    measure: str = "units"  # units or params (parameter tensors)
    count: int | None = None
    share: float | None = None  # 0..1
    module: str | None = None


def _usage(policy: str) -> UserError:
    return UserError(f"unknown freeze policy {policy!r}: use one of {', '.join(POLICIES)}")


def parse_point(policy: str) -> FreezePoint:
    """The single-stage policy ``policy`` parsed; a UserError naming the mistake."""
    if policy in ("all", "none", "half"):
        return FreezePoint(policy)
    kind, _, arg = policy.partition(":")
    if kind == "from":
        if not arg.strip() or arg != arg.strip():
            raise UserError(f"freeze policy {policy!r}: from: needs a module name, e.g. from:blocks.5 or from:layer4")
        return FreezePoint("from", module=arg)
    if kind not in ("first", "top") or not arg:
        raise _usage(policy)
    measure = "units"
    if arg.startswith("params:"):
        measure, arg = "params", arg[len("params:"):]
    what = "units" if measure == "units" else "parameter tensors"
    if arg.endswith("%"):
        try:
            percent = float(arg[:-1])
        except ValueError:
            percent = math.nan
        if not 0 <= percent <= 100:
            raise UserError(f"freeze policy {policy!r}: a share must be between 0% and 100%, e.g. {kind}:50%")
        return FreezePoint(kind, measure, share=percent / 100)
    try:
        value = int(arg)
    except ValueError:
        raise UserError(f"freeze policy {policy!r}: {arg!r} is not a whole number of {what} "
                        f"(or a share such as {kind}:50%)") from None
    if value < 0:
        raise UserError(f"freeze policy {policy!r}: the count must be at least 0")
    return FreezePoint(kind, measure, count=value)


def split_policy(policy: str) -> tuple[bool, str | None]:
    """(two-stage?, the single-stage policy of the (last) stage; None: all units train in stage 2)."""
    if policy in ("two-stage", "two-stage:none"):
        return True, None
    if policy.startswith("two-stage:"):
        return True, policy.split(":", 1)[1]
    return False, policy


def _module_example(units: Sequence[UnitLike]) -> str:
    """A real module name of this backbone to suggest in a message (three quarters up)."""
    unit = units[(3 * len(units)) // 4]
    return ".".join(unit.name.split("+")[0].split(".")[:2])


def _out_of_range(policy: str, point: FreezePoint, units: Sequence[UnitLike] | int, backbone: str,
                  limit: int) -> UserError:
    what = "freeze units" if point.measure == "units" else "parameter tensors"
    module = "" if isinstance(units, int) else f" or a module such as from:{_module_example(units)}"
    return UserError(f"freeze policy {policy!r}: {backbone} has {limit} {what}; use a share such as "
                     f"{point.kind}:50%{module} (`transferlab layers {backbone}` lists them)")


def resolve_point(point_text: str, units: Sequence[UnitLike] | int, backbone: str = "the backbone",
                  policy: str | None = None) -> int:
    """Frozen prefix length (in units) of a single-stage policy on a backbone with ``units``.

    ``units`` may be a plain unit count for policies that count units only; ``policy``: the whole policy
    (e.g. ``two-stage:first:100``) to name in messages.
    """
    point = parse_point(point_text)
    policy = policy or point_text
    n = units if isinstance(units, int) else len(units)
    if point.kind == "all":
        return n
    if point.kind == "none":
        return 0
    if point.kind == "half":
        return n // 2
    if isinstance(units, int) and (point.kind == "from" or point.measure == "params"):
        raise UserError(f"freeze policy {policy!r} needs the backbone's units, not only their count")
    if point.kind == "from":
        assert not isinstance(units, int)
        module = point.module or ""
        for index, unit in enumerate(units):
            if any(name == module or name.startswith(module + ".") for name in unit.parameter_names):
                return index
        raise UserError(f"freeze policy {policy!r}: {backbone} has no module {module!r} in its units; "
                        f"use one such as from:{_module_example(units)} (`transferlab layers {backbone}` lists them)")
    # cumulative[i]: units (or tensors) in units 0..i-1
    if point.measure == "units":
        cumulative = list(range(n + 1))
    else:
        assert not isinstance(units, int)
        cumulative = [0]
        for unit in units:
            cumulative.append(cumulative[-1] + len(unit.parameter_names))
    total = cumulative[-1]
    if point.share is not None:
        frozen_share = point.share if point.kind == "first" else 1 - point.share
        target = math.floor(frozen_share * total + 1e-9)
    else:
        assert point.count is not None
        if point.count > total:
            raise _out_of_range(policy, point, units, backbone, total)
        target = point.count if point.kind == "first" else total - point.count
    return max(i for i, c in enumerate(cumulative) if c <= target)


def frozen_units(policy: str, n_units: int | Sequence[UnitLike] | None) -> int:
    """Frozen prefix length of a single-stage policy (``n_units=None``: check the syntax only)."""
    if n_units is None:
        parse_point(policy)
        return 0
    return resolve_point(policy, n_units)


def plan_stages(policy: str, units: int | Sequence[UnitLike] | None, backbone: str = "the backbone") -> list[Stage]:
    """The stages a policy trains in, each with its frozen prefix (``units=None``: check the syntax only)."""
    n = 0 if units is None else units if isinstance(units, int) else len(units)
    two_stage, last = split_policy(policy)
    if last is not None and last.startswith("two-stage"):
        raise _usage(policy)
    if units is None:
        if last is not None:
            parse_point(last)
        second = 0
    else:
        second = resolve_point(last, units, backbone, policy) if last is not None else 0
    if two_stage:
        return [Stage(n, "head"), Stage(second, "fine-tune")]
    return [Stage(second, "train")]


def check_policy(policy: str) -> str:
    """The policy, if its syntax is right (the point is checked against the backbone when it is known)."""
    plan_stages(policy, None)
    return policy


def check_on_backbone(policy: str, backbone: str, pooling: str = "pre_logits") -> list[Stage]:
    """The stages of ``policy`` on backbone ``backbone`` with its head on ``pooling``, checked against its units
    (imports torch and timm; builds the model's structure only, without weights)."""
    from ..backbones.units import units_of

    return plan_stages(policy, units_of(backbone, pooling), backbone)
