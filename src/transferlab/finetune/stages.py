"""The stages of a fine-tuning run, planned once from its config and recipe (Lightning's ``BackboneFinetuning``).

Each ``TrainStage`` carries everything that differs between stages: the frozen prefix, the epochs, the head's,
top unit's and per-unit rates, the BatchNorm mode, the optimizer and the seed of its shuffling and dropout. The
run only applies them (``apply``) and hands the stage to its ``Learner``; nothing downstream asks which stage
it is in.
"""

from __future__ import annotations

from dataclasses import dataclass

from .freeze import plan_stages
from .recipes import recipe_of


@dataclass(frozen=True)
class TrainStage:
    name: str  # "train" for single-stage runs, "head" / "fine-tune" for two-stage (history's ``stage``)
    frozen_units: int  # the first this-many units are frozen
    epochs: int
    head_lr: float
    backbone_lr: float  # of the top trainable unit
    layer_decay: float  # each unit below: this times the one above
    train_bn: bool  # whether trainable units update their BatchNorm statistics
    optimizer: str
    seed: int  # of the stage's shuffling and dropout
    head_init: str = "sgd"  # "probe": the head fitted as the probe's logistic regression instead (a linear head)
    keeps_earlier_end: bool = False  # early stopping starts from the stage before's end: kept unless beaten

    def apply(self, model) -> None:
        """Freeze the stage's prefix and set its BatchNorm mode on ``model`` (a ``TransferModel``)."""
        model.train_bn = self.train_bn
        model.freeze(self.frozen_units)


def plan(config, units, scratch: bool) -> list[TrainStage]:
    """The stages of ``config`` (resolved: recipe values filled in) on a backbone's ``units`` (a module point such
    as ``from:blocks.3`` needs the units themselves; a count does for the rest).

    Two-stage: the head alone at ``lr`` for ``epochs``, then the unfrozen units for ``stage2_epochs`` with the
    head and top unit at ``stage2_lr``, each unit below lower by the recipe's spread (100x to the stem:
    discriminative rates), BatchNorm statistics kept (re-estimated from a few small batches they would undo
    what the head learned: the TensorFlow tutorial's advice) and ``stage2_optimizer`` when given. A single stage
    trains at ``lr`` with BatchNorm statistics updating. With ``head_init: probe`` two-stage's first stage is the
    probe's logistic regression (LP-FT); every later stage keeps the one before's end unless it beats it. A later
    stage of no epochs (``stage2_epochs: 0``) is left out: the run ends with stage 1's head.
    """
    c = config
    count = units if isinstance(units, int) else len(units)
    frozen = plan_stages(c.freeze, units, c.backbone)
    stages = []
    for index, stage in enumerate(frozen):
        second = len(frozen) > 1 and index == len(frozen) - 1  # the unfreezing stage of two-stage
        if second:
            head = c.stage2_lr
            spread = (1.0 / recipe_of(c.recipe).stage2_spread) ** (1.0 / max(1, count - 1))
            decay = c.layer_decay if c.layer_decay is not None else spread
            epochs = c.stage2_epochs if c.stage2_epochs is not None else c.epochs
            optimizer = c.stage2_optimizer or c.optimizer
        else:
            head, decay, epochs, optimizer = c.lr, c.layer_decay if c.layer_decay is not None else 1.0, c.epochs, \
                c.optimizer
        backbone = c.backbone_lr if c.backbone_lr is not None else head
        train_bn = c.train_bn if c.train_bn is not None else (scratch or not second)
        head_init = c.head_init if len(frozen) > 1 and index == 0 and c.head_init else "sgd"
        if index > 0 and epochs == 0:
            continue
        stages.append(TrainStage(stage.name, stage.frozen_units, epochs, head, backbone, decay, train_bn, optimizer,
                                 c.seed * 7919 + index * 101, head_init, index > 0))
    return stages
