"""The record that defines a probe run, importable without torch (studies and the CLI plan with it)."""

from __future__ import annotations

from dataclasses import dataclass

from ..heads.spec import PROBE_HEADS, parse_head
from ..options import (BackboneOptions, DataOptions, LogOptions, RuntimeOptions, check_folds, check_logging,
                       check_ranges, check_ratios, check_types, option)


@dataclass
class ProbeConfig(DataOptions, BackboneOptions, RuntimeOptions, LogOptions):
    """Everything that defines a probe run: frozen features from ``layer``, then ``head``."""

    head: str = option("logreg", "logreg, svm, knn, mlp, mlp:512,256, linear or softmax.")
    layer: str = option("pre_logits", "pre_logits, logits, or a feature layer index/name from `transferlab layers`.")
    pooling: str = option("avg", "How a feature map becomes a vector (token maps of ViTs: avg over patches, or "
                          "the class token with 'token').", choices=("avg", "max", "flatten", "token"))
    temperature: float | None = option(None, "Features = softmax(ImageNet logits / T) (use with --head softmax).",
                                       above=0.0)
    C: float | None = option(None, "Regularisation of logreg (default 0.1) or svm (default 1).", above=0.0,
                             flag="--C")
    dropout: float = option(0.2, "Dropout of the mlp head.", minimum=0.0, maximum=0.95)
    # training of the torch heads (mlp, linear, softmax and the temperature experiment's head)
    head_epochs: int = option(200, "Trained heads (mlp, linear, softmax): maximum epochs.", minimum=1)
    head_lr: float = option(1e-3, "Trained heads: Adam's learning rate.", above=0.0)
    head_weight_decay: float | None = option(None, "Trained heads: L2 penalty on the weights (Adam's weight_decay; "
                                             "default 0.1, softmax 1e-4).", minimum=0.0)
    head_patience: int | None = option(None, "Trained heads: epochs without improvement of the validation loss "
                                       "before stopping (default 10; without it, off when the validation set is "
                                       "too small to stop on).", minimum=1)
    head_batch_size: int = option(64, "Trained heads: feature vectors per batch.", minimum=1)
    calibrate: bool = option(False, "Fit temperature scaling of the head's probabilities on a validation set "
                             "(split off for it; one T, Guo et al. 2017); the result states the test ECE before and "
                             "after. Heads with probabilities only (not svm).")
    cache: bool = option(True, "Read and write the feature cache.", speed_only=True, cli=False)

    def __post_init__(self) -> None:
        check_types(self, also={"layer": (int,)})  # a feature layer by index or name
        self.layer = str(self.layer)
        self.ratios = check_ratios(self.ratios)
        parse_head(self.head, PROBE_HEADS)
        check_ranges(self)
        check_folds(self)
        check_logging(self)
