"""Heads trained on frozen features: scikit-learn linear models, k-NN and a small torch MLP."""

from __future__ import annotations

from ..errors import UserError
from .mlp import MLPHead, mlp_layers
from .sklearn_heads import knn_head, logreg_head, svm_head

HEADS = ("logreg", "svm", "knn", "mlp", "linear", "softmax")


def parse_hidden(text: str) -> tuple[int, ...]:
    """``"512,256"`` -> ``(512, 256)``; empty -> ``()``."""
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UserError(f"hidden sizes must be integers separated by commas, got {text!r}") from None


def make_head(spec: str, *, C: float | None = None, k: int = 5, dropout: float = 0.2, seed: int = 0):
    """A head from its spec: ``logreg``, ``svm``, ``knn``, ``mlp``, ``mlp:512,256``, ``linear`` or ``softmax``.

    ``linear`` is a torch softmax layer on standardised features; ``softmax`` is the
    same layer on the raw features (for temperature-scaled probabilities, whose scale
    is the point of the experiment).
    """
    name, _, arg = spec.partition(":")
    if name == "logreg":
        return logreg_head(C if C is not None else 0.1, seed)
    if name == "svm":
        return svm_head(C if C is not None else 1.0, seed)
    if name == "knn":
        return knn_head(k)
    if name == "mlp":
        hidden = parse_hidden(arg) if arg else (512, 256)
        return MLPHead(hidden=hidden, dropout=dropout, seed=seed)
    if name in ("linear", "softmax"):
        return MLPHead(hidden=(), dropout=0.0, standardize=name == "linear", seed=seed)
    raise UserError(f"unknown head {spec!r}: use one of {', '.join(HEADS)} (mlp takes sizes, e.g. mlp:512,256)")


__all__ = ["HEADS", "MLPHead", "make_head", "mlp_layers", "parse_hidden"]
