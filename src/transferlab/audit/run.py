"""``run_audit``: out-of-fold probabilities from a K-fold logreg probe on cached features, then label issues,
near-duplicate pairs and the most confused class pairs of every image of the dataset (all splits)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from ..progress_bars import StageProgress
from ..rank.config import AuditConfig
from .confident import LabelIssue, find_label_issues
from .duplicates import DuplicatePair, find_duplicates


@dataclass
class AuditResult:
    data: str
    classes: list[str]
    paths: list[str]
    labels: list[int]
    splits: list[str]
    out_of_fold_accuracy: float
    label_issues: list[LabelIssue]
    duplicates: list[DuplicatePair]
    overlap: list[dict[str, Any]]  # the most confused class pairs
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def issue_rows(self) -> list[dict[str, Any]]:
        return [{"path": self.paths[i.index], "split": self.splits[i.index], "given": self.classes[i.given],
                 "suggested": self.classes[i.suggested], "self_confidence": i.self_confidence}
                for i in self.label_issues]

    def duplicate_rows(self) -> list[dict[str, Any]]:
        return [{"first": self.paths[d.first], "second": self.paths[d.second], "splits": list(d.splits(self.splits)),
                 "cross_split": self.splits[d.first] != self.splits[d.second], "cosine": d.cosine,
                 "hash_distance": d.hash_distance, "exact": d.exact} for d in self.duplicates]

    def to_dict(self) -> dict[str, Any]:
        return {"data": self.data, "classes": self.classes, "images": len(self.paths),
                "out_of_fold_accuracy": self.out_of_fold_accuracy, "label_issues": self.issue_rows(),
                "duplicates": self.duplicate_rows(), "class_overlap": self.overlap, "seconds": self.seconds,
                "notes": self.notes}


def run_audit(config: AuditConfig, progress: StageProgress | None = None) -> AuditResult:
    from ..backbones import load_backbone
    from ..data import load_dataset
    from ..data.memory import content_digest
    from ..features import FeatureExtractor
    from ..options import runtime_of

    seconds: dict[str, float] = {}
    splits = load_dataset(config.data, ratios=tuple(config.ratios), seed=config.seed, classes=config.classes,
                          num_classes=config.num_classes, per_class=config.per_class,
                          val_per_class=config.val_per_class, test_per_class=config.test_per_class)
    samples = ([(s, "train") for s in splits.train] + [(s, "val") for s in splits.val or []]
               + [(s, "test") for s in splits.test])
    started = time.perf_counter()
    extractor = FeatureExtractor(load_backbone(config.backbone, seed=config.seed), layer=config.layer,
                                 pooling=config.pooling, batch_size=config.batch_size,
                                 num_workers=config.num_workers, cache=config.cache, runtime=runtime_of(config))
    hook = (lambda done, total: progress("features", done, total)) if progress else None
    extracted = extractor.extract([s.path for s, _ in samples], hook)
    seconds["features"] = time.perf_counter() - started
    kept = [samples[i] for i in extracted.kept]
    features = extracted.features
    labels = np.array([s.label for s, _ in kept])
    paths = [Path(s.path) for s, _ in kept]
    split_of = [split for _, split in kept]

    started = time.perf_counter()
    probabilities = out_of_fold_probabilities(features, labels, len(splits.classes), config.folds, config.C,
                                              config.seed)
    seconds["out_of_fold_probe"] = time.perf_counter() - started
    started = time.perf_counter()
    issues = find_label_issues(probabilities, labels)
    seconds["label_issues"] = time.perf_counter() - started
    started = time.perf_counter()
    digests = []
    for path in paths:
        try:
            digests.append(content_digest(path))
        except OSError:
            digests.append(None)
    duplicates = find_duplicates(features, paths, digests, config.duplicate_cosine, config.hash_distance)
    seconds["duplicates"] = time.perf_counter() - started
    predicted = probabilities.argmax(1)
    notes = list(splits.notes)
    if extracted.unreadable:
        notes.append(f"skipped {len(extracted.unreadable)} unreadable image(s)")
    return AuditResult(data=str(splits.root), classes=splits.classes, paths=[str(p) for p in paths],
                       labels=labels.tolist(), splits=split_of,
                       out_of_fold_accuracy=float(np.mean(predicted == labels)), label_issues=issues,
                       duplicates=duplicates, overlap=class_overlap(labels, predicted, splits.classes,
                                                                    config.overlap_pairs),
                       seconds=seconds, notes=notes)


def out_of_fold_probabilities(features: np.ndarray, labels: np.ndarray, classes: int, folds: int, C: float,
                              seed: int) -> np.ndarray:
    """Each image's class probabilities from the logreg probe fitted on the other folds (``data.folds``' K
    stratified folds, the ones ``--folds`` cross-validation uses)."""
    from ..data.folds import fold_indices
    from ..heads.sklearn_heads import logreg_head
    from ..probing.run import single_threaded_blas

    if len(np.unique(labels)) < 2:
        raise UserError("audit needs images of at least two classes")
    probabilities = np.zeros((len(labels), classes))
    with single_threaded_blas():
        for tested in fold_indices(labels.tolist(), folds, seed):
            mask = np.zeros(len(labels), bool)
            mask[tested] = True
            head = logreg_head(C, seed).fit(features[~mask], labels[~mask])
            probabilities[np.ix_(mask, head.classes_)] = head.predict_proba(features[mask])
    return probabilities


def class_overlap(labels: np.ndarray, predicted: np.ndarray, classes: list[str], limit: int) -> list[dict]:
    """Class pairs most often confused either way by the out-of-fold probe, with the share of their images."""
    k = len(classes)
    confusion = np.zeros((k, k), np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    counts = np.bincount(labels, minlength=k)
    pairs = []
    for a in range(k):
        for b in range(a + 1, k):
            confused = int(confusion[a, b] + confusion[b, a])
            if confused:
                pairs.append({"classes": [classes[a], classes[b]], "confused": confused,
                              "share": confused / int(counts[a] + counts[b])})
    return sorted(pairs, key=lambda p: (-p["confused"], p["classes"]))[:limit]
