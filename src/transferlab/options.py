"""The option records every run is composed of, each field declared once with its default, help and range.

``ProbeConfig`` and ``FinetuneConfig`` are composed of these: the data to use
(``DataOptions``), the backbone (``BackboneOptions``) and where and how it runs
(``RuntimeOptions``). A field's metadata carries its help text, its allowed range
and whether it only changes speed (such fields are left out of a run's identity).
The CLI builds its options from the same fields, and every record checks its values
when it is made, so the Python API, the CLI and study files get the same checks.

Importable without torch: the CLI and the study planner use it before torch loads.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import types
import typing
from dataclasses import dataclass
from typing import Any

from .backbones.names import DEFAULT_BACKBONE
from .errors import UserError


SEED_MAX = 2**32 - 1  # numpy's and scikit-learn's random_state take seeds below 2**32


def option(default: Any = None, help: str = "", *, factory: Any = None, speed_only: bool = False,
           minimum: float | None = None, maximum: float | None = None, above: float | None = None,
           choices: tuple[str, ...] | None = None, flag: str | None = None, cli: bool = True) -> Any:
    """A config field with its metadata.

    ``minimum``/``maximum`` are inclusive bounds, ``above`` an exclusive lower bound;
    ``choices`` the accepted words; ``flag`` the CLI flag when it is not ``--field-name``;
    ``cli=False`` keeps a field out of the command line (set from Python or a study).
    """
    metadata = {"help": help, "speed_only": speed_only, "minimum": minimum, "maximum": maximum, "above": above,
                "choices": choices, "flag": flag, "cli": cli}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def speed_only_fields(config_class: type) -> set[str]:
    """Fields that change how fast a run goes or where it writes, never its result."""
    return {f.name for f in dataclasses.fields(config_class) if f.metadata.get("speed_only")}


def result_fields(config: Any) -> dict[str, Any]:
    """The config's fields that decide its result: all of them but the speed-only ones."""
    skip = speed_only_fields(type(config))
    return {k: v for k, v in dataclasses.asdict(config).items() if k not in skip}


def result_settings(config: Any) -> dict[str, Any]:
    """``result_fields`` and, for a config with a ``recipe``, that recipe's values (they fill in its unset
    options): what a run's identity is made of, so a recipe changed by a new measurement makes new runs."""
    from .finetune.recipes import recipe_values

    settings = result_fields(config)
    if "recipe" in settings:
        settings["recipe_values"] = recipe_values(settings["recipe"])
    return settings


def settings_id(config: Any) -> str:
    """16 hex digits naming the settings that decide a run's result (the default output folder's and log run's
    suffix): equal configs, however given (flags, ``--config`` file, Python), have equal ids."""
    import json

    from .storage import text_digest

    return text_digest(json.dumps(result_settings(config), sort_keys=True, default=str))[:16]


def check_types(config: Any, also: dict[str, tuple[type, ...]] | None = None) -> None:
    """Every field of the declared type (``bool`` is not an integer; an integer is a number), or one UserError
    naming the field and what it takes: the Python API's door, as click's types are the command line's.

    ``also`` lists types a field's own normaliser accepts besides (e.g. a comma-separated string for a list).
    A path object given for a text field (``data=Path(...)``) is kept as its text.
    """
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value, hint = getattr(config, f.name), hints.get(f.name, Any)
        if isinstance(value, os.PathLike) and _is_a("", hint):
            value = os.fspath(value)
            setattr(config, f.name, value)
        if isinstance(value, (also or {}).get(f.name, ())) or _is_a(value, hint):
            continue
        raise UserError(f"{f.name} must be {describe_type(hint)}, got {_show_type(value)}")


