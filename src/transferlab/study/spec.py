"""The study file: data, backbones, methods and the axes to sweep, checked line by line.

A study is written in YAML::

    name: samples-per-class
    data: ../datasets/flowers17          # --data overrides it
    backbones: [efficientnet_lite0, {name: efficientnet_lite1, optional: true}]
    settings: {num_workers: 1}           # applied to every method that has the field
    methods:
      - {name: logreg, kind: probe, head: logreg, C: 0.1}
      - {name: two-stage, kind: finetune, freeze: two-stage, epochs: 5}
      - {name: from-scratch, kind: scratch, epochs: 20}
      - {name: temperature, kind: temperature, sweep: {temperature: [0.5, 1, 4]}}
      - {name: scores, kind: rank, layers: ["2", "4"], scores: [logme, knn_accuracy]}
    sweep:
      per_class: [4, 8, 16, 32]
      seed: [0, 1, 2]

Method keys are the fields of ``ProbeConfig`` (kinds ``probe``, ``temperature``)
or ``FinetuneConfig`` (kinds ``finetune``, ``scratch``) or ``RankConfig`` (kind ``rank``: each backbone's
candidates scored before training, shown in the report beside the other methods' accuracies; its ``scores``
key picks which of ``rank.config.SCORES`` the report compares). Every value a method gets
(its own, the study's ``settings`` and each swept value) is checked when the file
loads by the config record's own validation (``parse_head`` for heads, the freeze
policy syntax, ranges): any mistake is a ``UserError`` naming the file and line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..finetune.config import FinetuneConfig
from ..finetune.freeze import check_policy
from ..heads.spec import FINETUNE_HEADS, PROBE_HEADS, parse_head
from ..probing.config import ProbeConfig
from ..rank.config import SCORES, RankConfig
from .schema import coerce, field_types, suggestion, unknown_key
from .yaml_nodes import Key, Lines, load_located, parse_located

KINDS: dict[str, type] = {
    "probe": ProbeConfig,  # frozen features + a head
    "temperature": ProbeConfig,  # softmax(ImageNet logits / T) + a new softmax layer
    "finetune": FinetuneConfig,  # freeze policies, two-stage training
    "scratch": FinetuneConfig,  # the small CNN trained from random weights
    "rank": RankConfig,  # transferability scores of each backbone's candidates, before training
}
HEADS_OF: dict[type, tuple[str, ...]] = {ProbeConfig: PROBE_HEADS, FinetuneConfig: FINETUNE_HEADS}
FIXED_OPTIONS: dict[str, dict[str, Any]] = {"temperature": {"head": "softmax"}, "scratch": {"freeze": "none"}}
NOT_PER_METHOD = {"data", "backbone", "backbones"}  # set by the study, not by a method
# Global sweep axes that only make sense for some kinds (a method's own sweep may still use them).
TRAINED = {"probe", "temperature", "finetune", "scratch"}
AXIS_KINDS = {"temperature": {"temperature"}, "layer": {"probe"}, "pooling": {"probe"}, "folds": TRAINED,
              "fold": TRAINED}  # rank scores on its own validation split: no folds
TOP_KEYS = ("name", "description", "data", "backbones", "methods", "sweep", "settings", "store", "report", "new_images")
METHOD_KEYS = ("name", "kind", "sweep", "backbones")
RANK_KEYS = ("scores",)  # a rank method's own keys beside its config's: the scores its report section compares
BACKBONE_KEYS = ("name", "weights", "random_init", "optional")
SCRATCH_BACKBONE = "small-cnn"


@dataclass
class BackboneSpec:
    name: str
    weights: str | None = None
    random_init: bool = False
    optional: bool = False  # skipped (with a note) when its weights are not on this machine


@dataclass
class MethodSpec:
    name: str
    kind: str
    options: dict[str, Any]  # config fields set by the method
    sweep: dict[str, list]  # the method's own axes (override the study's)
    backbones: list[str] | None = None  # a subset of the study's backbones
    index: int | None = None  # its place in the file's methods list (to point at its line)
    scores: list[str] | None = None  # kind rank: the scores its report section shows (None: every one measured)

    @property
    def config_class(self) -> type:
        return KINDS[self.kind]


@dataclass
class StudySpec:
    name: str
    path: Path | None
    data: str | None
    backbones: list[BackboneSpec]
    methods: list[MethodSpec]
    sweep: dict[str, list] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    store: str | None = None
    report: str | None = None
    new_images: str | None = None  # a folder of outside images for the report's predictions section
    description: str = ""
    lines: Lines | None = field(default=None, repr=False, compare=False)  # where each value is in the file

    @property
    def folder(self) -> Path:
        return self.path.parent if self.path is not None else Path.cwd()

    def relative(self, value: str | None) -> Path | None:
        """A path written in the study file, read relative to the file's folder."""
        if value is None:
            return None
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.folder / path


