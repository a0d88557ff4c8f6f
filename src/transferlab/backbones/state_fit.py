"""Whether a state dict fits a model, said in one line: which tensors are missing, unexpected or of another shape.

torch's own ``load_state_dict`` error lists every key over many lines after a header that says
nothing; cut to its first line it loses the reason. ``load_exactly`` loads or raises one
``UserError`` whose message ends with the compact reason.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from ..errors import UserError

SHOWN = 3  # names shown of each kind; the count says how many more


def mismatch(model: nn.Module, state: Mapping[str, torch.Tensor]) -> str | None:
    """The reason ``state`` does not load into ``model`` strictly, compactly; None when it fits."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    reshaped = [f"{k} {_shape(state[k])} where the model has {_shape(v)}" for k, v in expected.items()
                if k in state and _shape(state[k]) != _shape(v)]
    parts = [f"{len(names)} {what}: {_few(names)}" for what, names in
             (("missing tensor(s)", missing), ("unexpected tensor(s)", unexpected),
              ("tensor(s) of another shape", reshaped)) if names]
    return "; ".join(parts) or None


def load_exactly(model: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """Load ``state`` strictly into ``model``, or one UserError: ``<what> do not fit: <reason>``."""
    reason = mismatch(model, state)
    if reason is None:
        try:
            model.load_state_dict(state, strict=True)
            return
        except (RuntimeError, TypeError, ValueError) as exc:  # e.g. a dtype that cannot be copied
            reason = " ".join(line.strip() for line in str(exc).splitlines()[1:3]) or str(exc)
    raise UserError(f"{what} do not fit: {reason}")


def _shape(value: object) -> tuple[int, ...] | str:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__


def _few(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN])
    return shown + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")