def _is_a(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_is_a(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return _is_bool(value)
    if hint is int:
        return isinstance(value, numbers.Integral) and not _is_bool(value)
    if hint is float:
        return isinstance(value, numbers.Real) and not _is_bool(value)
    if hint is str:
        return isinstance(value, str)
    if origin is list:
        return isinstance(value, (list, tuple)) and all(_is_a(item, args[0]) for item in value)
    if origin is tuple:
        return (isinstance(value, (list, tuple)) and len(value) == len(args)
                and all(_is_a(item, arg) for item, arg in zip(value, args)))
    return True  # a type this check does not know: the record's own checks decide


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool) or type(value).__name__ in ("bool", "bool_")  # numpy's bool is no Python bool


def describe_type(annotation: Any, none: str = "None") -> str:
    """A field's type in words, as refusals say it (``none``: how the file or API at hand writes None)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        parts = [describe_type(a, none) for a in typing.get_args(annotation) if a is not type(None)]
        return " or ".join(parts) + (f" (or {none})" if type(None) in typing.get_args(annotation) else "")
    if origin is list:
        return f"a list of {describe_type(typing.get_args(annotation)[0], none)}"
    if origin is tuple:
        args = typing.get_args(annotation)
        plural = {float: "numbers", int: "integers", str: "texts"}.get(args[0], describe_type(args[0], none))
        return f"a list of {len(args)} {plural}"
    return {str: "text", int: "an integer", float: "a number", bool: "true or false"}.get(annotation, str(annotation))


def _show_type(value: Any) -> str:
    shown = repr(value) if not isinstance(value, int) or abs(value) < 10**20 else "a huge integer"
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    kind = {bool: "true/false", str: "text", int: "integer", float: "number", list: "list", tuple: "tuple",
            dict: "mapping"}.get(type(value), type(value).__name__)
    return shown if value is None else f"{kind} {shown}"


def check_ranges(config: Any) -> None:
    """Every numeric field within its declared range, every word among its choices; else a UserError."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        meta = f.metadata
        if value is None or isinstance(value, bool):
            continue
        name = f.name
        if isinstance(value, (int, float)):
            if isinstance(value, float) and not math.isfinite(value):
                raise UserError(f"{name} must be a finite number, got {value}")
            if meta.get("minimum") is not None and value < meta["minimum"]:
                raise UserError(f"{name} must be at least {_number(meta['minimum'])}, got {_number(value)}")
            if meta.get("maximum") is not None and value > meta["maximum"]:
                raise UserError(f"{name} must be at most {_number(meta['maximum'])}, got {_number(value)}")
            if meta.get("above") is not None and value <= meta["above"]:
                raise UserError(f"{name} must be greater than {_number(meta['above'])}, got {_number(value)}")
        if meta.get("choices") and isinstance(value, str) and value not in meta["choices"]:
            raise UserError(f"unknown {name} {value!r}: use one of {', '.join(meta['choices'])}")


def _number(value: float) -> str:
    """A bound or value as a user wrote it: whole numbers in full (a seed's 4294967295, not 4.29497e+09)."""
    if isinstance(value, int) and abs(value) >= 10**20:  # str() of a huge integer is itself refused by Python
        return f"a number of about {int(value.bit_length() * 0.30103) + 1:,} digits"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e16):
        return str(int(value))
    return f"{value:g}"


def check_folds(config: Any) -> None:
    """``folds`` K >= 2, and a ``fold`` comes with its K and lies in 0..K-1; else a UserError."""
    folds, fold = config.folds, config.fold
    if folds is not None and folds < 2:
        raise UserError(f"folds must be at least 2, got {folds}")
    if fold is not None:
        if folds is None:
            raise UserError(f"fold {fold} needs folds (the number of folds K), e.g. folds: 5")
        if not 0 <= fold < folds:
            raise UserError(f"fold must be between 0 and {folds - 1} for {folds} folds, got {fold}")


def check_ratios(ratios: tuple[float, float, float]) -> tuple[float, float, float]:
    parts = tuple(float(r) for r in ratios)
    if len(parts) != 3 or not all(math.isfinite(p) and p >= 0 for p in parts) or parts[0] <= 0 or parts[2] <= 0:
        raise UserError(f"split ratios must be three non-negative numbers train,val,test with train and test > 0, "
                        f"got {ratios!r}")
    return parts  # type: ignore[return-value]


