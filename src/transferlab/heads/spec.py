"""Head specs, parsed in one place: ``logreg``, ``svm``, ``knn``, ``linear``, ``softmax``, ``mlp``, ``mlp:512,256``.

Importable without torch or scikit-learn, so the CLI and study files check a
spec before anything heavy loads. Which heads a run kind accepts is a registry
here too: a probe takes every head, fine-tuning the trainable ``linear`` and
``mlp`` heads only; the trained heads are given a validation set.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UserError

PROBE_HEADS = ("logreg", "svm", "knn", "mlp", "linear", "softmax")
FINETUNE_HEADS = ("linear", "mlp")
VALIDATED_HEADS = ("mlp", "linear", "softmax")  # their fit stops early on the validation set it is given
# The trained heads' L2 penalty (Adam's weight_decay), measured: README "Trained probe heads". The temperature
# head on softmax(logits / T) keeps 1e-4: 0.1 cost it 8 and 3 of 128 test images at T = 1 and 4.
HEAD_WEIGHT_DECAY = {"linear": 0.1, "mlp": 0.1, "softmax": 1e-4}
DEFAULT_MLP = (512, 256)
MAX_HIDDEN = 65536  # units of one hidden layer: more is a typo, and would ask for gigabytes
MAX_LAYERS = 16


@dataclass(frozen=True)
class HeadSpec:
    kind: str  # one of PROBE_HEADS
    hidden: tuple[int, ...] = ()  # hidden layer sizes of an mlp head

    def __str__(self) -> str:
        return f"mlp:{','.join(map(str, self.hidden))}" if self.kind == "mlp" else self.kind


def takes_validation(spec: str | HeadSpec) -> bool:
    """Whether the head's ``fit`` takes a validation set (``X_val``, ``y_val``): a probe then loads one."""
    return (spec if isinstance(spec, HeadSpec) else parse_head(spec)).kind in VALIDATED_HEADS


def parse_head(spec: str, allowed: tuple[str, ...] = PROBE_HEADS) -> HeadSpec:
    """The head a spec names, or a UserError listing the heads ``allowed`` here."""
    kind, sep, arg = str(spec).strip().partition(":")
    usage = f"use one of {', '.join(allowed)} (mlp takes hidden sizes, e.g. mlp:512,256)"
    if kind not in allowed:
        raise UserError(f"unknown head {spec!r}: {usage}")
    if kind != "mlp":
        if sep:
            raise UserError(f"head {kind} takes no sizes, got {spec!r}: {usage}")
        return HeadSpec(kind)
    if not sep:
        return HeadSpec("mlp", DEFAULT_MLP)
    try:
        hidden = tuple(int(part) for part in arg.split(","))
    except ValueError:
        hidden = ()
    if not hidden or any(size < 1 for size in hidden):
        raise UserError(f"mlp hidden sizes must be positive integers separated by commas (mlp:512,256), got {spec!r}")
    if len(hidden) > MAX_LAYERS or any(size > MAX_HIDDEN for size in hidden):
        raise UserError(f"mlp head {spec!r} is too large: at most {MAX_LAYERS} hidden layers of at most "
                        f"{MAX_HIDDEN} units")
    return HeadSpec("mlp", hidden)
