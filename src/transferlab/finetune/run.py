"""One fine-tuning run, end to end: data, model, stages, checkpoints, evaluation, bundle."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from sklearn.utils.class_weight import compute_class_weight

from ..backbones import FROM_SCRATCH, Backbone, load_backbone, to_channels_last
from ..data import Sample, image_batches, load_dataset
from ..errors import UserError
from ..evaluation import inference_ms_per_image, score
from ..storage import text_digest
from ..training.early_stopping import EarlyStopping
from .augment import train_transform
from .bundle import save_bundle
from .checkpoint import load_checkpoint, remove_checkpoint, save_checkpoint
from .config import FinetuneConfig, FinetuneResult
from .freeze import Stage, plan_stages
from .inputs import CachedInputs, ImageInputs
from .model import TransferModel
from .optim import build_optimizer, build_schedule
from .prefix_cache import compute_prefix_outputs

StageProgress = Callable[[str, int, int], None]
EpochHook = Callable[[dict], None]


def default_policy(config: FinetuneConfig) -> str:
    from_scratch = config.random_init or config.backbone in FROM_SCRATCH
    return config.freeze or ("none" if from_scratch else "two-stage")


def config_id(config: FinetuneConfig) -> str:
    """Identity of the settings that determine the result (not where it is saved or whether it resumes)."""
    settings = {k: v for k, v in asdict(config).items() if k not in ("output", "resume", "num_workers")}
    return text_digest(json.dumps(settings, sort_keys=True, default=str))[:16]


def default_output(config: FinetuneConfig) -> Path:
    name = config.backbone.replace("/", "_")
    return Path("runs") / f"{name}-{default_policy(config).replace(':', '')}-{config_id(config)}"


def finetune(data: str | Path = "digits", progress: StageProgress | None = None, on_epoch: EpochHook | None = None,
             **options) -> FinetuneResult:
    """Fine-tune a backbone with a new head on an image folder. Options: see ``FinetuneConfig``."""
    try:
        config = FinetuneConfig(data=str(data), **options)
    except TypeError as exc:
        raise UserError(str(exc).replace("FinetuneConfig.__init__()", "finetune()")) from None
    return run_finetune(config, progress, on_epoch)


def run_finetune(config: FinetuneConfig, progress: StageProgress | None = None,
                 on_epoch: EpochHook | None = None) -> FinetuneResult:
    return FinetuneRun(config, progress, on_epoch).run()


def restored_epoch(history: list[dict], monitor: str) -> int:
    """The epoch whose weights the model ends with: the last stage's best by the monitored metric."""
    if not history:
        return 0
    last_stage = [h for h in history if h["stage"] == history[-1]["stage"]]
    if monitor == "none":
        return last_stage[-1]["epoch"]
    if monitor == "val_loss":
        return min(last_stage, key=lambda h: h["val_loss"])["epoch"]
    return max(last_stage, key=lambda h: h["val_accuracy"])["epoch"]