@dataclass
class DataOptions:
    """Which images a run uses and how a folder without given splits is split."""

    data: str = option("digits", "Image folder (one sub-folder per class, or train/ val/ test/), a .csv/.tsv list, tar "
                       "shards ('train-{000..009}.tar', a folder of train-*/test-*.tar), hf:PATH (a Hugging Face "
                       "dataset saved to disk or parquet), or 'digits'.",
                       cli=False)
    seed: int = option(0, "Seed of the split, the sampling and the training.", minimum=0, maximum=SEED_MAX)
    per_class: int | None = option(None, "Train on N images per class, for every method (a validation set is "
                                   "never carved out of them).", minimum=1)
    classes: list[str] | None = option(None, "Keep these classes (comma-separated).")
    num_classes: int | None = option(None, "Keep the first K classes.", minimum=2)
    ratios: tuple[float, float, float] = option((0.7, 0.15, 0.15), "Train,val,test ratios for a folder without "
                                                "given splits (on a folder with train/ and val/ or test/ only: the "
                                                "validation share carved from train/).", flag="--split")
    val_per_class: int | None = option(None, "Validation images per class (split off, carved from train/, or cut "
                                       "from a given val/).", minimum=1)
    test_per_class: int | None = option(None, "Test images per class (split off, or cut from a given test/).",
                                        minimum=1)
    folds: int | None = option(None, "Stratified K-fold cross-validation over all images (given train/val/test "
                               "splits are pooled): run every fold, report each and their mean.", minimum=2)
    fold: int | None = option(None, "Only this fold (0..K-1) of --folds: a study axis.", minimum=0, cli=False)


@dataclass
class BackboneOptions:
    """Which pretrained network, with which weights."""

    backbone: str = option(DEFAULT_BACKBONE, "Friendly name (vgg16, resnet50, ...) or any timm model name.")
    weights: str | None = option(None, "State dict file (safetensors or torch) for the backbone.")
    random_init: bool = option(False, "Randomly initialised backbone (a baseline).")
    image_size: int | None = option(None, "Input resolution in pixels: images are resized to N / crop_pct and "
                                    "centre-cropped to N x N (default: the weights' own, e.g. 224; a ViT's "
                                    "position embeddings are resampled).", minimum=16, maximum=1024)


@dataclass
class RuntimeOptions:
    """Where and how the network runs: none of these change what is computed beyond floating-point noise,
    except ``precision``."""

    device: str = option("auto", "auto, cpu, cuda, cuda:N or mps (auto: a GPU when there is one).",
                         speed_only=True)
    precision: str = option("auto", "auto, fp32, bf16 or fp16 (auto: on CUDA bf16 where supported, else fp16; on a CPU "
                            "bf16 where it computes bf16 natively, else fp32; fp32 on MPS).",
                            choices=("auto", "fp32", "bf16", "fp16"))
    compile: bool = option(False, "torch.compile the model (pays off on long runs: compiling takes seconds to "
                           "minutes).", speed_only=True)
    batch_size: int = option(32, "Images per batch.", minimum=1)
    num_workers: int | None = option(None, "Image decoding workers (default: cores - 1, at most 4).",
                                     speed_only=True, minimum=0, flag="--workers")


@dataclass
class LogOptions:
    """Where a run's epochs, parameters and final metrics are logged besides its result (TensorBoard,
    MLflow, W&B): speed-only, as logging never changes a result."""

    log: list[str] = option(help="Also log the epochs, parameters, final metrics and figures (and a fine-tune's "
                            "saved model) to tensorboard, mlflow or wandb (comma-separated for several; each an "
                            "optional extra: pip install 'transferlab[mlflow]'; W&B offline: WANDB_MODE=offline).",
                            factory=list, speed_only=True)
    log_dir: str | None = option(None, "Where --log writes: TensorBoard event files under DIR/<experiment>/<run> "
                                 "(default runs/tensorboard); MLflow a SQLite store DIR/mlflow.db, or DIR as a "
                                 "tracking URI (default: $MLFLOW_TRACKING_URI, else ./mlflow.db); W&B its files "
                                 "under DIR/wandb (default: $WANDB_DIR, else ./wandb).", speed_only=True)
    log_experiment: str | None = option(None, "Experiment name of --log (default: the command, or the study's "
                                        "name).", speed_only=True)
    log_run: str | None = option(None, "Run name of --log (default: backbone, method and settings id; in a "
                                 "study: method/run id).", speed_only=True, cli=False)

    def __post_init__(self) -> None:
        check_logging(self)


def check_logging(config: Any) -> None:
    """``log`` names known backends; else a UserError."""
    from .tracking import check_backends

    config.log = check_backends(config.log or [])


def runtime_of(options: RuntimeOptions):
    """The ``Runtime`` these options ask for, resolved on this machine (imports torch)."""
    from .engine import resolve_runtime

    return resolve_runtime(options.device, options.precision, compile=options.compile)
