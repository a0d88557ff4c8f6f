"""Fine-tuning recipes: the values ``finetune`` uses for every training option the user leaves unset.

``--recipe fast|default|best`` trades time for accuracy. Every recipe starts stage 2 from the probe (the new
head set to the probe's logistic regression on the frozen features, LP-FT) and keeps stage 2's weights only
where they beat the probe's on the validation images, so a fine-tune adapts to how far the probe is from
perfect: not at all when it already classifies every validation image. ``default`` keeps the bottom quarter of
the units frozen in stage 2 (as Detectron2 freezes the stem and first stage, ``FREEZE_AT=2``): their
discriminative rates would be under 1/30 of the top unit's, and the backward pass then stops above the
high-resolution blocks, the costliest part of it (Lite0 at 30 images per class: 18 s an epoch against 25 s). ``bench/recipes/`` holds the studies
that chose the values (README there: what was measured, on which data, and what was not). An option given
explicitly (command line, Python argument, study key) always beats the recipe's value. Importable without
torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

RECIPE_NAMES = ("fast", "default", "best")


@dataclass(frozen=True)
class Recipe:
    """One recipe's values; ``stage2_lr_ratio`` is stage 2's head and top-unit rate as a share of ``lr``, and
    ``stage2_spread`` how many times lower the stem's rate is than the top unit's (per-unit layer decay)."""

    name: str
    freeze: str
    epochs: int
    stage2_epochs: int
    stage2_lr_ratio: float
    stage2_spread: float
    label_smoothing: float
    augment: tuple[str, ...]
    early_stopping: str  # the metric: label smoothing makes the validation loss stop falling before accuracy does
    summary: str
    head_init: str = "sgd"  # stage 1 of two-stage: "probe" fits the probe's logistic regression as the head
    keep_margin: int = 0  # validation images stage 2 must get right beyond the stage before's end to be kept
    few: "Few | None" = None  # what changes when the training set has under FEW_PER_CLASS images per class

    def describe(self, per_class: float | None = None) -> str:
        """``recipe: NAME (...)`` as results and ``--help`` state it; with ``per_class`` (training images per
        class), what the recipe changed for a training set that small."""
        text = f"{self.name} ({self.summary})"
        if self.few_for(per_class) is not None:
            text += f"; {per_class:.3g} training images per class (under {FEW_PER_CLASS}): {self.few.summary}"
        return text

    def few_for(self, per_class: float | None) -> "Few | None":
        """The small-set values where ``per_class`` (training images per class) is under FEW_PER_CLASS."""
        return self.few if per_class is not None and per_class < FEW_PER_CLASS else None


FEW_PER_CLASS = 20  # measured at 10 (few) and 30 (not few) images per class; where between them is not measured


@dataclass(frozen=True)
class Few:
    """A recipe's values for a small training set. Stage 2 on a hundred or so images (digits at 10 per class)
    first drops validation accuracy under flips and crops alone and never climbs back within 15 epochs;
    RandAugment and label smoothing over up to 30 epochs climb past the probe (round 6 in bench/recipes/). An
    epoch of so few images is cheap: 30 of them at 10 per class are fewer steps than 15 at 30 per class."""

    stage2_epochs: int
    augment: tuple[str, ...]
    label_smoothing: float
    summary: str


FEW_DEFAULT = Few(30, ("flip", "crop", "randaugment"), 0.1,
                  "stage 2 for up to 30 epochs with RandAugment and label smoothing 0.1")
FEW_FAST = Few(0, (), 0.0, "no stage 2, the probe's head: fast's few unaugmented epochs on so small a set moved "
               "test accuracy by noise alone (digits and 64 px Flowers-17, rounds 6 and 7 in bench/recipes/)")


RECIPES: dict[str, Recipe] = {
    "fast": Recipe("fast", "two-stage:top:1", 10, 5, 0.01, 100.0, 0.0, (), "val_accuracy",
                   "the probe's logistic regression as the head, then the top unit for up to 5 epochs at lr/100 "
                   "on cached frozen features, kept only if it classifies at least 2 more validation images right",
                   head_init="probe", keep_margin=1, few=FEW_FAST),
    "default": Recipe("default", "two-stage:first:25%", 10, 15, 0.1, 100.0, 0.0, ("flip", "crop"), "val_accuracy",
                      "the probe's logistic regression as the head, then every unit but the bottom quarter for up to "
                      "15 epochs at lr/10 falling 100x to the stem with flips and random resized crops, kept only "
                      "if validation accuracy rises (skipped when the probe already classifies every validation "
                      "image)", head_init="probe", few=FEW_DEFAULT),
    "best": Recipe("best", "two-stage", 10, 30, 0.1, 10.0, 0.1, ("flip", "crop", "randaugment"), "val_accuracy",
                   "as default, for up to 30 epochs falling 10x to the stem, with RandAugment and label smoothing "
                   "0.1", head_init="probe"),
}

RECIPE_HELP = ("fast | default | best: the values of every training option left unset, trading time for accuracy. "
               + "; ".join(f"{r.name}: {r.summary}" + (f" (under {FEW_PER_CLASS} training images per class: "
                                                       f"{r.few.summary})" if r.few else "")
                           for r in RECIPES.values())
               + ". An option given explicitly beats its recipe value.")


def recipe_of(name: str) -> Recipe:
    return RECIPES[name]


def recipe_values(name: str | None) -> dict[str, Any] | None:
    """Every value of recipe ``name`` (its small-set values too): part of a run's identity, so a recipe changed
    by a new measurement makes its runs new experiments rather than reusing results of the old values."""
    return asdict(RECIPES[name]) if name in RECIPES else None


def with_recipe(config: Any, per_class: float | None = None) -> Any:
    """``config`` with every recipe-controlled field it leaves at None filled in from its recipe (stage 2's
    epochs: ``epochs`` when that is given, as before recipes); ``per_class``: the training images per class,
    once the data is split, for the recipe's values for a small training set."""
    recipe = recipe_of(config.recipe)
    few = recipe.few_for(per_class)
    values: dict[str, Any] = {
        "epochs": recipe.epochs,
        "stage2_epochs": (config.epochs if config.epochs is not None
                          else few.stage2_epochs if few else recipe.stage2_epochs),
        "stage2_lr": config.lr * recipe.stage2_lr_ratio,
        "label_smoothing": few.label_smoothing if few else recipe.label_smoothing,
        "augment": list(few.augment if few else recipe.augment),
        "early_stopping": recipe.early_stopping,
        "head_init": recipe.head_init,
        "keep_margin": recipe.keep_margin,
    }
    names = {f.name for f in fields(config)}
    unset = {k: v for k, v in values.items() if k in names and getattr(config, k) is None}
    return replace(config, **unset)
