"""``run_rank``: every candidate (backbone x layer x pooling) scored from cached frozen features.

Each backbone is run once over the training and validation images for all its layers (and its ImageNet
logits, where it has them: LEEP and NCE read the source classifier); LogME, LEEP and NCE score the training
features; the kNN and logreg probes are fitted on them and measured on the validation split, the accuracy
the scores are meant to predict.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from typing import Any

import numpy as np

from ..errors import UserError
from ..progress_bars import StageProgress
from .config import SCORES, RankConfig
from .result import Candidate, RankResult, kendall_tau
from .scores import leep, logme, nce

log = logging.getLogger(__name__)
__all__ = ["SCORES", "Candidate", "RankResult", "kendall_tau", "run_rank"]


def run_rank(config: RankConfig, progress: StageProgress | None = None) -> RankResult:
    from ..backbones import load_backbone
    from ..data import load_dataset
    from ..options import runtime_of
    from ..probing.run import single_threaded_blas
    from .layers import LayerSetExtractor

    splits = load_dataset(config.data, ratios=tuple(config.ratios), seed=config.seed, classes=config.classes,
                          num_classes=config.num_classes, per_class=config.per_class,
                          val_per_class=config.val_per_class, test_per_class=config.test_per_class,
                          validation=config.probes)
    train, val = splits.train_and_validation(seed=config.seed) if config.probes else (splits.train, [])
    paths = [s.path for s in train] + [s.path for s in val]
    runtime = runtime_of(config)
    notes = list(splits.notes)
    candidates: list[Candidate] = []
    extraction_seconds = 0.0
    for name in config.backbones:
        backbone = load_backbone(name, random_init=config.random_init, seed=config.seed)
        head = backbone.pretrained and int(getattr(backbone.model, "num_classes", 0) or 0) == 1000
        if not head:
            notes.append(f"{name}: no ImageNet classifier ({'random-init' if backbone.pretrained is False else 'headless'})"
                         ": LEEP and NCE skipped")
        layers = config.layers or [str(f.index) for f in backbone.feature_layers]
        for pooling in config.poolings:
            extractor = LayerSetExtractor(backbone, layers, pooling=pooling, logits=head,
                                          batch_size=config.batch_size, num_workers=config.num_workers,
                                          cache=config.cache, runtime=runtime)
            hook = (lambda done, total, n=name: progress(f"features ({n}, {pooling})", done, total)) if progress else None
            features = extractor.extract(paths, hook)
            extraction_seconds += features.seconds
            labels_all = np.array([(train + val)[i].label for i in features.kept])
            is_train = np.array([i < len(train) for i in features.kept])
            y_train, y_val = labels_all[is_train], labels_all[~is_train]
            if len(np.unique(y_train)) < 2:
                raise UserError(f"fewer than two classes have readable training images in {splits.root}")
            blocks = extractor.split(features)
            source = {}
            if head:
                started = time.perf_counter()
                probabilities = _softmax(blocks["logits"][is_train])
                source = {"leep": leep(probabilities, y_train)}
                leep_seconds = time.perf_counter() - started
                started = time.perf_counter()
                source["nce"] = nce(probabilities, y_train)
                nce_seconds = time.perf_counter() - started
            for layer in extractor.found:
                x = blocks[layer.name]
                candidate = _score(x[is_train], y_train, x[~is_train], y_val, config, single_threaded_blas)
                candidate = Candidate(backbone=name, layer=layer.name, pooling=pooling, dim=x.shape[1], **candidate)
                if head:
                    candidate.leep, candidate.nce = source["leep"], source["nce"]
                    candidate.seconds.update(leep=leep_seconds, nce=nce_seconds)
                candidates.append(candidate)
    candidates.sort(key=lambda c: c.logme, reverse=True)
    return RankResult(data=str(splits.root), classes=splits.classes, train_images=len(train), val_images=len(val),
                      candidates=candidates, extraction_seconds=extraction_seconds, notes=notes,
                      config=asdict(config))


def _score(x_train, y_train, x_val, y_val, config: RankConfig, single_threaded_blas) -> dict[str, Any]:
    """LogME of the training features, and the probes' validation accuracies, each timed."""
    from ..heads.sklearn_heads import knn_head, logreg_head

    seconds = {}
    with single_threaded_blas():  # BLAS on one thread for LogME's Gram matrix as for the probes (their note)
        started = time.perf_counter()
        score = logme(x_train, y_train)
        seconds["logme"] = time.perf_counter() - started
    result: dict[str, Any] = {"logme": score, "seconds": seconds}
    if len(y_val) == 0:  # --no-probes: no validation split was carved
        return result
    with single_threaded_blas():
        for key, head in (("knn_accuracy", knn_head(config.k)), ("logreg_accuracy", logreg_head(config.C, config.seed))):
            started = time.perf_counter()
            head.fit(x_train, y_train)
            result[key] = float(np.mean(head.predict(x_val) == y_val))
            seconds[key] = time.perf_counter() - started
    return result


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - logits.max(1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(1, keepdims=True)
