"""Helpers every command shares: the stderr console, logging, progress bars, list parsing, and the click
options built from the config records. The only place besides the command modules that knows click and rich.

A run option is declared once, as a field of ``ProbeConfig`` or ``FinetuneConfig``
(see ``transferlab.options``); ``config_options`` turns those fields into click
options with the field's default, help, range and choices, and ``config_from``
builds the record back from the parsed values. So a default cannot differ between
the Python API, study files and the command line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import types
import typing
from typing import Any, Callable, Iterable, Iterator

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..errors import UserError

stderr = Console(stderr=True, emoji=False, highlight=False)

log = logging.getLogger("transferlab.cli")


def setup_logging(verbosity: int) -> None:
    """Diagnostics of the ``transferlab`` loggers on stderr: INFO with -v, DEBUG with -vv.

    Without -v logging is left as Python sets it up (warnings reach stderr). Each call
    undoes the previous one, so tests can invoke the command many times in one process.
    """
    package = logging.getLogger("transferlab")  # every module's logger is a child of it
    for handler in [h for h in package.handlers if getattr(h, "_transferlab_cli", False)]:
        package.removeHandler(handler)
    if verbosity <= 0:
        package.setLevel(logging.NOTSET)
        package.propagate = True
        return
    from rich.logging import RichHandler

    handler = RichHandler(console=stderr, show_time=False, show_path=False, markup=False, rich_tracebacks=False)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    handler._transferlab_cli = True  # type: ignore[attr-defined]
    package.addHandler(handler)
    package.setLevel(logging.INFO if verbosity == 1 else logging.DEBUG)
    package.propagate = False  # the root logger would print them a second time


@contextlib.contextmanager
def stage_progress(enabled: bool = True) -> Iterator:
    """A progress hook ``(stage, done, total)`` drawing one bar per stage on stderr."""
    if not enabled:
        yield None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=stderr, transient=True) as bars:
        tasks: dict[str, int] = {}

        def hook(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bars.add_task(stage, total=total)
            bars.update(tasks[stage], completed=done, total=total)

        yield hook


def parse_list(text: str | None) -> list[str] | None:
    return [part.strip() for part in text.split(",") if part.strip()] if text else None


# ---------------------------------------------------------------------------------------------------------------
# Options from config fields


class CommaList(click.ParamType):
    """``a,b,c`` -> ``["a", "b", "c"]`` (an already parsed list passes through)."""

    name = "a,b,..."

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> list[str] | None:
        if value is None or isinstance(value, list):
            return value
        return parse_list(str(value)) or []


class Ratios(click.ParamType):
    """``0.7,0.15,0.15`` -> ``(0.7, 0.15, 0.15)``, checked like the config checks it."""

    name = "train,val,test"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple:
        from ..options import check_ratios

        if isinstance(value, (tuple, list)):
            parts: Any = tuple(value)
        else:
            try:
                parts = tuple(float(p) for p in str(value).split(","))
            except ValueError:
                parts = ()
        try:
            if len(parts) != 3:
                raise UserError("")
            return check_ratios(parts)
        except UserError:
            self.fail(f"three non-negative ratios train,val,test with train and test > 0 (e.g. 0.7,0.15,0.15), "
                      f"got {value!r}", param, ctx)


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    """``(X, True)`` for ``X | None``, else ``(annotation, False)``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(annotation)) == 2:
            return args[0], True
    return annotation, False


