"""One fine-tuning run, end to end: data, model, stages on the engine, evaluation, bundle."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from sklearn.utils.class_weight import compute_class_weight
from timm.loss import SoftTargetCrossEntropy

from .. import __version__
from ..backbones import FROM_SCRATCH, Backbone, load_backbone
from ..data import Sample, image_batches, load_dataset
from ..engine.callbacks import EMA, BatchProgress, Callback, Checkpoint, EarlyStopping, EpochHook
from ..engine.callbacks import early_stopping_of
from ..engine.callbacks import CHECKPOINT_NAME, load_checkpoint, remove_checkpoint
from ..engine.inputs import CachedInputs, DecodedInputs, ImageInputs, kept_image_bytes, memory_budget
from ..engine.learner import Learner
from ..engine.loop import collect
from ..engine.runtime import Runtime
from ..engine.scoring import loss_sum as scored_loss_sum
from ..errors import UserError
from ..evaluation import inference_ms_per_image, score
from ..options import runtime_of, settings_id
from ..progress_bars import StageProgress, stage_bars
from ..storage import FolderLock, folder_problem
from ..timing import TEST_PHASES, TRAINING_PHASES, Phases
from ..tracking import Tracker, open_tracker
from .augment import BatchMix, train_transform
from .bundle import META_NAME, save_bundle
from .calibrate import after_training, sample_logits
from .config import FinetuneConfig
from .freeze import check_on_backbone
from .head_init import final_linear, fit_probe_head, head_inputs, probe_stage
from .multilabel import multilabel_scoring, multilabel_test_scores
from .model import TransferModel
from .optim import build_optimizer, build_schedule
from .prefix_cache import compute_prefix_outputs
from .recipes import recipe_of, with_recipe
from .result import FinetuneResult
from .sampling import balanced_sampler
from .stages import TrainStage, plan

EpochCallback = Callable[[dict], None]
log = logging.getLogger(__name__)


def from_scratch(config: FinetuneConfig) -> bool:
    return config.random_init or config.backbone in FROM_SCRATCH


def default_policy(config: FinetuneConfig) -> str:
    return config.freeze or ("none" if from_scratch(config) else recipe_of(config.recipe).freeze)


def resolved(config: FinetuneConfig, per_class: float | None = None) -> FinetuneConfig:
    """``config`` with its freeze policy (from scratch: none) and every training option it leaves unset taken
    from its recipe (``per_class``: training images per class, once the data is split)."""
    return replace(with_recipe(config, recipe_size(config, per_class)), freeze=default_policy(config))


def recipe_size(config: FinetuneConfig, per_class: float | None) -> float | None:
    """``per_class`` where the run follows its recipe's own stages, else None: a recipe's values for a small
    training set adapt those stages, not a freeze policy given explicitly or a from-scratch run."""
    return per_class if config.freeze is None and not from_scratch(config) else None


def recipe_text(config: FinetuneConfig, per_class: float | None = None) -> str:
    """The recipe as results state it, with the options given explicitly over it."""
    given = [name for name in ("freeze", "epochs", "stage2_epochs", "stage2_lr", "layer_decay", "train_bn",
                               "label_smoothing", "augment", "early_stopping", "head_init", "keep_margin")
             if getattr(config, name) is not None]
    text = recipe_of(config.recipe).describe(recipe_size(config, per_class))
    return f"{text}; given: {', '.join(given)}" if given else text


def config_id(config: FinetuneConfig) -> str:
    """Identity of the settings that determine the result (not how fast it runs or where it is saved): the
    config's and its recipe's values."""
    return settings_id(config)


def default_output(config: FinetuneConfig) -> Path:
    name = config.backbone.replace("/", "_")
    return Path("runs") / f"{name}-{default_policy(config).replace(':', '')}-{config_id(config)}"


def finetune(data: str | Path = "digits", progress: bool | StageProgress = True, on_epoch: EpochCallback | None = None,
             **options) -> FinetuneResult:
    """Fine-tune a backbone with a new head on an image folder. Options: see ``FinetuneConfig``.

    ``progress``: a progress bar per stage and epoch on stderr (a widget in a notebook); False for none, or
    your own ``(stage, done, total)`` function."""
    try:
        config = FinetuneConfig(data=str(data), **options)
    except TypeError as exc:
        raise UserError(str(exc).replace("FinetuneConfig.__init__()", "finetune()")) from None
    with stage_bars(progress) as hook:
        return run_finetune(config, hook, on_epoch)


def run_finetune(config: FinetuneConfig, progress: StageProgress | None = None, on_epoch: EpochCallback | None = None,
                 runtime: Runtime | None = None) -> FinetuneResult:
    return FinetuneRun(config, progress, on_epoch, runtime).run()


def restored_epoch(history: list[dict], monitor: str, margin: float = 0.0) -> int:
    """The epoch whose weights the model ends with: the last stage's best by the monitored metric, or the
    stage before's last epoch when no epoch of the last stage beat it (``EarlyStopping.start_from``), on
    validation accuracy by more than ``margin`` (``keep_margin`` as a fraction of the validation images)."""
    if not history:
        return 0
    if monitor == "none":
        return history[-1]["epoch"]
    first = next(i for i, h in enumerate(history) if h["stage"] == history[-1]["stage"])
    earlier = history[first - 1] if first > 0 and monitor in history[first - 1] else None
    candidates = [h for h in history[max(first - 1, 0):] if monitor in h]  # earliest first: ties keep the earlier
    if not candidates:
        return history[-1]["epoch"]
    if monitor == "val_loss":
        return min(candidates, key=lambda h: h["val_loss"])["epoch"]
    return max(candidates, key=lambda h: h["val_accuracy"] + (margin if h is earlier else 0.0))["epoch"]


def keep_margin_fraction(images: int | None, validation_images: int) -> float:
    """``keep_margin`` images as the accuracy a later stage must beat the stage before's by: half an image more,
    so that equal counts never pass on rounding (0 stays 0: any gain)."""
    return (images + 0.5) / max(1, validation_images) if images else 0.0


class FinetuneRun:
    """The state of one run; ``run()`` trains every stage through the engine, then evaluates and saves."""

    def __init__(self, config: FinetuneConfig, progress: StageProgress | None = None,
                 on_epoch: EpochCallback | None = None, runtime: Runtime | None = None):
        self.given = config
        self.config = resolved(config)  # completed for the training set's size once the data is split (prepare)
        self.recipe = recipe_text(config)
        self.runtime = runtime or runtime_of(config)
        self.progress = progress if self.runtime.is_main else None  # one progress bar, one table: rank 0's
        self.on_epoch = on_epoch if self.runtime.is_main else None
        self.output = Path(config.output) if config.output else default_output(config)
        self.id = config_id(config)
        self.tracker = Tracker([])
        self.lock = FolderLock(self.output)  # held by the main process from check_output to the saved model

    # -- set-up ---------------------------------------------------------------
    def prepare(self) -> None:
        c = self.config
        self.splits = load_dataset(c.data, ratios=tuple(c.ratios), seed=c.seed, classes=c.classes,
                                   num_classes=c.num_classes, per_class=c.per_class, val_per_class=c.val_per_class,
                                   test_per_class=c.test_per_class, validation=True, folds=c.folds, fold=c.fold)
        self.train_samples, self.val_samples = self.splits.train_and_validation(seed=c.seed)
        per_class = len(self.train_samples) / max(1, len(self.splits.outputs))
        self.config = c = resolved(self.given, per_class)
        self.recipe = recipe_text(self.given, per_class)
        self.tracker.start(asdict(c))
        self.early_stopping, self.patience, note = early_stopping_of(c.early_stopping, c.patience,
                                                                    self.splits.small_validation())
        self.keep_margin = keep_margin_fraction(c.keep_margin, len(self.val_samples))
        if note:
            log.warning(note)
            self.splits.notes.append(note)
        self.scoring = multilabel_scoring(self.splits.label_sets, c)  # None: one class per image
        scratch = from_scratch(c)
        self.backbone: Backbone = load_backbone(c.backbone, weights=c.weights, random_init=scratch, seed=c.seed,
                                                image_size=c.image_size)
        with torch.random.fork_rng():
            torch.manual_seed(c.seed)
            self.model = TransferModel.from_backbone(self.backbone, len(self.splits.outputs), c.head, c.dropout,
                                                     c.pooling)
        self.runtime.prepare(self.model)
        self.stages: list[TrainStage] = plan(c, self.model.units, scratch)
        self.eval_transform = self.backbone.eval_transform()
        self.train_transform = (train_transform(self.backbone.data_config, c.augment, c.rotation, c.zoom)
                                or self.eval_transform)
        self.loss_fn, self.mix = self.make_loss()
        self.unreadable: set[Path] = set()
        self.prefix_seconds = 0.0
        self.head_features: list[tuple[np.ndarray, np.ndarray]] | None = None  # stage 1 probe head: its inputs
        self.carried: dict[tuple[str, int], CachedInputs] = {}  # (split, steps): the next stage's cached prefix
        self.phases = Phases()
        self.kept: DecodedInputs | None = None  # training images decoded once, when augmentation needs them
        self.started = time.perf_counter()  # of training (a resumed run's: earlier, by the time it already took)
        self.stage_index = 0

    def make_loss(self):
        c = self.config
        if self.scoring is not None:  # binary cross-entropy per label (label smoothing is for one class per image)
            return self.scoring, None
        classes = len(self.splits.classes)
        if c.mixup or c.cutmix:
            if c.class_weights:
                raise UserError("class weights and mixup/cutmix cannot be combined: choose one")
            return SoftTargetCrossEntropy(), BatchMix(classes, c.mixup, c.cutmix, c.label_smoothing)
        weights = None
        if c.class_weights:
            labels = np.array([s.label for s in self.train_samples])
            present = np.unique(labels)
            weights = torch.zeros(classes)
            weights[present] = torch.tensor(compute_class_weight("balanced", classes=present, y=labels),
                                            dtype=torch.float32)
            weights = weights.to(self.runtime.device)
        return torch.nn.CrossEntropyLoss(weight=weights, label_smoothing=c.label_smoothing), None

    def stage_inputs(self, samples: list[Sample], name: str, training: bool):
        """Cached prefix outputs when the frozen prefix is fixed; with augmentation the training images decoded once
        and augmented every epoch (when they fit in memory); else images decoded every epoch."""
        c = self.config
        labels = torch.tensor([s.label for s in samples])
        paths = [s.path for s in samples]
        if c.prefix_cache and not (training and c.augment):
            steps = self.model.cacheable_steps()
            carried = self.carried.pop((name, steps), None)
            if carried is not None:  # computed for this stage while the probe's head was fitted
                return carried
            started = time.perf_counter()
            hook = (lambda d, t: self.progress(f"frozen prefix ({name})", d, t)) if self.progress else None
            decoded = self.phases.seconds.get("train_decode", 0.0)
            outputs = compute_prefix_outputs(self.model, steps, paths, self.eval_transform, self.runtime,
                                             c.batch_size, c.num_workers, hook, self.phases)
            seconds = time.perf_counter() - started
            self.prefix_seconds += seconds
            forward = seconds - (self.phases.seconds.get("train_decode", 0.0) - decoded)
            # with nothing frozen ahead the "prefix" is the decoded image: no frozen forward, all decoding
            self.phases.add("train_frozen_forward" if steps else "train_decode", forward)
            self.unreadable.update(paths[i] for i in outputs.unreadable)
            kept = torch.tensor(outputs.kept, dtype=torch.long)
            return CachedInputs(outputs.values, labels[kept], steps, release=outputs.release)
        if training and c.augment:
            kept = self.kept_training_images(paths, labels)
            if kept is not None:
                return kept
        transform = self.train_transform if training else self.eval_transform
        return ImageInputs(paths, labels, transform, c.num_workers, self.runtime.pin_memory)

    def kept_training_images(self, paths: list[Path], labels: torch.Tensor) -> DecodedInputs | None:
        """The training images decoded once for every stage (on the device when they fit there), or None when
        they would not fit in memory: then they are decoded every epoch."""
        if self.kept is None:
            device = self.runtime.device
            estimate = len(paths) * kept_image_bytes(self.train_transform.keep_size)
            if estimate > memory_budget(device):
                device = "cpu"
                if estimate > memory_budget(device):
                    log.info("training images (about %.1f GB decoded) do not fit in memory: decoded every epoch",
                             estimate / 1e9)
                    return None
            with self.phases.measure("train_decode"):
                self.kept = DecodedInputs.decode(paths, labels, self.train_transform.keeper(), self.train_transform,
                                                 self.config.num_workers, self.runtime.pin_memory, device)
            self.unreadable.update(p for p, image in zip(paths, self.kept.images) if image is None)
        return self.kept

    # -- the run ----------------------------------------------------------------
    def check_output(self) -> None:
        """Claim the model folder, then refuse to overwrite a saved model or drop an interrupted run's checkpoint;
        fail before training on a folder that cannot be written. The main process claims and looks; every
        process stops on its verdict. The claim (``self.lock``) is held until the model is saved: a second run
        started into the same folder meanwhile is refused, so the check still holds when the model is written."""
        problem = None
        if self.runtime.is_main:
            reason = folder_problem(self.output)  # creates nothing: a refused run leaves nothing behind
            try:
                if reason:
                    raise UserError(f"cannot write the model folder {self.output}: {reason}")
                self.lock.acquire(f"another run is writing a model into {self.output} now: choose another "
                                  "--output, or wait for it to finish")
                problem = self.output_problem()
            except UserError as exc:
                problem = str(exc)
        problem = self.runtime.broadcast(problem)  # also the barrier before any process reads a checkpoint
        if problem:
            self.lock.release()
            raise UserError(problem)

    def output_problem(self) -> str | None:
        if (self.output / META_NAME).exists() and not self.config.resume:
            return f"{self.output} already holds a saved model: choose another --output, or delete it"
        if (self.output / CHECKPOINT_NAME).exists() and not self.config.resume:
            return (f"{self.output} holds an interrupted run's checkpoint: add --resume to continue it, "
                    "or choose another --output")
        return None

    def run(self) -> FinetuneResult:
        # a bad freeze point fails before data and weights load
        check_on_backbone(self.config.freeze, self.config.backbone, self.config.pooling)
        with self.lock:
            self.check_output()
            # started in prepare(): the parameters are the config as completed for the training set's size
            with open_tracker(self.config, "finetune", self.log_name(), self.runtime.is_main,
                              start=False) as self.tracker:
                result = self.train_and_finish()
                self.tracker.outputs(result, self.log_name(), self.output)
        return result

    def log_name(self) -> str:
        """The run's default name in the logs: its model folder's (``DIR`` for a fold's ``DIR/fold-I``)."""
        folded = self.config.fold is not None and self.config.output
        return self.output.parent.name if folded else self.output.name

    def train_and_finish(self) -> FinetuneResult:
        loading = time.perf_counter()
        self.prepare()
        self.phases.add("load", time.perf_counter() - loading)
        c = self.config
        state = load_checkpoint(self.output, self.id) if c.resume else None
        self.started = time.perf_counter() - (state["training_seconds"] if state else 0.0)
        if state:
            self.model.load_state_dict(state["model"])
        learner = self.learner(state["history"] if state else [])
        stage2_start = None
        self.last_stage = self.stages[0]
        for index, stage in enumerate(self.stages):
            if state and index < state["stage"]:
                continue  # finished before the interruption
            if not state and self.cannot_improve(stage, learner.history):
                self.skip_note(stage)
                break
            if index > 0:  # where the unfreezing stage's epochs begin in the history
                stage2_start = sum(1 for h in learner.history if h["stage"] != stage.name) + 1
            self.train_stage(learner, index, stage, state if state and index == state["stage"] else None)
            self.last_stage = stage
            state = None
        for unused in self.carried.values():  # the next stage was skipped
            unused.close()
        self.carried.clear()
        if self.ends_at_probe_head(learner.history) and self.splits.val_from_train and c.per_class is None:
            self.refit_probe_head()
        return self.finish(learner.history, time.perf_counter() - self.started, stage2_start)

    def ends_at_probe_head(self, history: list[dict]) -> bool:
        """Whether the weights the run ends with are stage 1's probe head (no later stage beat it on validation)."""
        ended = restored_epoch(history, self.early_stopping, self.keep_margin)
        return any(h["epoch"] == ended and h.get("head_fit") == "logreg" for h in history)

    def refit_probe_head(self) -> None:
        """The model is the probe's head, and validation was carved out of the images the probe trains on: the
        head is fitted again on all of them (training and validation), as the probe is. The validation images
        were needed only to decide that the later stage did not help (sklearn's ``refit``)."""
        c = self.config
        linear = final_linear(self.model.classifier)
        if self.head_features is None:  # resumed after stage 1: its features are computed again
            self.stages[0].apply(self.model)
            for samples, name in ((self.train_samples, "train"), (self.val_samples, "val")):
                inputs = self.stage_inputs(samples, name, training=False)
                try:
                    self.head_features = [*(self.head_features or []),
                                          head_inputs(self.model, linear, inputs, self.runtime, c.batch_size)]
                finally:
                    inputs.close()
        fit_probe_head(linear, np.concatenate([X for X, _ in self.head_features]),
                       np.concatenate([y for _, y in self.head_features]), c.seed, self.scoring)
        note = (f"the model is stage 1's probe head (no later stage beat it on validation), fitted again on the "
                f"{len(self.train_samples) + len(self.val_samples)} training and validation images, as the probe is")
        log.info(note)
        self.splits.notes.append(note)

    def learner(self, history: list[dict] | None = None) -> Learner:
        """The run's ``Learner``: its model, loss, optimizer and schedule per stage, sampler and callbacks."""
        c = self.config
        self.stopper = EarlyStopping(self.early_stopping, self.patience)
        callbacks: list[Callback] = [self.stopper]
        if c.ema:
            callbacks.append(EMA(c.ema))
        if self.runtime.is_main:
            callbacks.append(Checkpoint(self.output, self.id, lambda s: {
                "stage": self.stage_index, "training_seconds": time.perf_counter() - self.started}))
        if self.on_epoch:
            callbacks.append(EpochHook(self.on_epoch))
        if self.tracker:
            callbacks.append(EpochHook(self.tracker.epoch))
        if self.progress:
            callbacks.append(BatchProgress(self.progress))
        sampler = None
        if c.sampler == "balanced":
            sampler = balanced_sampler([s.label for s in self.train_samples], self.runtime)
        return Learner(self.model, self.runtime, self.loss_fn, self.stage_optimizer, batch_size=c.batch_size,
                       seed=c.seed, callbacks=callbacks, mix=self.mix, schedule_func=self.stage_schedule,
                       accumulate=c.accumulate, sampler=sampler, history=history or [], scoring=self.scoring)

    def stage_optimizer(self, model: TransferModel, stage: TrainStage) -> torch.optim.Optimizer:
        return build_optimizer(model, stage.optimizer, stage.head_lr, stage.backbone_lr, stage.layer_decay,
                               self.config.weight_decay)

    def stage_schedule(self, optimizer: torch.optim.Optimizer, steps_per_epoch: int, epochs: int):
        c = self.config
        return build_schedule(optimizer, c.schedule, epochs * steps_per_epoch, c.warmup_epochs * steps_per_epoch)

    def stage_data(self, learner: Learner, stage: TrainStage) -> None:
        """Set ``stage`` on the model and the learner's data for it (a cached prefix starts where it ends)."""
        stage.apply(self.model)
        learner.train = self.stage_inputs(self.train_samples, "train", training=True)
        learner.val = self.stage_inputs(self.val_samples, "val", training=False)

    def cannot_improve(self, stage: TrainStage, history: list[dict]) -> bool:
        """Whether a later stage is bound to be thrown away: early stopping keeps the stage before's end unless
        validation accuracy rises above it, and it is already 1."""
        return (stage.keeps_earlier_end and bool(history) and self.early_stopping == "val_accuracy"
                and history[-1].get("val_accuracy", 0.0) + self.keep_margin >= 1.0)

    def skip_note(self, stage: TrainStage) -> None:
        note = (f"the {stage.name} stage was skipped: the stage before classifies every validation image, and early "
                "stopping on validation accuracy would have kept its weights anyway")
        log.info(note)
        self.splits.notes.append(note)

    def carry_prefix(self, index: int) -> None:
        """The next stage's cached frozen prefix of the training and validation images, computed before stage
        ``index`` (the probe's fit, all units frozen) so one pass over the images serves both: the fit runs the
        rest of the frozen units on it, and the next stage starts from it."""
        c = self.config
        if not c.prefix_cache or index + 1 >= len(self.stages):
            return
        self.stages[index + 1].apply(self.model)
        steps = self.model.cacheable_steps()
        if steps == 0:
            return
        for samples, name, training in ((self.train_samples, "train", True), (self.val_samples, "val", False)):
            if not (training and c.augment):  # augmented training images are not cached
                self.carried[(name, steps)] = self.stage_inputs(samples, name, training)

    def train_probe_stage(self, learner: Learner, stage: TrainStage) -> None:
        """Stage 1 as the probe: the head set to the logistic regression on the frozen features, one record."""
        c = self.config
        self.carry_prefix(self.stages.index(stage))
        stage.apply(self.model)
        carried = {name: inputs for (name, _), inputs in self.carried.items()}
        train, val = (carried[name] if name in carried else self.stage_inputs(samples, name, training=False)
                      for samples, name in ((self.train_samples, "train"), (self.val_samples, "val")))
        try:
            record, self.head_features = probe_stage(self.model, train, val, self.runtime, c.batch_size, c.seed,
                                                     stage.name, len(learner.history) + 1, self.scoring)
        finally:
            for inputs in (train, val):
                if not any(inputs is kept for kept in carried.values()):
                    inputs.close()
        learner.history.append(record)
        for hook in (self.on_epoch, self.tracker.epoch if self.tracker else None):
            if hook:
                hook(record)

    def train_stage(self, learner: Learner, index: int, stage: TrainStage, resumed: dict | None) -> None:
        self.stage_index = index
        if stage.head_init == "probe" and final_linear(self.model.classifier) is not None:
            stage.apply(self.model)
            self.train_probe_stage(learner, stage)
            return
        # a later stage keeps the earlier one's end unless it beats it on validation
        self.stopper.baseline = learner.history[-1] if stage.keeps_earlier_end and learner.history else None
        self.stopper.baseline_margin = self.keep_margin
        self.stage_data(learner, stage)
        first_epoch = 0
        if resumed:
            first_epoch = stage.epochs if resumed["stage_done"] else resumed["epoch"] + 1
        try:
            if self.config.lr_find and not resumed:  # a resumed stage's rates come back with its optimizer
                stage = self.found_rates(learner, stage)
            learner.fit(stage.epochs, stage, first_epoch, resumed)
        finally:
            learner.train.close()
            learner.val.close()

    def found_rates(self, learner: Learner, stage: TrainStage) -> TrainStage:
        """``stage`` at the rate the learning-rate range test suggests for its head, its other rates scaled alike
        (the sweep changes no weights); unchanged, with a note, when the sweep suggests none."""
        sweep = learner.lr_find(stage)
        if sweep.suggestion is None:
            note = f"lr-find suggested no rate for the {stage.name} stage: it trains at {stage.head_lr:.3g}"
            self.splits.notes.append(note)
            return stage
        scale = sweep.suggestion / stage.head_lr
        found = replace(stage, head_lr=sweep.suggestion, backbone_lr=stage.backbone_lr * scale)
        self.splits.notes.append(f"lr-find: the {stage.name} stage trains at {found.head_lr:.3g} (head) and "
                                 f"{found.backbone_lr:.3g} (top unit), suggested by a {len(sweep.lrs)}-step sweep")
        return found

    def finish(self, history: list[dict], training_seconds: float, stage2_start: int | None) -> FinetuneResult:
        c = self.config
        if self.kept is not None:
            self.kept.shutdown()  # its workers: training is over
        phases = self.phases
        phases.add("train_network", sum(h["seconds"] for h in history))  # every epoch's, validation included
        phases.close(TRAINING_PHASES, training_seconds)
        test_started = time.perf_counter()
        test_logits, truth, kept_paths, test_loss = self.predict_test()
        test_seconds = phases.close(TEST_PHASES, time.perf_counter() - test_started)
        if not truth:
            raise UserError(f"no readable test images in {self.splits.root} ({self.splits.evaluated_on})")
        if self.scoring is None:
            scores = score(truth, test_logits.argmax(1).tolist(), self.splits.classes, kept_paths)
            calibration, bundle_meta = after_training(self.model, self.val_samples, self.splits.test,
                                                      self.eval_transform, self.runtime, c.batch_size, c.calibrate,
                                                      c.tta, (test_logits, np.asarray(truth, dtype=np.int64)))
        else:
            scores, calibration = self.multilabel_scores(test_logits, truth, kept_paths), {}
            bundle_meta = {"multi_label": {"threshold": scores["threshold"]}}
        last_stage = self.last_stage  # the last stage trained: a later one may have been skipped
        self.model.freeze(last_stage.frozen_units)
        trainable, frozen = self.model.parameter_counts()
        epoch_seconds = [h["seconds"] for h in history]
        classes = self.splits.outputs
        model = self.model
        result = FinetuneResult(
            backbone=c.backbone,
            timm_name=self.backbone.timm_name,
            freeze=c.freeze,
            recipe=self.recipe,
            head=c.head,
            data=str(self.splits.root),
            evaluated_on=self.splits.evaluated_on,
            classes=classes,
            train_images=len(self.train_samples),
            val_images=len(self.val_samples),
            test_images=len(truth),
            epochs_run=len(history),
            seconds_per_epoch=float(np.mean(epoch_seconds)) if epoch_seconds else 0.0,
            training_seconds=training_seconds,
            trainable_parameters=trainable,
            frozen_parameters=frozen,
            total_parameters=trainable + frozen,
            backbone_layers=len(model.units),
            frozen_layers=last_stage.frozen_units,
            feature_dim=model.feature_dim,
            inference_ms_per_image=inference_ms_per_image(
                model, model, kept_paths, self.eval_transform, self.runtime,
                key=("finetune", self.backbone.timm_name, self.backbone.input_size, c.pooling, c.head, len(classes))),
            best_epoch=restored_epoch(history, self.early_stopping, self.keep_margin),
            stage2_start_epoch=stage2_start,
            prefix_cache_used=c.prefix_cache and not c.augment,
            prefix_cache_seconds=self.prefix_seconds,
            test_loss=test_loss,
            test_seconds=test_seconds,
            phases=dict(phases.seconds),
            train_accuracy_final=history[-1]["train_accuracy"] if history else None,
            val_accuracy_final=history[-1].get("val_accuracy") if history else None,
            model_path=str(self.output),
            history=history,
            unreadable_count=len(self.unreadable),
            unreadable_examples=sorted(str(p) for p in self.unreadable)[:5],
            notes=list(self.splits.notes),
            config=asdict(c),
            runtime=self.runtime.describe(),
            **scores,
            **calibration,
        )
        if self.runtime.is_main:
            summary = {k: v for k, v in asdict(result).items() if k not in ("predictions",)}
            save_bundle(self.output, model, {
                "transferlab": __version__,
                "backbone": {"name": c.backbone, "timm_name": self.backbone.timm_name,
                             "weights": self.backbone.weights_source},
                "preprocessing": self.backbone.data_config,
                "units": len(model.units),
                "classes": classes,
                "head": {"spec": c.head, "dropout": c.dropout, "pooling": c.pooling},
                "feature_dim": model.feature_dim,
                "training": summary,
                **bundle_meta,
            })
            remove_checkpoint(self.output)
        return result

    def multilabel_scores(self, test_logits: np.ndarray, truth: list[int], paths: list[Path]) -> dict:
        """The multi-label score fields: the threshold tuned on the validation images, the test images at it."""
        val_logits, val_labels = sample_logits(self.model, self.val_samples, self.eval_transform, self.runtime,
                                               self.config.batch_size)
        probabilities = torch.from_numpy(test_logits).sigmoid().numpy()
        return multilabel_test_scores(self.scoring, torch.from_numpy(val_logits), val_labels.tolist(),
                                      probabilities, truth, self.splits.outputs, paths)

    def predict_test(self) -> tuple[np.ndarray, list[int], list[Path], float | None]:
        """The logits and true labels of the readable test images, with their paths and the mean test loss (each
        process predicts its slice; the slices are gathered in order)."""
        mine = self.runtime.shard(len(self.splits.test))
        samples = self.splits.test[mine.start : mine.stop]
        batches = image_batches([s.path for s in samples], self.eval_transform, self.config.batch_size,
                                self.config.num_workers, self.runtime.pin_memory, self.runtime.device)
        started = time.perf_counter()
        decoded = self.phases.seconds.get("test_decode", 0.0)
        found = collect(self.model, self.phases.waiting(batches, "test_decode"), self.runtime)
        labels = torch.tensor([samples[i].label for i in found.indices], dtype=torch.long)
        loss_sum = float(scored_loss_sum(self.scoring, found.outputs, labels)) if found.indices else 0.0
        truth, paths = labels.tolist(), [samples[i].path for i in found.indices]
        unreadable = [samples[i].path for i in found.unreadable]
        self.phases.add("test_predict",
                        time.perf_counter() - started - (self.phases.seconds.get("test_decode", 0.0) - decoded))
        logits = found.outputs.numpy() if found.indices else np.zeros((0, 0), np.float32)
        parts = self.runtime.gather((logits, truth, paths, unreadable, loss_sum))
        self.unreadable.update(p for part in parts for p in part[3])
        truth = [t for part in parts for t in part[1]]
        loss = sum(part[4] for part in parts) / len(truth) if truth else None
        every = [part[0] for part in parts if len(part[0])] or [np.zeros((0, 0), np.float32)]  # a rank may have none
        return np.concatenate(every), truth, [p for part in parts for p in part[2]], loss