class FinetuneRun:
    """The state of one run; ``run()`` trains every stage then evaluates and saves."""

    def __init__(self, config: FinetuneConfig, progress: StageProgress | None, on_epoch: EpochHook | None):
        self.config = replace(config, freeze=default_policy(config))
        self.progress = progress
        self.on_epoch = on_epoch
        self.output = Path(config.output) if config.output else default_output(config)
        self.id = config_id(config)

    # -- set-up ---------------------------------------------------------------
    def prepare(self) -> None:
        c = self.config
        self.splits = load_dataset(c.data, ratios=tuple(c.ratios), seed=c.seed, classes=c.classes,
                                   num_classes=c.num_classes, per_class=c.per_class)
        self.train_samples, self.val_samples = self.splits.train_and_validation(seed=c.seed)
        from_scratch = c.random_init or c.backbone in FROM_SCRATCH
        self.backbone: Backbone = load_backbone(c.backbone, weights=c.weights, random_init=from_scratch, seed=c.seed)
        with torch.random.fork_rng():
            torch.manual_seed(c.seed)
            self.model = TransferModel.from_backbone(self.backbone, len(self.splits.classes), c.head, c.dropout, c.pooling)
        self.model.train_bn = from_scratch if c.train_bn is None else c.train_bn
        self.stages = plan_stages(c.freeze, len(self.model.layers))
        self.eval_transform = self.backbone.transform()
        self.train_transform = train_transform(self.backbone.data_config, c.augment, self.eval_transform)
        labels = np.array([s.label for s in self.train_samples])
        weights = None
        if c.class_weights:
            present = np.unique(labels)
            weights = torch.zeros(len(self.splits.classes))
            weights[present] = torch.tensor(compute_class_weight("balanced", classes=present, y=labels), dtype=torch.float32)
        self.loss_fn = torch.nn.CrossEntropyLoss(weight=weights)
        self.unreadable: set[Path] = set()
        self.prefix_seconds = 0.0

    def stage_inputs(self, stage: Stage, samples: list[Sample], name: str, training: bool):
        """Cached prefix outputs when the frozen prefix is fixed, else images decoded every epoch."""
        labels = torch.tensor([s.label for s in samples])
        paths = [s.path for s in samples]
        augmenting = training and bool(self.config.augment)
        if self.config.prefix_cache and not augmenting:
            started = time.perf_counter()
            hook = (lambda d, t: self.progress(f"frozen prefix ({name})", d, t)) if self.progress else None
            outputs = compute_prefix_outputs(self.model, stage.frozen_layers, paths, self.eval_transform,
                                             self.config.batch_size, self.config.num_workers, hook)
            self.prefix_seconds += time.perf_counter() - started
            self.unreadable.update(paths[i] for i in outputs.unreadable)
            return CachedInputs(outputs, labels[torch.tensor(outputs.kept, dtype=torch.long)], stage.frozen_layers)
        transform = self.train_transform if training else self.eval_transform
        return ImageInputs(paths, labels, transform, self.config.num_workers)

    # -- epochs ---------------------------------------------------------------
    def train_epoch(self, inputs, optimizer, schedule, seed: int, label: str) -> dict:
        self.model.train()
        total_loss, correct, seen = 0.0, 0, 0
        n_batches = -(-len(inputs) // self.config.batch_size)
        for step, (x, y) in enumerate(inputs.batches(self.config.batch_size, seed, shuffle=True)):
            optimizer.zero_grad(set_to_none=True)
            logits = self.model(to_channels_last(x), start=inputs.start)
            loss = self.loss_fn(logits, y)
            loss.backward()
            optimizer.step()
            schedule.step()
            total_loss += loss.item() * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
            if self.progress:
                self.progress(label, step + 1, n_batches)
        return {"train_loss": total_loss / max(seen, 1), "train_accuracy": correct / max(seen, 1)}

    @torch.no_grad()
    def evaluate(self, inputs) -> dict:
        self.model.eval()
        total_loss, correct, seen = 0.0, 0, 0
        for x, y in inputs.batches(self.config.batch_size, 0, shuffle=False):
            logits = self.model(to_channels_last(x), start=inputs.start)
            total_loss += float(torch.nn.functional.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
        return {"val_loss": total_loss / max(seen, 1), "val_accuracy": correct / max(seen, 1)}

    def stage_lr(self, stage: Stage) -> tuple[float, float]:
        c = self.config
        if stage.name == "fine-tune":
            lr = c.stage2_lr if c.stage2_lr is not None else c.lr / 100
            return lr, lr
        return c.lr, c.backbone_lr if c.backbone_lr is not None else c.lr

    def stage_epochs(self, stage: Stage) -> int:
        c = self.config
        return c.stage2_epochs if stage.name == "fine-tune" and c.stage2_epochs is not None else c.epochs

    # -- the run ----------------------------------------------------------------
    def run(self) -> FinetuneResult:
        self.prepare()
        c = self.config
        state = load_checkpoint(self.output, self.id) if c.resume else None
        history: list[dict] = state["history"] if state else []
        started = time.perf_counter() - (state["training_seconds"] if state else 0.0)
        if state:
            self.model.load_state_dict(state["model"])
        stage2_start = None
        for index, stage in enumerate(self.stages):
            if stage.name == "fine-tune":
                stage2_start = sum(1 for h in history if h["stage"] != "fine-tune") + 1
            if state and index < state["stage"]:
                continue  # finished before the interruption
            self.model.freeze(stage.frozen_layers)
            lr, backbone_lr = self.stage_lr(stage)
            optimizer = build_optimizer(self.model, c.optimizer, lr, backbone_lr, c.weight_decay)
            train_inputs = self.stage_inputs(stage, self.train_samples, "train", training=True)
            val_inputs = self.stage_inputs(stage, self.val_samples, "val", training=False)
            epochs = self.stage_epochs(stage)
            batches = -(-len(train_inputs) // c.batch_size)
            schedule = build_schedule(optimizer, c.schedule, epochs * batches)
            stopper = EarlyStopping(c.patience if c.early_stopping != "none" else 0,
                                    c.early_stopping if c.early_stopping != "none" else "val_loss")
            first_epoch = 0
            if state and index == state["stage"]:
                optimizer.load_state_dict(state["optimizer"])
                schedule.load_state_dict(state["schedule"])
                stopper.load_state_dict(state["stopper"])
                first_epoch = state["epoch"] + 1
                if state["stage_done"]:
                    first_epoch = epochs
            for epoch in range(first_epoch, epochs):
                epoch_started = time.perf_counter()
                torch.manual_seed(c.seed * 100_003 + index * 1_009 + epoch)  # dropout, per epoch: resumable
                label = f"{stage.name} epoch {epoch + 1}/{epochs}"
                record = {"epoch": len(history) + 1, "stage": stage.name, "lr": optimizer.param_groups[0]["lr"]}
                record.update(self.train_epoch(train_inputs, optimizer, schedule, c.seed * 7919 + index * 101 + epoch, label))
                record.update(self.evaluate(val_inputs))
                record["seconds"] = time.perf_counter() - epoch_started
                history.append(record)
                stop = stopper.step(epoch, record, self.model)
                done = stop or epoch == epochs - 1
                save_checkpoint(self.output, {
                    "config_id": self.id, "stage": index, "epoch": epoch, "stage_done": done,
                    "model": self.model.state_dict(), "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(), "stopper": stopper.state_dict(), "history": history,
                    "training_seconds": time.perf_counter() - started,
                })
                if self.on_epoch:
                    self.on_epoch(record)
                if stop:
                    break
            if c.early_stopping != "none":
                stopper.restore(self.model)
            train_inputs.close()
            val_inputs.close()
            state = None
        training_seconds = time.perf_counter() - started
        return self.finish(history, training_seconds, stage2_start)

    def finish(self, history: list[dict], training_seconds: float, stage2_start: int | None) -> FinetuneResult:
        c = self.config
        predicted, truth, kept_paths = self.predict_test()
        if not truth:
            raise UserError(f"no readable test images in {self.splits.root} ({self.splits.evaluated_on})")
        stage_of_last = self.stages[-1]
        self.model.freeze(stage_of_last.frozen_layers)
        trainable, frozen = self.model.parameter_counts()
        epoch_seconds = [h["seconds"] for h in history]
        classes = self.splits.classes
        best = restored_epoch(history, c.early_stopping)
        result = FinetuneResult(
            backbone=c.backbone,
            timm_name=self.backbone.timm_name,
            freeze=c.freeze,
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
            backbone_layers=len(self.model.layers),
            frozen_layers=stage_of_last.frozen_layers,
            feature_dim=self.model.feature_dim,
            inference_ms_per_image=inference_ms_per_image(
                lambda images: self.model(to_channels_last(images)), kept_paths, self.eval_transform),
            best_epoch=best,
            stage2_start_epoch=stage2_start,
            prefix_cache_used=c.prefix_cache and not c.augment,
            model_path=str(self.output),
            history=history,
            unreadable_count=len(self.unreadable),
            unreadable_examples=sorted(str(p) for p in self.unreadable)[:5],
            notes=list(self.splits.notes),
            config=asdict(c),
            **score(truth, predicted, classes, kept_paths),
        )
        result.notes.append(f"frozen-prefix cache computed in {self.prefix_seconds:.1f} s (included in training seconds)")
        summary = {k: v for k, v in asdict(result).items() if k not in ("predictions",)}
        save_bundle(self.output, self.model, {
            "backbone": {"name": c.backbone, "timm_name": self.backbone.timm_name, "weights": self.backbone.weights_source},
            "preprocessing": self.backbone.data_config,
            "layers": len(self.model.layers),
            "classes": classes,
            "head": {"spec": c.head, "dropout": c.dropout, "pooling": c.pooling},
            "training": summary,
        })
        remove_checkpoint(self.output)
        return result

    @torch.no_grad()
    def predict_test(self) -> tuple[list[int], list[int], list[Path]]:
        """Predicted and true labels of the readable test images, with their paths."""
        samples = self.splits.test
        predicted, truth, paths = [], [], []
        self.model.eval()
        for batch in image_batches([s.path for s in samples], self.eval_transform, self.config.batch_size,
                                   self.config.num_workers):
            self.unreadable.update(samples[i].path for i in batch.unreadable)
            if batch.images is None:
                continue
            predicted.extend(self.model(to_channels_last(batch.images)).argmax(1).tolist())
            truth.extend(samples[i].label for i in batch.indices)
            paths.extend(samples[i].path for i in batch.indices)
        return predicted, truth, paths
