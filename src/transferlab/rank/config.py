"""The records that define a ``rank`` and an ``audit`` run, importable without torch (the CLI builds on them)."""

from __future__ import annotations

from dataclasses import dataclass

from ..backbones.names import DEFAULT_BACKBONE
from ..errors import UserError
from ..options import DataOptions, RuntimeOptions, check_ranges, check_ratios, option


@dataclass
class RankConfig(DataOptions, RuntimeOptions):
    """Candidates (backbone x feature layer x pooling) scored from frozen features of the training images."""

    backbones: list[str] = option(help="Backbones to rank (comma-separated friendly or timm names).",
                                  factory=lambda: [DEFAULT_BACKBONE])
    layers: list[str] = option(help="Feature layers (indices or names, comma-separated; default: every feature "
                               "layer of each backbone, `transferlab layers NAME`).", factory=list)
    poolings: list[str] = option(help="How a feature map becomes a vector: avg, max or both (comma-separated).",
                                 factory=lambda: ["avg"], flag="--pooling")
    random_init: bool = option(False, "Randomly initialised backbones (a baseline: no ImageNet head, so no "
                               "LEEP/NCE).")
    C: float = option(0.1, "Regularisation of the logreg probe.", above=0.0, flag="--C")
    k: int = option(5, "Neighbours of the kNN probe.", minimum=1)
    probes: bool = option(True, "Also fit the kNN and logreg probes on a validation split (and report Kendall's "
                          "tau of each score against the logreg accuracy).")
    cache: bool = option(True, "Read and write the feature cache.", speed_only=True, cli=False)

    def __post_init__(self) -> None:
        self.ratios = check_ratios(self.ratios)
        if not self.backbones:
            raise UserError("rank needs at least one backbone (--backbones a,b,c)")
        for pooling in self.poolings:
            if pooling not in ("avg", "max"):
                raise UserError(f"unknown pooling {pooling!r}: rank pools feature maps by avg or max")
        if not self.poolings:
            raise UserError("rank needs a pooling (--pooling avg, max or avg,max)")
        if self.folds is not None:
            raise UserError("rank scores on the training images and checks on a validation split: no --folds")
        check_ranges(self)