def load_study(path: Path | str) -> StudySpec:
    value, lines = load_located(path)
    return build_study(value, lines, Path(path))


def parse_study(text: str, name: str = "<study>") -> StudySpec:
    value, lines = parse_located(text, name)
    return build_study(value, lines, None)


def build_study(value: Any, lines: Lines, path: Path | None) -> StudySpec:
    top = _mapping(value, (), lines, "the study")
    for key in top:
        if key not in TOP_KEYS:
            raise unknown_key(lines, (key,), "the study", TOP_KEYS)
    name = _text(top.get("name", path.stem if path else "study"), ("name",), lines, "name")
    data = _text(top["data"], ("data",), lines, "data") if top.get("data") is not None else None
    backbones = _backbones(top.get("backbones", ["efficientnet_lite0"]), lines)
    settings = _settings(top.get("settings", {}), lines)
    sweep = _sweep(top.get("sweep", {}), ("sweep",), lines, None)
    if "methods" not in top:
        raise lines.error((), "the study needs a 'methods' list")
    raw_methods = top["methods"]
    if not isinstance(raw_methods, list) or not raw_methods:
        raise lines.error(("methods",), "methods must be a non-empty list")
    methods = [_method(m, ("methods", i), lines, backbones, i) for i, m in enumerate(raw_methods)]
    seen: dict[str, int] = {}
    for i, method in enumerate(methods):
        if method.name in seen:
            raise lines.error(("methods", i, "name"), f"method name {method.name!r} is used twice")
        seen[method.name] = i
    for i, method in enumerate(methods):
        if method.kind == "temperature" and "temperature" not in method.sweep and "temperature" not in sweep \
                and method.options.get("temperature") is None:
            raise lines.error(("methods", i), f"method {method.name!r} of kind temperature needs temperatures: "
                              "add 'sweep: {temperature: [0.5, 1, 2, 4]}'")
    spec = StudySpec(
        name=name, path=path, data=data, backbones=backbones, methods=methods, sweep=sweep, settings=settings,
        store=_optional_text(top, "store", lines), report=_optional_text(top, "report", lines),
        new_images=_optional_text(top, "new_images", lines),
        description=_optional_text(top, "description", lines) or "",
        lines=lines,
    )
    check_values(spec)
    return spec


def _mapping(value: Any, path: Key, lines: Lines, what: str) -> dict:
    if not isinstance(value, dict):
        raise lines.error(path, f"{what} must be a mapping of keys to values, got {type(value).__name__}")
    return value


