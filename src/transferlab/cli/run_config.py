"""``--config FILE`` and ``--print-config`` of ``probe`` and ``finetune``: one run's settings in a YAML file.

The file holds the same keys as a study's method (the fields of ``ProbeConfig`` or
``FinetuneConfig``, plus ``data`` and ``backbone``), read by the study's YAML loader and
checked by the same records, so a mistake is one ``error: FILE:LINE: ...`` line. Lists
may be written as YAML lists or in the command line's comma form (``augment: flip,rotate``).
Paths are read as the flags read them (relative to the current folder). A flag given on the
command line overrides the file's value; a flag left at its default does not.

``--print-config`` prints every field of the resolved record as YAML that ``--config``
reads back, headed by the run's settings id (the default output folder's suffix).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import click

from ..errors import UserError

KIND_KEY = "kind"  # a study method's kind may stay in the file if it names this command


def config_file_options(function):
    """The ``--config`` and ``--print-config`` options of a run command."""
    function = click.option("--print-config", is_flag=True,
                            help="Print the resolved config (the file's values, then the flags given) as YAML that "
                                 "--config reads back, and exit without running.")(function)
    return click.option("--config", "config_file", type=click.Path(dir_okay=False),
                        help="YAML file of settings: the keys of a study's method (the options' names with "
                             "underscores, e.g. lr: 1e-3, augment: flip,rotate); flags given override it.")(function)


def file_values(path: str, config_class: type, command: str) -> dict[str, Any]:
    """The settings in ``path``, each converted to its field's type and checked by the record; else a located
    UserError."""
    from ..study.schema import coerce, field_types, unknown_key
    from ..study.spec import check_value
    from ..study.yaml_nodes import load_located

    file = Path(path)
    if not file.is_file():
        raise UserError(f"{path}: no config file there" if not file.exists() else f"{path}: not a regular file")
    value, lines = load_located(file)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise lines.error((), f"a config file must be a mapping of settings to values, got {type(value).__name__}")
    fields = field_types(config_class)
    result: dict[str, Any] = {}
    for key, item in value.items():
        if key == KIND_KEY:
            if item != command:
                raise lines.error((key,), f"kind {item!r} in a config file of {command}: use kind: {command} "
                                          "or leave it out")
            continue
        if key not in fields:
            named = _flag_fields(config_class).get(str(key).lstrip("-").replace("_", "-"))
            if named is not None:
                raise lines.error((key,), f"unknown key {key!r} in the config file: the option --"
                                          f"{str(key).lstrip('-').replace('_', '-')} is written {named}: VALUE")
            raise unknown_key(lines, (key,), "the config file", fields)
        result[key] = coerce(item, fields[key], lines, (key,), key)
        if result[key] is None:
            continue  # unset (coerce checked the field takes None); fold/folds pairs are checked by the record
        try:
            check_value(config_class, key, result[key])
        except UserError as exc:
            raise lines.error((key,), str(exc)) from None
    return result


def _flag_fields(config_class: type) -> dict[str, str]:
    """Each field's command-line flag (without dashes) to the field's name: ``split`` -> ``ratios``."""
    names = {}
    for f in dataclasses.fields(config_class):
        flag = (f.metadata.get("flag") or "--" + f.name.replace("_", "-")).split("/")[0]
        names[flag.lstrip("-")] = f.name
    return names


def merged_options(options: dict[str, Any], config_class: type, command: str) -> dict[str, Any]:
    """The command's parsed options with ``--config``'s values in place of every option the user did not give."""
    path = options.pop("config_file", None)
    if path is None:
        return options
    ctx = click.get_current_context()
    from_file = file_values(path, config_class, command)
    merged = dict(options)
    for key, value in from_file.items():
        if key not in options or ctx.get_parameter_source(key) in (None, click.core.ParameterSource.DEFAULT):
            merged[key] = value
    return merged


def command_config(options: dict[str, Any], config_class: type, command: str, print_config: bool,
                   **values: Any) -> Any | None:
    """The run's config record from the command line and ``--config``, checked before any heavy import; ``None``
    once ``--print-config`` has printed it (the command then stops)."""
    from ..data.builtin import require_data_folder
    from .common import config_from

    options = merged_options(options, config_class, command)
    require_data(options)
    config = config_from(config_class, options, **values)
    if print_config:
        click.echo(config_yaml(config), nl=False)
        return None
    require_data_folder(config.data)  # before torch loads: a typo costs no wait
    return config


def require_data(options: dict[str, Any]) -> None:
    if not options.get("data"):
        raise UserError("no data: give --data (-d) or 'data:' in the --config file")


def config_yaml(config: Any) -> str:
    """Every field of ``config`` as YAML ``--config`` reads back, headed by its settings id."""
    import yaml

    from ..options import settings_id
    from .common import cli_fields

    names = ["data", *(f.name for f in cli_fields(type(config)))]  # the order of --help
    names += [f.name for f in dataclasses.fields(config) if f.name not in names]
    values = {name: _plain(getattr(config, name)) for name in names}
    header = f"# {type(config).__name__}, settings id {settings_id(config)}\n"
    return header + yaml.safe_dump(values, sort_keys=False, default_flow_style=None, allow_unicode=True)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
