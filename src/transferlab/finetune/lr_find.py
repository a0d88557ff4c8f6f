"""``transferlab lr-find``: the learning-rate range test for each stage of a fine-tuning run (fastai's ``lr_find``).

Every stage is swept on the run's own model, data, loss and optimizer (its rates' shares between the head and
the units kept): stage 1 from the new head, stage 2 of two-stage after stage 1 trained as the run would train it.
Each sweep leaves a loss-against-rate plot and a suggestion (the steepest descent); the sweep itself changes no
weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..engine.callbacks import Checkpoint
from ..errors import UserError
from ..progress_bars import StageProgress
from .config import FinetuneConfig
from .head_init import final_linear
from .run import FinetuneRun, config_id


@dataclass
class StageSweep:
    stage: str
    suggestion: float | None  # fastai's valley
    steepest: float | None
    configured_lr: float  # the stage's head rate as the run is set up now
    plot: str
    steps: int


def default_folder(config: FinetuneConfig) -> Path:
    return Path("runs") / f"lr-find-{config.backbone.replace('/', '_')}-{config_id(config)}"


def find_lr(config: FinetuneConfig, start_lr: float = 1e-7, end_lr: float = 10.0, steps: int = 100,
            progress: StageProgress | None = None, runtime=None) -> list[StageSweep]:
    """The sweep of every stage of ``config``'s run; plots go to ``config.output`` (default runs/lr-find-...)."""
    if not 0 < start_lr < end_lr:
        raise UserError(f"--start-lr {start_lr} must be above 0 and below --end-lr {end_lr}")
    folder = Path(config.output) if config.output else default_folder(config)
    run = FinetuneRun(config, progress, runtime=runtime)
    run.prepare()
    plots = [folder / f"lr-find-{i + 1}-{stage.name}.png" for i, stage in enumerate(run.stages)]  # (unused: probe)
    taken = [p for p in plots if p.exists()]
    if taken:
        raise UserError(f"{taken[0]} already exists: choose another --output")
    folder.mkdir(parents=True, exist_ok=True)
    learner = run.learner()
    learner.callbacks = [c for c in learner.callbacks if not isinstance(c, Checkpoint)]  # nothing to resume
    sweeps = []
    for index, (stage, plot) in enumerate(zip(run.stages, plots)):
        run.stage_index = index
        if stage.head_init == "probe" and final_linear(run.model.classifier) is not None:
            run.train_stage(learner, index, stage, None)  # the probe's regression: no learning rate to find
            sweeps.append(StageSweep(stage.name, None, None, 0.0, "", 0))
            continue
        run.stage_data(learner, stage)
        try:
            found = learner.lr_find(stage, start_lr, end_lr, steps)
            if run.runtime.is_main:
                found.plot(plot, f"{config.backbone}: stage {index + 1} ({stage.name})")
            sweeps.append(StageSweep(stage.name, found.suggestion, found.steepest, stage.head_lr, str(plot), len(found.lrs)))
            if index + 1 < len(run.stages):
                learner.fit(stage.epochs, stage)  # the next stage starts where this one ends in a real run
        finally:
            learner.train.close()
            learner.val.close()
    return sweeps