def _text(value: Any, path: Key, lines: Lines, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or str(value).strip() == "":
        raise lines.error(path, f"{what} must be text, got {value!r}")
    return str(value)


def _optional_text(top: dict, key: str, lines: Lines) -> str | None:
    return _text(top[key], (key,), lines, key) if top.get(key) is not None else None


def _backbones(value: Any, lines: Lines) -> list[BackboneSpec]:
    if isinstance(value, (str, dict)):
        value = [value]
    if not isinstance(value, list) or not value:
        raise lines.error(("backbones",), "backbones must be a non-empty list of names")
    result = []
    for i, item in enumerate(value):
        path = ("backbones", i)
        if isinstance(item, dict):
            for key in item:
                if key not in BACKBONE_KEYS:
                    raise unknown_key(lines, path + (key,), "a backbone", BACKBONE_KEYS)
            if "name" not in item:
                raise lines.error(path, "a backbone needs a name")
            result.append(BackboneSpec(
                name=_text(item["name"], path + ("name",), lines, "backbone name"),
                weights=coerce(item.get("weights"), str | None, lines, path + ("weights",), "weights"),
                random_init=coerce(item.get("random_init", False), bool, lines, path + ("random_init",), "random_init"),
                optional=coerce(item.get("optional", False), bool, lines, path + ("optional",), "optional"),
            ))
        else:
            result.append(BackboneSpec(_text(item, path, lines, "backbone name")))
    names = [b.name for b in result]
    for i, name in enumerate(names):
        if names.index(name) != i:
            raise lines.error(("backbones", i), f"backbone {name!r} is listed twice")
    return result


def _known_fields() -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for config_class in (FinetuneConfig, ProbeConfig):
        fields.update(field_types(config_class))
    return {k: v for k, v in fields.items() if k not in NOT_PER_METHOD}


def _settings(value: Any, lines: Lines) -> dict[str, Any]:
    value = _mapping(value or {}, ("settings",), lines, "settings")
    known = _known_fields()
    result = {}
    for key, item in value.items():
        path = ("settings", key)
        if key not in known:
            raise unknown_key(lines, path, "settings", known)
        result[key] = coerce(item, known[key], lines, path, key)
    return result


def _sweep(value: Any, path: Key, lines: Lines, config_class: type | None) -> dict[str, list]:
    value = _mapping(value or {}, path, lines, "sweep")
    known = field_types(config_class) if config_class else _known_fields()
    known = {k: v for k, v in known.items() if k not in NOT_PER_METHOD}
    result = {}
    for key, items in value.items():
        item_path = path + (key,)
        if key not in known:
            raise unknown_key(lines, item_path, "sweep", known)
        if not isinstance(items, list):
            items = [items]
        if not items:
            raise lines.error(item_path, f"sweep {key} needs at least one value")
        values = [coerce(v, known[key], lines, item_path + (i,), key) for i, v in enumerate(items)]
        _check_axis(key, values, item_path, lines)
        result[key] = values
    return result


def _check_axis(key: str, values: list, path: Key, lines: Lines) -> None:
    if len(set(map(repr, values))) != len(values):
        raise lines.error(path, f"sweep {key} lists a value twice")


def _method(value: Any, path: Key, lines: Lines, backbones: list[BackboneSpec], index: int) -> MethodSpec:
    value = _mapping(value, path, lines, "a method")
    if "kind" not in value:
        raise lines.error(path, f"a method needs a kind: one of {', '.join(KINDS)}")
    kind = _text(value["kind"], path + ("kind",), lines, "kind")
    if kind not in KINDS:
        raise lines.error(path + ("kind",), f"unknown method kind {kind!r}{suggestion(kind, KINDS)}: use one of {', '.join(KINDS)}")
    config_class = KINDS[kind]
    name = _text(value.get("name", kind), path + ("name",), lines, "name")
    fields = {k: v for k, v in field_types(config_class).items() if k not in NOT_PER_METHOD}
    options: dict[str, Any] = {}
    own_keys = METHOD_KEYS + (RANK_KEYS if kind == "rank" else ())
    for key, item in value.items():
        if key in own_keys:
            continue
        if key not in fields:
            raise unknown_key(lines, path + (key,), f"a {kind} method", list(fields) + list(own_keys))
        if key == "lr" and item == "auto" and "lr_find" in fields:  # fastai's habit: the rate found by lr-find
            options["lr_find"] = True
            continue
        options[key] = coerce(item, fields[key], lines, path + (key,), key)
    subset = None
    if "backbones" in value:
        subset = value["backbones"] if isinstance(value["backbones"], list) else [value["backbones"]]
        known = [b.name for b in backbones]
        for i, item in enumerate(subset):
            if item not in known:
                raise lines.error(path + ("backbones", i), f"backbone {item!r} is not in the study's backbones ({', '.join(known)})")
    sweep = _sweep(value.get("sweep", {}), path + ("sweep",), lines, config_class)
    scores = _scores(value["scores"], path + ("scores",), lines) if kind == "rank" and "scores" in value else None
    return MethodSpec(name=name, kind=kind, options=options, sweep=sweep, backbones=subset, index=index,
                      scores=scores)


def _scores(value: Any, path: Key, lines: Lines) -> list[str]:
    """A rank method's ``scores``: names from ``SCORES``, at least one."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise lines.error(path, f"scores needs at least one of {', '.join(SCORES)}")
    for i, item in enumerate(items):
        if item not in SCORES:
            raise lines.error(path + (i,) if isinstance(value, list) else path,
                              f"unknown score {item!r}{suggestion(str(item), SCORES)}: use {', '.join(SCORES)}")
    return [str(item) for item in items]


# -- what each method gets, and the config record's own checks of every value -----------------------------------


def method_options(spec: StudySpec, method: MethodSpec) -> dict[str, Any]:
    """The fixed config values of a method: the study's settings its config has, its kind's, then its own."""
    names = set(field_types(method.config_class))
    names -= {"folds", "fold"} if method.kind not in TRAINED else set()  # rank scores on its own val split
    options = {k: v for k, v in spec.settings.items() if k in names}
    options.update(FIXED_OPTIONS.get(method.kind, {}))
    options.update(method.options)
    return options


def method_axes(spec: StudySpec, method: MethodSpec) -> dict[str, list]:
    """The study's axes that apply to this method, overridden by the method's own."""
    names = set(field_types(method.config_class))
    axes = {k: v for k, v in spec.sweep.items() if k in names and method.kind in AXIS_KINDS.get(k, {method.kind})}
    axes.update(method.sweep)
    return axes


def method_path(method: MethodSpec) -> Key:
    return ("methods", method.index) if method.index is not None else ("methods",)


def option_path(method: MethodSpec, key: str) -> Key | None:
    """Where a method's fixed value ``key`` is written: the method, the settings, or nowhere (its kind's)."""
    if key in method.options:
        return method_path(method) + (key,)
    if key in FIXED_OPTIONS.get(method.kind, {}):
        return None
    return ("settings", key)


def axis_path(method: MethodSpec, key: str) -> Key:
    return method_path(method) + ("sweep", key) if key in method.sweep else ("sweep", key)


def check_value(config_class: type, key: str, value: Any) -> None:
    """``value`` for field ``key`` as the config record checks it (heads through ``parse_head``); else a UserError."""
    if key == "head":
        allowed = HEADS_OF[config_class]
        try:
            parse_head(value, allowed)
        except UserError as exc:
            raise UserError(f"{exc}{suggestion(str(value).partition(':')[0], allowed)}") from None
    elif key == "freeze" and value is not None:
        check_policy(value)
    elif key == "fold":  # its range here; against the method's folds when the plan builds the run
        config_class(fold=value, folds=max(2, int(value) + 1))
        return
    config_class(**{key: value})  # the record's own __post_init__: ranges, choices, augmentations, ratios


def check_values(spec: StudySpec) -> None:
    """Every value each method gets, checked by its config record; a located error for the first bad one."""
    lines = spec.lines or Lines(str(spec.path or "<study>"))
    for method in spec.methods:
        axes = method_axes(spec, method)
        checks = [(key, value, option_path(method, key)) for key, value in method_options(spec, method).items()
                  if key not in axes]
        checks += [(key, value, axis_path(method, key) + (i,)) for key, values in axes.items()
                   for i, value in enumerate(values)]
        for key, value, path in checks:
            if path is None:
                continue
            try:
                check_value(method.config_class, key, value)
            except UserError as exc:
                shared = path[0] in ("settings", "sweep")
                note = f" (for {method.kind} method {method.name!r})" if shared else ""
                raise lines.error(path, f"{exc}{note}") from None
