"""Linear probing: frozen backbone features, then a head, evaluated on held-out images.

``probe(data, backbone=..., head=...)`` is the whole job in one call; the CLI's
``transferlab probe`` is a thin shell around it.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import ThreadpoolController

from ..backbones import load_backbone
from ..backbones.units import check_layer
from ..data import DatasetSplits, Sample, load_dataset
from ..engine.runtime import Runtime
from ..errors import UserError
from ..evaluation import INFERENCE_BATCH, full_batch, inference_ms_per_image, per_image_ms, score
from ..features import FeatureExtractor, FeatureSet
from ..heads import make_head
from ..engine.callbacks import early_stopping_of
from ..heads.spec import parse_head, takes_validation
from ..options import runtime_of, settings_id
from ..progress_bars import StageProgress, stage_bars
from ..timing import FROZEN_PHASES, TEST_PHASES, TRAINING_PHASES, Phases, phase_sum
from ..tracking import Tracker, open_tracker
from .calibrate import probe_calibration
from .config import ProbeConfig
from .multilabel import fit_multilabel_probe
from .result import ProbeResult


UNREADABLE_EXAMPLES = 5
log = logging.getLogger(__name__)


def probe(data: str | Path = "digits", progress: bool | StageProgress = True, **options) -> ProbeResult:
    """Extract features with a frozen backbone, fit a head, evaluate. Options: see ``ProbeConfig``.

    ``progress``: a progress bar per stage on stderr (a widget in a notebook); False for none, or your own
    ``(stage, done, total)`` function."""
    try:
        config = ProbeConfig(data=str(data), **options)
    except TypeError as exc:
        raise UserError(str(exc).replace("ProbeConfig.__init__()", "probe()")) from None
    with stage_bars(progress) as hook:
        return run_probe(config, hook)


def run_probe(config: ProbeConfig, progress: StageProgress | None = None,
              runtime: Runtime | None = None) -> ProbeResult | None:
    """The probe's result; over several processes they share the extraction, and the main process alone
    fits the head on all the features and returns the result (the others return None). With ``config.log``
    the main process also logs the head's epochs, the parameters and the final metrics."""
    runtime = runtime or runtime_of(config)
    with open_tracker(config, "probe", probe_run_name(config), runtime.is_main) as tracker:
        result = _run_probe(config, progress, runtime, tracker)
        if result is not None:
            tracker.outputs(result, probe_run_name(config))
    return result


def probe_run_name(config: ProbeConfig) -> str:
    """``backbone-head-<settings id>``: the probe's default run name in the logs."""
    digest = settings_id(config)
    return f"{config.backbone.replace('/', '_')}-{config.head.replace(':', '')}-{digest}"


def _run_probe(config: ProbeConfig, progress: StageProgress | None, runtime: Runtime,
               tracker: Tracker) -> ProbeResult | None:
    if not runtime.is_main:
        progress = None
    if config.temperature is None:  # a misspelt layer fails before data and weights load
        check_layer(config.backbone, config.layer, config.image_size)
    splits, parts = probe_parts(config)
    if config.temperature is not None:
        config = replace(config, layer="logits")
    head = probe_head(config, splits, parts["val"], runtime, tracker)

    phases = Phases()
    with phases.measure("load"):
        extractor = feature_extractor(config, runtime)
    backbone = extractor.backbone

    extracted = {name: _extract(extractor, samples, name, progress) for name, samples in parts.items()}
    if not runtime.is_main:
        return None
    xs = {name: temperature_features(fs.features, config.temperature) for name, fs in extracted.items()}
    ys = {name: _labels(parts[name], fs) for name, fs in extracted.items()}
    _check_usable(ys, splits, head)

    for name, fs in extracted.items():
        split = "test" if name == "test" else "train"
        phases.add(f"{split}_cache_read", fs.cache_seconds)
        phases.add(f"{split}_decode", fs.decode_seconds)
        phases.add(f"{split}_frozen_forward", fs.forward_seconds)
    test_kept = [parts["test"][i] for i in extracted["test"].kept]
    with single_threaded_blas():
        if splits.label_sets is not None:
            scores = fit_multilabel_probe(head, xs, ys, splits.label_sets, [s.path for s in test_kept], phases)
        else:
            scores = _fit_single_label(config, head, xs, ys, splits, [s.path for s in test_kept], phases)
        head_ms = per_image_ms(lambda: head.predict(full_batch(xs["test"])), INFERENCE_BATCH)
    unreadable = [str(p) for fs in extracted.values() for p in fs.unreadable]
    extraction = list(extracted.values())
    seconds = sum(fs.seconds for fs in extraction)
    computed = sum(fs.computed for fs in extraction)
    cached = sum(fs.from_cache for fs in extraction)
    history = list(getattr(head, "history_", []))
    return ProbeResult(
        backbone=config.backbone,
        timm_name=backbone.timm_name,
        weights=backbone.weights_source,
        head=config.head,
        layer=extractor.layer,
        pooling=config.pooling if extractor.layer not in ("pre_logits", "logits") else "model",
        data=str(splits.root),
        evaluated_on=splits.evaluated_on,
        classes=splits.outputs,
        train_images=len(ys["train"]),
        val_images=len(ys["val"]),
        test_images=len(ys["test"]),
        feature_dim=int(xs["train"].shape[1]),
        backbone_layers=len(backbone.units),
        backbone_parameters=backbone.backbone_parameters(),
        backbone_load_seconds=phases.seconds["load"],
        extraction_seconds=seconds,
        images_per_second=(computed + cached) / seconds if seconds > 0 else 0.0,
        features_computed=computed,
        features_from_cache=cached,
        head_fit_seconds=phases.seconds["head_fit"],
        inference_ms_per_image=head_ms + inference_ms_per_image(
            extractor.model, extractor.forward, [s.path for s in test_kept], extractor.transform, runtime,
            key=("probe", backbone.timm_name, backbone.input_size, extractor.layer, extractor.pooling)),
        unreadable_count=len(unreadable),
        unreadable_examples=unreadable[:UNREADABLE_EXAMPLES],
        temperature=config.temperature,
        history=history,
        val_accuracy_max=max((h["val_accuracy"] for h in history), default=None),
        val_accuracy_final=history[-1]["val_accuracy"] if history else None,
        training_seconds=phase_sum(phases.seconds, TRAINING_PHASES),
        train_features_seconds=phase_sum(phases.seconds, FROZEN_PHASES),
        train_features_from_cache=extracted["train"].from_cache + extracted["val"].from_cache,
        test_features_from_cache=extracted["test"].from_cache,
        test_seconds=phase_sum(phases.seconds, TEST_PHASES),
        phases=dict(phases.seconds),
        notes=splits.notes,
        config=asdict(config),
        runtime=runtime.describe(),
        **scores,
    )


