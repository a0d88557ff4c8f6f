"""Heads trained on frozen features: scikit-learn linear models, k-NN and a small torch MLP."""

from __future__ import annotations

from .spec import PROBE_HEADS, HeadSpec, parse_head

HEADS = PROBE_HEADS


def make_head(spec: str | HeadSpec, *, C: float | None = None, k: int = 5, dropout: float = 0.2, seed: int = 0,
              runtime=None, multi_label: bool = False, **training):
    """A head from its spec: ``logreg``, ``svm``, ``knn``, ``mlp``, ``mlp:512,256``, ``linear`` or ``softmax``.

    Every head is a scikit-learn classifier (``fit``, ``predict``, ``predict_proba`` where it has
    probabilities). ``linear`` is a torch softmax layer on standardised features; ``softmax`` is the
    same layer on features scaled as a whole (for temperature-scaled probabilities, whose shape is
    the point of the experiment). ``training``: the torch heads' ``MLPHead`` parameters (``max_epochs``,
    ``lr``, ``weight_decay`` (None: the head's default), ``patience``, ``monitor``, ``batch_size``,
    ``on_epoch``); the scikit-learn heads have none of them. ``multi_label``: multi-hot targets, for which only
    ``logreg`` is made (one-vs-rest).
    """
    head = spec if isinstance(spec, HeadSpec) else parse_head(spec)
    if multi_label:
        from ..errors import UserError
        from .sklearn_heads import one_vs_rest_logreg_head

        if head.kind != "logreg":
            raise UserError(f"multi-label data takes the logreg head (one-vs-rest logistic regression), not {head}")
        return one_vs_rest_logreg_head(C if C is not None else 0.1, seed)
    if head.kind in ("logreg", "svm", "knn"):
        from .sklearn_heads import knn_head, logreg_head, svm_head

        if head.kind == "logreg":
            return logreg_head(C if C is not None else 0.1, seed)
        if head.kind == "svm":
            return svm_head(C if C is not None else 1.0, seed)
        return knn_head(k)
    from .mlp import MLPHead
    from .spec import HEAD_WEIGHT_DECAY

    if training.get("weight_decay") is None:  # each trained head's own measured default
        training["weight_decay"] = HEAD_WEIGHT_DECAY[head.kind]
    if head.kind == "mlp":
        return MLPHead(hidden=head.hidden, dropout=dropout, seed=seed, runtime=runtime, **training)
    scaling = "standard" if head.kind == "linear" else "global"
    return MLPHead(hidden=(), dropout=0.0, scaling=scaling, seed=seed, runtime=runtime, **training)


__all__ = ["HEADS", "HeadSpec", "make_head", "parse_head"]
