"""Fine-tuning recipes: the values ``finetune`` uses for every training option the user leaves unset.

``--recipe fast|default|best`` trades time for accuracy. ``bench/recipes/`` holds the studies that measured
them (so far one data set, Flowers-17 in greyscale at 10 per class, one seed: probe 0.790, fast 0.790, best
0.801, within noise of each other); ``default`` keeps the values from before recipes, as no candidate beat the
probe beyond noise there. An option given explicitly (command line, Python argument, study key) always beats
the recipe's value. Importable without torch.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
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

    def describe(self) -> str:
        """``recipe: NAME (...)`` as results and ``--help`` state it."""
        return f"{self.name} ({self.summary})"


RECIPES: dict[str, Recipe] = {
    "fast": Recipe("fast", "two-stage:top:1", 10, 5, 0.1, 100.0, 0.0, (), "val_loss",
                   "head on cached frozen features for 10 epochs, then the top unit for 5 at lr/10"),
    "default": Recipe("default", "two-stage", 10, 10, 0.01, 100.0, 0.0, (), "val_loss",
                      "head for 10 epochs, then every unit for 10 at lr/100 falling 100x to the stem"),
    "best": Recipe("best", "two-stage:half", 10, 15, 0.1, 100.0, 0.1, (), "val_accuracy",
                   "head for 10 epochs, then the top half of the units (the rest cached) for up to 15 at lr/10 "
                   "falling 100x towards the stem, label smoothing 0.1, stopping on validation accuracy"),
}

RECIPE_HELP = ("fast | default | best: the values of every training option left unset, trading time for accuracy. "
               + "; ".join(f"{r.name}: {r.summary}" for r in RECIPES.values())
               + ". An option given explicitly beats its recipe value.")


def recipe_of(name: str) -> Recipe:
    return RECIPES[name]


def with_recipe(config: Any) -> Any:
    """``config`` with every recipe-controlled field it leaves at None filled in from its recipe (stage 2's
    epochs: ``epochs`` when that is given, as before recipes)."""
    recipe = recipe_of(config.recipe)
    values: dict[str, Any] = {
        "epochs": recipe.epochs,
        "stage2_epochs": config.epochs if config.epochs is not None else recipe.stage2_epochs,
        "stage2_lr": config.lr * recipe.stage2_lr_ratio,
        "label_smoothing": recipe.label_smoothing,
        "augment": list(recipe.augment),
        "early_stopping": recipe.early_stopping,
        "head_init": recipe.head_init,
    }
    names = {f.name for f in fields(config)}
    unset = {k: v for k, v in values.items() if k in names and getattr(config, k) is None}
    return replace(config, **unset)
