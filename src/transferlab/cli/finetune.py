"""CLI commands of fine-tuning and of using a saved model: finetune, predict, evaluate, export.

Defined at module level; ``cli.main`` registers ``COMMANDS`` (this module never imports it).
"""

from __future__ import annotations

import json
import sys

import click

from ..finetune.config import FinetuneConfig
from ..options import RuntimeOptions
from ..tta import TTA_HELP, check_views
from .common import config_from, config_options, print_folds, stage_progress
from .run_config import command_config, config_file_options

# --device, --precision and --batch-size of the commands that use a saved model
runtime_options = config_options(RuntimeOptions, exclude=("num_workers",))
tta_option = click.option("--tta", type=int, default=1, show_default=True, metavar="N", help=TTA_HELP)


def _runtime(options: dict):
    from ..options import runtime_of

    return runtime_of(config_from(RuntimeOptions, options))


def _epoch_line(record: dict) -> str:
    return (f"epoch {record['epoch']:>3} [{record['stage']}]  loss {record['train_loss']:.4f}  "
            f"acc {record['train_accuracy']:.4f}  val_loss {record['val_loss']:.4f}  "
            f"val_acc {record['val_accuracy']:.4f}  {record['seconds']:.1f}s")


@click.command()
@click.option("--data", "-d", help=FinetuneConfig.__dataclass_fields__["data"].metadata["help"] + " Required, "
              "here or in --config.")
@config_options(FinetuneConfig, short={"backbone": "-b", "output": "-o"})
@click.option("--json", "as_json", is_flag=True, help="Print the result (with history) as JSON.")
@config_file_options
def finetune(as_json: bool, print_config: bool, **options) -> None:
    """Fine-tune a pretrained backbone with a new head, layers frozen by policy."""
    config = command_config(options, FinetuneConfig, "finetune", print_config)
    if config is None:
        return
    from ..finetune.run import run_finetune
    from ..options import runtime_of
    from ..results import pair_text, print_table, to_json
    from ..timing import phases_text

    runtime = runtime_of(config)  # under torchrun: joins the process group
    echo = (lambda line: click.echo(line, err=True)) if as_json else click.echo
    if config.folds:
        from ..crossval import run_folds

        with stage_progress(sys.stderr.isatty() and runtime.is_main) as hook:
            folds = run_folds(config, lambda c, p: run_finetune(c, p, lambda record: echo(_epoch_line(record)),
                                                                runtime), hook)
        if runtime.is_main:
            print_folds(folds, as_json, True, f"finetune: {config.backbone}, freeze {config.freeze or 'default'}")
        return
    with stage_progress(sys.stderr.isatty() and runtime.is_main) as hook:
        result = run_finetune(config, hook, lambda record: echo(_epoch_line(record)), runtime)
    if not runtime.is_main:
        return  # another process of a torchrun job: rank 0 prints
    if as_json:
        click.echo(to_json(result))
        return
    print_table(f"finetune: {result.backbone}, freeze {result.freeze}, head {result.head}", [
        ("evaluated on", f"{result.evaluated_on} ({result.test_images} images)"),
        ("recipe", result.recipe),
        ("runs on", result.runs_on),
        (f"test {result.accuracy_row()[0]}", result.accuracy_text()),
        *(result.multilabel_rows() or [("macro F1", result.macro_f1)]),
        ("test-time augmentation accuracy", result.tta_text()),
        ("calibration error (ECE, 15 bins)", result.calibration_text()),
        ("epochs run", result.epochs_run),
        ("seconds per epoch", result.seconds_per_epoch),
        ("training, total (frozen prefix)", result.training_text()),
        ("final train / val accuracy", pair_text(result.train_accuracy_final, result.val_accuracy_final)),
        ("test loss", result.test_loss if result.test_loss is not None else "n/a"),
        ("test set inference seconds", result.test_text()),
        ("stage 2 starts at epoch", result.stage2_start_epoch or "-"),
        ("layers (frozen at the end)", f"{result.backbone_layers} ({result.frozen_layers})"),
        ("trainable parameters", result.trainable_parameters),
        ("non-trainable parameters", result.frozen_parameters),
        ("inference ms per image (batch of 16, warm)", result.inference_ms_per_image),
        ("seconds by phase", phases_text(result.phase_seconds())),
        ("model saved in", result.model_path),
    ])
    for note in result.notes:
        click.echo(f"note: {note}")


@click.command()
@click.argument("model", type=click.Path())
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--top-k", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--gradcam", type=click.Path(file_okay=False), default=None,
              help="Write a Grad-CAM heat map of each image's top class over the image, as PNGs in this new folder.")
@tta_option
@runtime_options
@click.option("--json", "as_json", is_flag=True)
def predict(model, images, top_k, gradcam, tta, as_json, **options):
    """Classify new images (files or folders) with a saved MODEL."""
    from ..finetune.use import predict_images

    results = predict_images(model, list(images), top_k=top_k, batch_size=options["batch_size"],
                             runtime=_runtime(options), gradcam=gradcam, tta=check_views(tta))
    if as_json:
        click.echo(json.dumps(results, indent=2))
        return
    for item in results:
        if "error" in item:
            click.echo(f"{item['image']}: {item['error']}")
            continue
        shown = item.get("labels", item["top"])  # a multi-label model: every label over its threshold
        guesses = ", ".join(f"{g['label']} {g['probability']:.3f}" for g in shown) or "no label over the threshold"
        click.echo(f"{item['image']}: {guesses}")
    if gradcam:
        click.echo(f"Grad-CAM heat maps of the top classes in {gradcam}")


