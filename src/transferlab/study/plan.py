"""A study expanded into runs: every method x backbone x combination of its sweep axes."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..backbones import resolve_timm_name
from ..backbones.weights import find_weights
from ..errors import UserError
from ..finetune.config import FinetuneConfig
from ..probe.config import ProbeConfig
from .identity import run_id
from .spec import AXIS_KINDS, KINDS, SCRATCH_BACKBONE, BackboneSpec, MethodSpec, StudySpec

RUNNERS = {ProbeConfig: "probe", FinetuneConfig: "finetune"}


@dataclass
class PlannedRun:
    """One experiment to run: its identity, its labels in the study and its full config."""

    run_id: str
    study: str
    method: str
    kind: str  # the method kind: probe, temperature, finetune, scratch
    runner: str  # which API runs it: probe or finetune
    backbone: str
    axes: dict[str, Any]  # the swept values of this run, e.g. {"per_class": 8, "seed": 1}
    config: ProbeConfig | FinetuneConfig

    def label(self) -> str:
        swept = " ".join(f"{k}={v}" for k, v in self.axes.items())
        return f"{self.method} / {self.backbone}" + (f" [{swept}]" if swept else "")


@dataclass
class StudyPlan:
    study: StudySpec
    data: str
    runs: list[PlannedRun]
    notes: list[str] = field(default_factory=list)


def resolve_data(spec: StudySpec, override: str | None) -> str:
    """``--data`` (relative to the current folder) wins; else the study's ``data`` (relative to the file)."""
    if override:
        return _absolute(Path(override).expanduser(), override)
    if spec.data is None:
        raise UserError(f"{spec.path or 'the study'} names no data: add 'data: FOLDER' or pass --data FOLDER")
    path = spec.relative(spec.data)
    assert path is not None
    return _absolute(path, spec.data)


def _absolute(path: Path, text: str) -> str:
    if not path.exists() and text == "digits":
        return "digits"
    if not path.exists():
        raise UserError(f"data folder not found: {path}")
    return str(path.resolve())


def backbone_available(backbone: BackboneSpec) -> bool:
    if backbone.random_init or backbone.name == SCRATCH_BACKBONE:
        return True
    try:
        find_weights(resolve_timm_name(backbone.name), backbone.weights)
    except UserError:
        return False
    return True


def plan_study(spec: StudySpec, data: str | None = None) -> StudyPlan:
    data_path = resolve_data(spec, data)
    notes: list[str] = []
    available = []
    for backbone in spec.backbones:
        if backbone.optional and not backbone_available(backbone):
            notes.append(f"skipped optional backbone {backbone.name}: no weights on this machine")
        else:
            available.append(backbone)
    runs: list[PlannedRun] = []
    seen: dict[str, PlannedRun] = {}
    for method in spec.methods:
        for planned in _method_runs(spec, method, available, data_path):
            if planned.run_id in seen:
                notes.append(f"{planned.label()} is the same experiment as {seen[planned.run_id].label()}: run once")
                continue
            seen[planned.run_id] = planned
            runs.append(planned)
    return StudyPlan(spec, data_path, runs, notes)


def method_axes(spec: StudySpec, method: MethodSpec) -> dict[str, list]:
    """The study's axes that apply to this method, overridden by the method's own."""
    names = {f.name for f in fields(KINDS[method.kind])}
    axes = {k: v for k, v in spec.sweep.items() if k in names and method.kind in AXIS_KINDS.get(k, {method.kind})}
    axes.update(method.sweep)
    return axes


def _method_runs(spec: StudySpec, method: MethodSpec, backbones: list[BackboneSpec], data: str):
    config_class = KINDS[method.kind]
    names = {f.name for f in fields(config_class)}
    options = {k: v for k, v in spec.settings.items() if k in names}
    if method.kind == "temperature":
        options["head"] = "softmax"
    if method.kind == "scratch":
        options["freeze"] = "none"
        backbones = [BackboneSpec(SCRATCH_BACKBONE)]
    elif method.backbones is not None:
        backbones = [b for b in backbones if b.name in method.backbones]
    options.update(method.options)
    axes = method_axes(spec, method)
    for backbone in backbones:
        for values in itertools.product(*axes.values()):
            combo = dict(zip(axes, values))
            settings = {**options, **combo, "data": data, "backbone": backbone.name}
            if method.kind != "scratch":
                settings.setdefault("weights", backbone.weights)
                settings.setdefault("random_init", backbone.random_init)
            config = config_class(**settings)
            runner = RUNNERS[config_class]
            yield PlannedRun(run_id(runner, config), spec.name, method.name, method.kind, runner, backbone.name,
                             combo, config)
