"""The records that define a ``rank`` and an ``audit`` run, importable without torch (the CLI builds on them)."""

from __future__ import annotations

from dataclasses import dataclass

from ..backbones.names import DEFAULT_BACKBONE
from ..errors import UserError
from ..options import DataOptions, RuntimeOptions, check_ranges, check_ratios, option

SCORES = ("logme", "leep", "nce", "knn_accuracy", "logreg_accuracy")  # what rank measures of each candidate


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
        if self.folds is not None or self.fold is not None:
            raise UserError("rank scores on the training images and checks on a validation split: no --folds")
        check_ranges(self)


@dataclass
class AuditConfig(DataOptions, RuntimeOptions):
    """Label issues, near-duplicates and class overlap of a dataset, from one backbone's cached features."""

    backbone: str = option(DEFAULT_BACKBONE, "Backbone whose frozen features the audit reads.")
    layer: str = option("pre_logits", "pre_logits or a feature layer index/name from `transferlab layers`.")
    pooling: str = option("avg", "How a feature map becomes a vector.", choices=("avg", "max"))
    folds: int | None = option(5, "K of the K-fold logreg probe whose out-of-fold probabilities find label "
                               "issues (over all images, every split).", minimum=2)
    C: float = option(0.1, "Regularisation of the logreg probe.", above=0.0, flag="--C")
    duplicate_cosine: float = option(0.9, "Feature cosine at or above which two images are a candidate "
                                     "duplicate pair.", minimum=-1.0, maximum=1.0)
    hash_distance: int = option(16, "Most differing bits of the 64-bit perceptual hash for a candidate pair to "
                                "be a duplicate.", minimum=0, maximum=64)
    overlap_pairs: int = option(5, "Most confused class pairs to report.", minimum=0)
    html: str | None = option(None, "Write an HTML page of the suspects with thumbnails to FILE.")
    fix: str | None = option(None, "Write a list file (path,label,split) with suspected label issues relabelled "
                             "and exact duplicates dropped to FILE (.csv or .tsv), to edit and pass as --data.")
    cache: bool = option(True, "Read and write the feature cache.", speed_only=True, cli=False)

    def __post_init__(self) -> None:
        self.ratios = check_ratios(self.ratios)
        self.layer = str(self.layer)
        if self.fold is not None:
            raise UserError("audit runs every fold: no --fold")
        if self.fix and not self.fix.lower().endswith((".csv", ".tsv")):
            raise UserError(f"--fix {self.fix}: a list file must end in .csv or .tsv")
        if self.folds is None:
            self.folds = 5
        check_ranges(self)
