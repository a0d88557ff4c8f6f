"""The record that defines a probe run, importable without torch (studies and the CLI plan with it)."""

from __future__ import annotations

from dataclasses import dataclass

from .backbones.names import DEFAULT_BACKBONE


@dataclass
class ProbeConfig:
    """Everything that defines a probe run."""

    data: str = "digits"
    backbone: str = DEFAULT_BACKBONE
    head: str = "logreg"
    layer: str = "pre_logits"
    pooling: str = "avg"
    weights: str | None = None
    random_init: bool = False
    seed: int = 0
    per_class: int | None = None
    classes: list[str] | None = None
    num_classes: int | None = None
    ratios: tuple[float, float, float] = (0.7, 0.15, 0.15)
    temperature: float | None = None  # features = softmax(ImageNet logits / T)
    C: float | None = None
    dropout: float = 0.2
    batch_size: int = 32
    num_workers: int | None = None
    cache: bool = True
