"""The record that defines an ``auto`` run, importable without torch or optuna (the CLI builds on it)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UserError
from ..options import DataOptions, RuntimeOptions, check_ranges, check_ratios, option
from .budget import parse_budget

DEFAULT_CANDIDATES = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]


@dataclass
class AutoConfig(DataOptions, RuntimeOptions):
    """A budgeted search: LogME over every candidate, a logreg probe of the best few, successive halving of
    fine-tuning runs over the best probed ones and a few training settings."""

    budget: str = option("20m", "Wall-clock budget of this worker (90s, 20m, 1.5h, 1h30m): no step starts that its "
                         "estimated cost (from the steps done) would take past it; the first backbone is always "
                         "scored and probed.")
    backbones: list[str] = option(help="Candidate backbones (comma-separated friendly or timm names).",
                                  factory=lambda: list(DEFAULT_CANDIDATES))
    random_init: bool = option(False, "Randomly initialised backbones (a baseline; no LEEP/NCE).")
    probe_top: int = option(3, "Candidates, best by LogME, that get a logreg probe on the validation split.",
                            minimum=1)
    finetune_top: int = option(2, "Probed candidates, best by probe accuracy, the fine-tuning search chooses "
                               "among.", minimum=1)
    freezes: list[str] = option(help="Freeze policies the search chooses among (comma-separated, see "
                                "`finetune --freeze`).", factory=lambda: ["all", "top:1"])
    lr_min: float = option(1e-4, "Lowest learning rate the search draws (log-uniform up to --lr-max).", above=0.0)
    lr_max: float = option(3e-3, "Highest learning rate the search draws.", above=0.0)
    max_epochs: int = option(6, "Epochs of a trial that is never pruned (successive halving's largest resource).",
                             minimum=1)
    min_epochs: int = option(1, "Epochs before a trial's first pruning decision (the smallest resource).",
                             minimum=1)
    reduction_factor: int = option(3, "Successive halving keeps 1 in this many trials at each rung.", minimum=2)
    pruner: str = option("halving", "Optuna pruner: halving (successive halving) or hyperband.",
                         choices=("halving", "hyperband"))
    trial_patience: int = option(6, "Stop once this many trials in a row (all workers together) have ended without "
                                 "beating the best validation accuracy, even with budget left; 0 never stops early.",
                                 minimum=0)
    max_trials: int | None = option(None, "Stop after this many fine-tuning trials of the study (all workers "
                                    "together), even with budget left.", minimum=1)
    study: str | None = option(None, "Optuna study name (default: auto- and a digest of the data and search "
                               "settings, so a second worker with the same arguments joins the same search).")
    store: str | None = option(None, "Run store that also holds the Optuna study: a SQLite file or "
                               "postgresql:// URL (default: $TRANSFERLAB_STORE, else ./transferlab-runs.sqlite).",
                               speed_only=True)
    output: str | None = option(None, "Folder of the trail, the report and the winner bundle (default: "
                                "runs/<study>).", speed_only=True, flag="--output")
    cache: bool = option(True, "Read and write the feature cache.", speed_only=True, cli=False)

    def __post_init__(self) -> None:
        self.ratios = check_ratios(self.ratios)
        self.budget = str(self.budget)
        parse_budget(self.budget)
        if not self.backbones:
            raise UserError("auto needs at least one candidate backbone (--backbones a,b,c)")
        if not self.freezes:
            raise UserError("auto needs at least one freeze policy (--freezes all,top:1)")
        from ..finetune.freeze import check_policy

        for policy in self.freezes:
            check_policy(policy)
        if self.lr_min > self.lr_max:
            raise UserError(f"lr_min ({self.lr_min:g}) must be at most lr_max ({self.lr_max:g})")
        if self.min_epochs > self.max_epochs:
            raise UserError(f"min_epochs ({self.min_epochs}) must be at most max_epochs ({self.max_epochs})")
        if self.folds is not None or self.fold is not None:
            raise UserError("auto selects on a validation split: no --folds")
        check_ranges(self)

    @property
    def budget_seconds(self) -> float:
        return parse_budget(self.budget)