@click.command()
@click.argument("model", type=click.Path())
@click.option("--data", "-d", required=True,
              help="Labelled folder (class sub-folders, or with a test/ split), or 'digits'.")
@tta_option
@runtime_options
@click.option("--json", "as_json", is_flag=True)
def evaluate(model, data, tta, as_json, **options):
    """Accuracy and confusion matrix of a saved MODEL on a labelled folder."""
    from rich.console import Console
    from rich.table import Table

    from ..data.builtin import require_data_folder

    check_views(tta)
    require_data_folder(data)
    from ..finetune.use import evaluate_folder

    result = evaluate_folder(model, data, batch_size=options["batch_size"], runtime=_runtime(options), tta=tta)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    from ..stats import interval_text

    click.echo(f"{result['data']}: accuracy {result['accuracy']:.4f} {interval_text(*result['accuracy_interval'])} "
               f"(95% Wilson), macro F1 {result['macro_f1']:.4f} on {result['images']} images")
    calibrated = result["calibration_temperature"] != 1.0
    click.echo(f"calibration error (ECE, 15 bins) {result['ece']:.4f}"
               + (f" with the saved temperature {result['calibration_temperature']:.3g}" if calibrated else ""))
    if "tta_accuracy" in result:
        click.echo(f"test-time augmentation ({result['tta']} views): accuracy {result['tta_accuracy']:.4f}, "
                   f"gain {result['tta_accuracy'] - result['accuracy']:+.4f} over the plain view")
    table = Table("true \\ predicted", *result["classes"], title="confusion matrix", title_justify="left")
    for name, row in zip(result["classes"], result["confusion_matrix"]):
        table.add_row(name, *map(str, row))
    Console().print(table)


@click.command()
@click.argument("model", type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["onnx", "torchscript"]), required=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Output file (default: inside the model folder).")
def export(model, fmt, output):
    """Export a saved MODEL to ONNX or TorchScript, checked against PyTorch."""
    from ..finetune.export import export_model

    result = export_model(model, fmt, output)
    click.echo(f"wrote {result['path']} ({result['format']}); max probability difference from PyTorch {result['max_abs_difference']:.2e}")




@click.command("lr-find")
@click.option("--data", "-d", help=FinetuneConfig.__dataclass_fields__["data"].metadata["help"] + " Required, "
              "here or in --config.")
@config_options(FinetuneConfig, short={"backbone": "-b", "output": "-o"})
@click.option("--start-lr", type=float, default=1e-7, show_default=True, help="Lowest rate of the sweep.")
@click.option("--end-lr", type=float, default=10.0, show_default=True, help="Highest rate of the sweep.")
@click.option("--steps", type=click.IntRange(min=8), default=100, show_default=True,
              help="Optimizer steps of each stage's sweep (it stops early once the loss diverges).")
@click.option("--json", "as_json", is_flag=True, help="Print the suggestions as JSON.")
@config_file_options
def lr_find(start_lr: float, end_lr: float, steps: int, as_json: bool, print_config: bool, **options) -> None:
    """Learning-rate range test of each stage of a finetune run: a loss-against-rate plot (PNG in --output, default
    runs/lr-find-...) and a suggested rate (fastai's valley); two-stage sweeps stage 2 after training stage 1."""
    config = command_config(options, FinetuneConfig, "finetune", print_config)
    if config is None:
        return
    from dataclasses import asdict

    from ..finetune.lr_find import find_lr
    from ..options import runtime_of

    runtime = runtime_of(config)
    with stage_progress(sys.stderr.isatty() and runtime.is_main) as hook:
        sweeps = find_lr(config, start_lr, end_lr, steps, hook, runtime)
    if not runtime.is_main:
        return
    if as_json:
        click.echo(json.dumps([asdict(s) for s in sweeps], indent=2))
        return
    for s in sweeps:
        if not s.plot:
            click.echo(f"stage {s.stage}: the head fitted as the probe's logistic regression (--head-init probe): "
                       "no learning rate to find")
            continue
        suggestion = f"{s.suggestion:.3g}" if s.suggestion is not None else "none (too few steps before divergence)"
        steepest = f", steepest descent {s.steepest:.3g}" if s.steepest is not None else ""
        click.echo(f"stage {s.stage}: suggested lr {suggestion}{steepest} (set now: {s.configured_lr:.3g}); "
                   f"{s.steps} steps; plot {s.plot}")



@click.command()
@click.argument("model", type=click.Path())
@click.argument("repo_id")
@click.option("--dry-run", is_flag=True, help="Write the folder it would push (--output) and push nothing.")
@click.option("--output", "-o", type=click.Path(), help="Write the pushed folder here too (a new or empty folder; "
              "required with --dry-run).")
@click.option("--private", is_flag=True, help="Create the Hub repository as private (when it does not exist yet).")
def push(model, repo_id, dry_run, output, private):
    """Share a saved MODEL on the Hugging Face Hub as REPO_ID (USER/NAME), with a model card.

    The repository holds the model in timm's layout (timm.create_model("hf-hub:REPO_ID", pretrained=True)
    loads a linear head's), transferlab's description, and README.md: the card, with the metrics and their 95%
    intervals, the training config, intended use and limitations. Logs in as huggingface_hub does (HF_TOKEN,
    or `hf auth login`)."""
    from ..finetune.share import push_model

    result = push_model(model, repo_id, dry_run=dry_run, output=output, private=private)
    if dry_run:
        click.echo(f"dry run: wrote {result['folder']} ({', '.join(result['files'])}); pushed nothing")
    else:
        click.echo(f"pushed {', '.join(result['files'])} to {result['url']}")


COMMANDS = (finetune, predict, evaluate, export, push, lr_find)