def _default_of(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return field.default_factory()  # type: ignore[misc]
    return None


def _show(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return str(value)


class FiniteFloatRange(click.FloatRange):
    """A float in range that is a number: nan and inf are refused (a range check alone lets nan through)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return super().convert(number, param, ctx)


def _number_type(base: type, meta: dict) -> click.ParamType:
    low, high, above = meta.get("minimum"), meta.get("maximum"), meta.get("above")
    if low is None and high is None and above is None:
        return click.INT if base is int else FiniteFloatRange()
    if above is not None and (low is None or above >= low):
        low, open_low = above, True
    else:
        open_low = False
    if base is int:
        if open_low:  # an integer above N is at least N + 1
            low, open_low = int(low) + 1, False
        return click.IntRange(min=None if low is None else int(low), max=None if high is None else int(high))
    return FiniteFloatRange(min=low, max=high, min_open=open_low)


def field_option(field: dataclasses.Field, annotation: Any, extra_decls: tuple[str, ...] = (),
                 param_type: click.ParamType | None = None) -> Callable:
    """The click option of one config field (its parameter name is the field name); ``param_type`` replaces
    the type the annotation gives (e.g. ``click.Path`` for a ``str`` field)."""
    meta = field.metadata
    base, optional = _unwrap_optional(annotation)
    flag = meta.get("flag") or "--" + field.name.replace("_", "-")
    default = _default_of(field)
    kwargs: dict[str, Any] = {"help": meta.get("help") or None, "show_default": True}
    decls = [flag, *extra_decls, field.name]
    if base is bool:
        if "/" in flag:
            kwargs.update(default=default)
        elif default:  # a true default needs a way to turn it off
            decls[0] = f"{flag}/--no-{flag.lstrip('-')}"
            kwargs.update(default=True)
        else:
            kwargs.update(is_flag=True, default=False)
        if default is None:
            kwargs["show_default"] = False
        return click.option(*decls, **kwargs)
    if param_type is not None:
        kwargs["type"] = param_type
    elif meta.get("choices"):
        kwargs["type"] = click.Choice(list(meta["choices"]))
    elif base in (int, float):
        kwargs["type"] = _number_type(base, meta)
    elif typing.get_origin(base) is list:
        kwargs["type"] = CommaList()
    elif typing.get_origin(base) is tuple:
        kwargs["type"] = Ratios()
    elif base is str:
        kwargs["type"] = click.STRING
    else:
        raise TypeError(f"no command-line type for field {field.name}: {annotation!r}")
    if isinstance(default, (list, tuple)):
        # the text the user would type; converted by the type like any value given
        kwargs["default"] = _show(default)  # "" for an empty list, which converts back to []
        kwargs["show_default"] = bool(default)
    else:
        kwargs["default"] = default
        if default is None:
            kwargs["show_default"] = False
    return click.option(*decls, **kwargs)


# Fields that name a file or a folder (shown as FILE and DIRECTORY in --help).
PATH_TYPES: dict[str, click.ParamType] = {
    "weights": click.Path(dir_okay=False),
    "output": click.Path(file_okay=False),
}


def cli_fields(config_class: type, exclude: Iterable[str] = ()) -> list[dataclasses.Field]:
    """The fields of ``config_class`` on the command line, backbone options first, then the command's own,
    then data and runtime options (the order of ``--help``)."""
    from ..options import BackboneOptions, DataOptions, LogOptions, RuntimeOptions

    excluded = set(exclude)
    fields = [f for f in dataclasses.fields(config_class) if f.metadata.get("cli", True) and f.name not in excluded]
    groups = [set(BackboneOptions.__dataclass_fields__), None, set(DataOptions.__dataclass_fields__),
              set(RuntimeOptions.__dataclass_fields__) | set(LogOptions.__dataclass_fields__)]

    def group(f: dataclasses.Field) -> int:
        for i, names in enumerate(groups):
            if names is not None and f.name in names:
                return i
        return 1  # the command's own fields

    return sorted(fields, key=group)  # stable: declaration order within a group


def config_options(config_class: type, exclude: Iterable[str] = (), short: dict[str, str] | None = None,
                   types: dict[str, click.ParamType] | None = None) -> Callable[[Callable], Callable]:
    """A decorator adding one click option per command-line field of ``config_class``.

    ``short`` adds short flags, e.g. ``{"backbone": "-b"}``; ``types`` sets a field's click type (e.g.
    ``click.Path``); ``exclude`` leaves fields out.
    """
    hints = typing.get_type_hints(config_class)
    short, types = short or {}, {**PATH_TYPES, **(types or {})}
    options = [field_option(f, hints[f.name], (short[f.name],) if f.name in short else (), types.get(f.name))
               for f in cli_fields(config_class, exclude)]

    def decorate(function: Callable) -> Callable:
        for option in reversed(options):  # click lists options in the order they are written
            function = option(function)
        return function

    return decorate


def config_from(config_class: type, params: dict[str, Any], **values: Any) -> Any:
    """The config record from a command's parsed options (those that are fields) plus ``values``."""
    names = {f.name for f in dataclasses.fields(config_class)}
    given = {k: v for k, v in params.items() if k in names}
    given.update(values)
    config = config_class(**given)
    log.debug("%s: %s", config_class.__name__, config)
    return config


def print_folds(cross_validation, as_json: bool, predictions: bool, title: str) -> None:
    """A cross-validated run on stdout: JSON (``folds``, ``mean``, ``interval``, ...) or a table."""
    from ..crossval import to_json
    from ..results import print_table

    if as_json:
        click.echo(to_json(cross_validation, predictions=predictions))
        return
    print_table(f"{title}, {len(cross_validation.folds)}-fold cross-validation", cross_validation.table_rows())
    for note in cross_validation.folds[0].notes:
        click.echo(f"note: {note}")