def _fit_single_label(config: ProbeConfig, head, xs: dict[str, np.ndarray], ys: dict[str, np.ndarray],
                      splits: DatasetSplits, test_paths: list[Path], phases: Phases) -> dict:
    """Fit ``head`` on the training features' classes; the result's score, loss and calibration fields."""
    with phases.measure("head_fit"):
        given_val = len(ys["val"]) and takes_validation(config.head)  # --calibrate keeps one for the temperature
        head.fit(xs["train"], ys["train"], **({"X_val": xs["val"], "y_val": ys["val"]} if given_val else {}))
    with phases.measure("test_predict"):
        predicted = head.predict(xs["test"])
    test_loss = _log_loss(head, xs["test"], ys["test"])
    train_accuracy = float(np.mean(head.predict(xs["train"]) == ys["train"]))
    history = getattr(head, "history_", [])
    return {
        "test_loss": test_loss,
        "train_accuracy_final": history[-1]["train_accuracy"] if history else train_accuracy,
        **score(ys["test"], predicted, splits.classes, test_paths),
        **probe_calibration(head, xs, ys, len(splits.classes), config.calibrate),
    }


def probe_head(config: ProbeConfig, splits: DatasetSplits, validation: list[Sample], runtime: Runtime,
               tracker: Tracker | None):
    """The scikit-learn estimator ``config.head`` names, with every head option (each head takes its own);
    early stopping is off by default on a validation set too small to stop on (a note says so)."""
    stops_on = validation and (splits.label_sets is None or takes_validation(config.head))  # not the threshold's
    monitor, patience, note = early_stopping_of("val_loss", config.head_patience,
                                                splits.small_validation() if stops_on else None)
    if note:
        log.warning(note)
        splits.notes.append(note)
    return make_head(config.head, C=config.C, dropout=config.dropout, seed=config.seed, runtime=runtime.alone(),
                     multi_label=splits.label_sets is not None,
                     max_epochs=config.head_epochs, lr=config.head_lr, weight_decay=config.head_weight_decay,
                     patience=patience, monitor=monitor, batch_size=config.head_batch_size,
                     on_epoch=tracker.epoch if tracker else None)


def single_threaded_blas():
    """BLAS on one thread for the heads: after the backbone ran, torch's OpenMP threads keep
    spinning and starve OpenBLAS's own threads (a 1088x1280, 17-class logistic regression took
    4.9 s with 2 BLAS threads, 0.31 s with one)."""
    return _blas_libraries().limit(limits=1, user_api="blas")


@functools.cache
def _blas_libraries() -> ThreadpoolController:
    """threadpoolctl's view of the loaded BLAS libraries, taken once: taking it scans every loaded library
    (3-5 ms, more than LogME of a 40-dimension candidate). numpy's and scipy's OpenBLAS, the ones the heads and
    LogME call (scikit-learn through them), are loaded before it is taken."""
    import scipy.linalg  # noqa: F401  (loads scipy's OpenBLAS)

    return ThreadpoolController()


