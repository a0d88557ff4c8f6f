"""The records of a fine-tuning run: what defines it and what it measured."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..backbones.names import DEFAULT_BACKBONE


@dataclass
class FinetuneConfig:
    """Everything that defines a fine-tuning run (``transferlab finetune`` options)."""

    data: str = "digits"
    backbone: str = DEFAULT_BACKBONE  # or "small-cnn" for the from-scratch baseline
    freeze: str | None = None  # all | none | half | first:N | top:K | two-stage[:top:K]; default two-stage (none from scratch)
    head: str = "linear"  # linear | mlp:512,256
    dropout: float = 0.2
    pooling: str = "avg"  # avg | flatten
    optimizer: str = "adam"  # adam | adamw | sgd | rmsprop
    lr: float = 1e-3
    backbone_lr: float | None = None  # learning rate of backbone layers that train (default: lr)
    train_bn: bool | None = None  # update BatchNorm statistics of trainable layers (default: only from scratch)
    weight_decay: float = 0.0
    schedule: str = "constant"  # constant | cosine | one-cycle
    batch_size: int = 32
    epochs: int = 10  # maximum epochs (per stage for two-stage)
    stage2_epochs: int | None = None  # two-stage: epochs after unfreezing (default: epochs)
    stage2_lr: float | None = None  # two-stage: learning rate after unfreezing (default: lr / 100)
    early_stopping: str = "val_loss"  # val_loss | val_accuracy | none
    patience: int = 10
    augment: list[str] = field(default_factory=list)  # flip, rotate, crop
    class_weights: bool = False
    seed: int = 0
    per_class: int | None = None
    classes: list[str] | None = None
    num_classes: int | None = None
    ratios: tuple[float, float, float] = (0.7, 0.15, 0.15)
    weights: str | None = None
    random_init: bool = False
    prefix_cache: bool = True  # reuse the frozen prefix's outputs across epochs when possible
    output: str | None = None  # bundle folder; default under runs/
    resume: bool = False
    num_workers: int | None = None


@dataclass
class FinetuneResult:
    """What a fine-tuning run measured; ``history`` has one entry per epoch."""

    backbone: str
    timm_name: str
    freeze: str
    head: str
    data: str
    evaluated_on: str
    classes: list[str]
    train_images: int
    val_images: int
    test_images: int
    accuracy: float
    macro_f1: float
    epochs_run: int
    seconds_per_epoch: float
    training_seconds: float
    trainable_parameters: int
    frozen_parameters: int
    total_parameters: int
    backbone_layers: int | None
    frozen_layers: int
    feature_dim: int
    inference_ms_per_image: float
    best_epoch: int
    stage2_start_epoch: int | None  # first epoch of stage 2 in two-stage runs (1-based)
    prefix_cache_used: bool
    model_path: str
    # per epoch: epoch, stage, lr, train_loss, train_accuracy, val_loss, val_accuracy, seconds
    history: list[dict] = field(default_factory=list)
    confusion_matrix: list[list[int]] = field(default_factory=list)
    predictions: list[dict] = field(default_factory=list)  # per test image: path, true, predicted
    unreadable_count: int = 0
    unreadable_examples: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    config: dict = field(default_factory=dict)
