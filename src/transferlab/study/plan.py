"""A study expanded into runs: every method x backbone x combination of its sweep axes.

Each run's config record is built here, so a value the record refuses is an error
at plan time (located at its method in the file), not a failed run. The data's
fingerprint is computed once per plan and goes into every run's identity.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..backbones import resolve_timm_name
from ..backbones.weights import find_weights
from ..errors import UserError
from ..finetune.config import FinetuneConfig
from ..probing.config import ProbeConfig
from ..rank.config import RankConfig
from .axes import setting_text
from .identity import data_fingerprint, run_id
from .spec import (
    KINDS,
    SCRATCH_BACKBONE,
    BackboneSpec,
    MethodSpec,
    StudySpec,
    method_axes,
    method_options,
    method_path,
)

RUNNERS = {ProbeConfig: "probe", FinetuneConfig: "finetune", RankConfig: "rank"}


@dataclass
class PlannedRun:
    """One experiment to run: its identity, its labels in the study and its full config."""

    run_id: str
    study: str
    method: str
    kind: str  # the method kind: probe, temperature, finetune, scratch, rank
    runner: str  # which API runs it: probe, finetune or rank
    backbone: str
    axes: dict[str, Any]  # the swept values of this run, e.g. {"per_class": 8, "seed": 1}
    config: ProbeConfig | FinetuneConfig | RankConfig

    def label(self) -> str:
        swept = setting_text(self.axes)
        return f"{self.method} / {self.backbone}" + (f" [{swept}]" if swept else "")


@dataclass
class StudyPlan:
    study: StudySpec
    data: str
    runs: list[PlannedRun]
    notes: list[str] = field(default_factory=list)
    data_fingerprint: str = ""  # digest of the data's images (see study.identity)


def resolve_data(spec: StudySpec, override: str | None) -> str:
    """``--data`` (relative to the current folder) wins; else the study's ``data`` (relative to the file)."""
    from ..data.shards import absolute_spec, is_shard_spec

    if override and is_shard_spec(override):  # a brace pattern or '::' list names files, not one path
        return absolute_spec(override, Path.cwd())
    if override:
        return _packed_prefix(override) + _absolute(Path(_packed_path(override)).expanduser(), override)
    if spec.data is None:
        raise UserError(f"{spec.path or 'the study'} names no data: add 'data: FOLDER' or pass --data FOLDER")
    if is_shard_spec(spec.relative(spec.data)):
        return absolute_spec(spec.data, spec.folder)
    path = spec.relative(_packed_path(spec.data))
    assert path is not None
    return _packed_prefix(spec.data) + _absolute(path, spec.data)


def _packed_prefix(text: str) -> str:
    return "hf:" if text.startswith("hf:") else ""


def _packed_path(text: str) -> str:
    """The path in ``hf:PATH`` (relative to the study file or the current folder, as any data path)."""
    return text[len(_packed_prefix(text)):]


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
    fingerprint = data_fingerprint(data_path)
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
        for planned in _method_runs(spec, method, available, data_path, fingerprint):
            if planned.run_id in seen:
                notes.append(f"{planned.label()} is the same experiment as {seen[planned.run_id].label()}: run once")
                continue
            seen[planned.run_id] = planned
            runs.append(planned)
    return StudyPlan(spec, data_path, runs, notes, fingerprint)


def _method_runs(spec: StudySpec, method: MethodSpec, backbones: list[BackboneSpec], data: str, fingerprint: str):
    config_class = KINDS[method.kind]
    if method.kind == "scratch":
        backbones = [BackboneSpec(SCRATCH_BACKBONE)]
    elif method.backbones is not None:
        backbones = [b for b in backbones if b.name in method.backbones]
    options = method_options(spec, method)
    axes = method_axes(spec, method)
    runner = RUNNERS[config_class]
    for backbone in backbones:
        for values in itertools.product(*axes.values()):
            if runner == "rank":  # one run per backbone: its candidates (layers x poolings) scored together
                yield _rank_run(spec, method, backbone, {**options, "data": data}, dict(zip(axes, values)),
                                fingerprint)
                continue
            for combo in with_folds(dict(zip(axes, values)), options):
                settings = {**options, **combo, "data": data, "backbone": backbone.name}
                if method.kind != "scratch":
                    settings.setdefault("weights", backbone.weights)
                    settings.setdefault("random_init", backbone.random_init)
                config = _config(spec, method, config_class, settings, combo)
                if runner == "finetune":
                    _check_freeze(spec, method, config, combo)
                else:
                    _check_layer(spec, method, config, combo)
                yield PlannedRun(run_id(runner, config, fingerprint), spec.name, method.name, method.kind, runner,
                                 backbone.name, combo, config)


def _rank_run(spec: StudySpec, method: MethodSpec, backbone: BackboneSpec, settings: dict, combo: dict,
              fingerprint: str) -> PlannedRun:
    if backbone.weights is not None:
        raise _located(spec, method, combo, UserError(
            f"rank loads timm's own weights: backbone {backbone.name} with 'weights: {backbone.weights}' cannot be "
            "ranked (list the method's backbones without it)"))
    settings = {k: v for k, v in {**settings, **combo}.items() if k not in ("folds", "fold")}  # its own val split
    settings.update(backbones=[backbone.name], random_init=backbone.random_init)
    config = _config(spec, method, RankConfig, settings, combo)
    return PlannedRun(run_id("rank", config, fingerprint), spec.name, method.name, method.kind, "rank",
                      backbone.name, combo, config)


def with_folds(combo: dict[str, Any], options: dict[str, Any]) -> list[dict[str, Any]]:
    """A run per fold when a method cross-validates (``folds: K``) and sweeps no ``fold`` itself: the ``fold``
    axis 0..K-1 is implied, so every image is tested once."""
    folds = combo.get("folds", options.get("folds"))
    if not folds or "fold" in combo or options.get("fold") is not None:
        return [combo]
    return [{**combo, "fold": fold} for fold in range(folds)]


def _check_freeze(spec: StudySpec, method: MethodSpec, config: FinetuneConfig, combo: dict) -> None:
    """The run's freeze point against its backbone's units (its structure, built without weights: milliseconds),
    so ``first:100`` on a 17-unit backbone fails at ``--dry-run``, not after hours of other runs."""
    from ..finetune.freeze import check_on_backbone
    from ..finetune.run import default_policy

    try:
        check_on_backbone(default_policy(config), config.backbone, config.pooling)
    except UserError as exc:
        raise _located(spec, method, combo, exc) from None


def _check_layer(spec: StudySpec, method: MethodSpec, config, combo: dict) -> None:
    """The probe's feature layer against its backbone's modules (built without weights), at ``--dry-run``."""
    from ..backbones.units import check_layer

    if config.temperature is not None:
        return
    try:
        check_layer(config.backbone, config.layer, config.image_size)
    except UserError as exc:
        raise _located(spec, method, combo, exc) from None


def _config(spec: StudySpec, method: MethodSpec, config_class: type, settings: dict, combo: dict):
    """The run's config record; a value it refuses is a UserError at the method's line in the study file."""
    try:
        return config_class(**settings)
    except UserError as exc:
        raise _located(spec, method, combo, exc) from None


def _located(spec: StudySpec, method: MethodSpec, combo: dict, exc: UserError) -> UserError:
    """``exc`` at the method's line in the study file (with the swept values that led to it)."""
    swept = f" with {setting_text(combo)}" if combo else ""
    message = f"method {method.name!r}{swept}: {exc}"
    if spec.lines is not None:
        return spec.lines.error(method_path(method), message)
    return UserError(f"{spec.path or 'the study'}: {message}")