def temperature_features(features: np.ndarray, temperature: float | None) -> np.ndarray:
    """``softmax(logits / T)`` when a temperature is set; the features unchanged otherwise."""
    if temperature is None:
        return features
    scaled = torch.from_numpy(features).double() / temperature
    return scaled.softmax(dim=1).float().numpy()


def _log_loss(head, features: np.ndarray, labels: np.ndarray) -> float | None:
    """Mean cross-entropy of the head's probabilities on the test images (None: the head gives none, e.g. svm)."""
    if not hasattr(head, "predict_proba") or len(labels) == 0:
        return None
    from sklearn.metrics import log_loss

    try:
        probabilities = head.predict_proba(features)
    except AttributeError:  # a pipeline whose last step has no predict_proba
        return None
    try:
        return float(log_loss(labels, probabilities, labels=list(head.classes_)))
    except ValueError:  # a test class the head never saw in training
        return None


def feature_extractor(config: ProbeConfig, runtime: Runtime) -> FeatureExtractor:
    """The frozen backbone and feature layer ``config`` probes (a temperature probe reads the logits)."""
    backbone = load_backbone(config.backbone, weights=config.weights, random_init=config.random_init, seed=config.seed,
                             image_size=config.image_size)
    return FeatureExtractor(backbone, layer="logits" if config.temperature is not None else config.layer,
                            pooling=config.pooling, batch_size=config.batch_size, num_workers=config.num_workers,
                            cache=config.cache, runtime=runtime)


def extraction_key(config: ProbeConfig) -> tuple:
    """What decides a probe's features (not its head): runs with equal keys share every cached feature."""
    return (config.backbone, config.weights, config.random_init, config.seed if config.random_init else None,
            config.image_size, "logits" if config.temperature is not None else config.layer, config.pooling,
            config.precision, config.device, config.cache)


def probe_parts(config: ProbeConfig) -> tuple[DatasetSplits, dict[str, list[Sample]]]:
    """The dataset a probe of ``config`` reads and its train, validation (for a head that takes one) and test
    images; the training images are the same for every head."""
    needs_validation = takes_validation(config.head) or config.calibrate

    def load(validation: bool) -> DatasetSplits:
        return load_dataset(config.data, ratios=tuple(config.ratios), seed=config.seed, classes=config.classes,
                            num_classes=config.num_classes, per_class=config.per_class,
                            val_per_class=config.val_per_class, test_per_class=config.test_per_class,
                            validation=validation, folds=config.folds, fold=config.fold)

    splits = load(needs_validation)
    if splits.label_sets is not None:
        check_multilabel_probe(config)
        if not needs_validation:  # the threshold is tuned on a validation set
            needs_validation = True
            splits = load(needs_validation)
    train, val = (splits.train_and_validation(seed=config.seed) if needs_validation else (splits.train, []))
    return splits, {"train": train, "val": val, "test": splits.test}


def check_multilabel_probe(config: ProbeConfig) -> None:
    """Multi-label data takes the one-vs-rest logreg head, without a temperature or --calibrate (softmax-based)."""
    if parse_head(config.head).kind != "logreg":
        raise UserError(f"multi-label data takes the logreg head (one-vs-rest logistic regression), not {config.head}")
    if config.calibrate or config.temperature is not None:
        raise UserError("--calibrate and --temperature scale softmax probabilities: multi-label data has one sigmoid "
                        "per label")


def _extract(extractor: FeatureExtractor, samples: list[Sample], name: str,
             progress: StageProgress | None) -> FeatureSet:
    hook = (lambda done, total: progress(f"features ({name})", done, total)) if progress else None
    return extractor.extract([s.path for s in samples], hook)


def _labels(samples: list[Sample], features: FeatureSet) -> np.ndarray:
    return np.array([samples[i].label for i in features.kept], dtype=np.int64)


def _check_usable(ys: dict[str, np.ndarray], splits: DatasetSplits, head=None) -> None:
    if len(np.unique(ys["train"])) < 2:
        raise UserError(f"fewer than two classes have readable training images in {splits.root}")
    neighbours = getattr(head[-1], "n_neighbors", None) if hasattr(head, "steps") else None
    if neighbours is not None and len(ys["train"]) < neighbours:
        raise UserError(
            f"head knn looks at {neighbours} neighbours but there are only {len(ys['train'])} "
            "readable training images: keep more (--per-class) or use another head"
        )
    if len(ys["test"]) == 0:
        raise UserError(f"no readable test images in {splits.root} ({splits.evaluated_on})")


def predict_features(head, features: np.ndarray, temperature: float | None) -> np.ndarray:
    """The head's predictions for raw backbone features (temperature applied, one BLAS thread)."""
    with single_threaded_blas():
        return head.predict(temperature_features(features, temperature))
