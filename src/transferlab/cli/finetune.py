"""CLI commands of fine-tuning and of using a saved model: finetune, predict, evaluate, export."""

from __future__ import annotations

import json
import sys

import click

from .common import parse_list, stage_progress


def register(main: click.Group) -> None:
    for command in (finetune, predict, evaluate, export):
        main.add_command(command)


def _epoch_line(record: dict) -> str:
    return (f"epoch {record['epoch']:>3} [{record['stage']}]  loss {record['train_loss']:.4f}  "
            f"acc {record['train_accuracy']:.4f}  val_loss {record['val_loss']:.4f}  "
            f"val_acc {record['val_accuracy']:.4f}  {record['seconds']:.1f}s")


@click.command()
@click.option("--data", "-d", required=True, help="Image folder (class sub-folders, or train/ val/ test/), or 'digits'.")
@click.option("--backbone", "-b", default="efficientnet_lite0", show_default=True, help="Friendly or timm name; small-cnn trains a small CNN from scratch.")
@click.option("--freeze", help="all | none | half | first:N | top:K | two-stage | two-stage:top:K (default: two-stage; none from scratch).")
@click.option("--head", default="linear", show_default=True, help="linear or mlp:512,256.")
@click.option("--dropout", type=float, default=0.2, show_default=True)
@click.option("--pooling", type=click.Choice(["avg", "flatten"]), default="avg", show_default=True)
@click.option("--optimizer", type=click.Choice(["adam", "adamw", "sgd", "rmsprop"]), default="adam", show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--backbone-lr", type=float, help="Learning rate of trainable backbone layers (default: --lr).")
@click.option("--train-bn/--freeze-bn", default=None, help="Update BatchNorm statistics of trainable layers (default: only when training from scratch).")
@click.option("--weight-decay", type=float, default=0.0, show_default=True)
@click.option("--schedule", type=click.Choice(["constant", "cosine", "one-cycle"]), default="constant", show_default=True)
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--epochs", type=int, default=10, show_default=True, help="Maximum epochs (of each stage for two-stage).")
@click.option("--stage2-epochs", type=int, help="two-stage: epochs after unfreezing (default: --epochs).")
@click.option("--stage2-lr", type=float, help="two-stage: learning rate after unfreezing (default: --lr / 100).")
@click.option("--early-stopping", type=click.Choice(["val_loss", "val_accuracy", "none"]), default="val_loss", show_default=True)
@click.option("--patience", type=int, default=10, show_default=True)
@click.option("--augment", help="Comma-separated: flip, rotate, crop.")
@click.option("--class-weights", is_flag=True, help="Weight the loss by inverse class frequency.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--per-class", type=int, help="Keep N training images per class.")
@click.option("--classes", help="Keep these classes (comma-separated).")
@click.option("--num-classes", type=int, help="Keep the first K classes.")
@click.option("--weights", type=click.Path(dir_okay=False), help="State dict file for the backbone.")
@click.option("--random-init", is_flag=True, help="Randomly initialised backbone.")
@click.option("--no-prefix-cache", is_flag=True, help="Recompute the frozen layers every epoch (for comparison).")
@click.option("--output", "-o", type=click.Path(file_okay=False), help="Model folder (default: runs/<backbone>-<policy>-<settings id>).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its last completed epoch.")
@click.option("--workers", type=int, help="Image decoding workers.")
@click.option("--json", "as_json", is_flag=True, help="Print the result (with history) as JSON.")
def finetune(data, backbone, freeze, head, dropout, pooling, optimizer, lr, backbone_lr, train_bn, weight_decay, schedule,
             batch_size, epochs, stage2_epochs, stage2_lr, early_stopping, patience, augment, class_weights, seed,
             per_class, classes, num_classes, weights, random_init, no_prefix_cache, output, resume, workers, as_json):
    """Fine-tune a pretrained backbone with a new head, layers frozen by policy."""
    from ..data.builtin import require_data_folder

    require_data_folder(data)  # before torch loads: a typo costs no wait
    from ..results import print_table, to_json
    from ..finetune.config import FinetuneConfig
    from ..finetune.run import run_finetune

    config = FinetuneConfig(
        data=data, backbone=backbone, freeze=freeze, head=head, dropout=dropout, pooling=pooling,
        optimizer=optimizer, lr=lr, backbone_lr=backbone_lr, train_bn=train_bn, weight_decay=weight_decay, schedule=schedule,
        batch_size=batch_size, epochs=epochs, stage2_epochs=stage2_epochs, stage2_lr=stage2_lr,
        early_stopping=early_stopping, patience=patience, augment=parse_list(augment) or [],
        class_weights=class_weights, seed=seed, per_class=per_class, classes=parse_list(classes),
        num_classes=num_classes, weights=weights, random_init=random_init, prefix_cache=not no_prefix_cache,
        output=output, resume=resume, num_workers=workers,
    )
    echo = (lambda line: click.echo(line, err=True)) if as_json else click.echo
    with stage_progress(sys.stderr.isatty()) as hook:
        result = run_finetune(config, hook, lambda record: echo(_epoch_line(record)))
    if as_json:
        click.echo(to_json(result))
        return
    print_table(f"finetune: {result.backbone}, freeze {result.freeze}, head {result.head}", [
        ("evaluated on", f"{result.evaluated_on} ({result.test_images} images)"),
        ("test accuracy", result.accuracy),
        ("macro F1", result.macro_f1),
        ("epochs run", result.epochs_run),
        ("seconds per epoch", result.seconds_per_epoch),
        ("training seconds", result.training_seconds),
        ("stage 2 starts at epoch", result.stage2_start_epoch or "-"),
        ("layers (frozen at the end)", f"{result.backbone_layers} ({result.frozen_layers})"),
        ("trainable parameters", result.trainable_parameters),
        ("non-trainable parameters", result.frozen_parameters),
        ("inference ms per image", result.inference_ms_per_image),
        ("model saved in", result.model_path),
    ])
    for note in result.notes:
        click.echo(f"note: {note}")


@click.command()
@click.argument("model", type=click.Path())
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--top-k", type=int, default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def predict(model, images, top_k, as_json):
    """Classify new images (files or folders) with a saved MODEL."""
    from ..finetune.use import predict_images

    results = predict_images(model, list(images), top_k=top_k)
    if as_json:
        click.echo(json.dumps(results, indent=2))
        return
    for item in results:
        if "error" in item:
            click.echo(f"{item['image']}: {item['error']}")
            continue
        guesses = ", ".join(f"{g['label']} {g['probability']:.3f}" for g in item["top"])
        click.echo(f"{item['image']}: {guesses}")


@click.command()
@click.argument("model", type=click.Path())
@click.option("--data", "-d", required=True, help="Labelled folder (class sub-folders, or with a test/ split).")
@click.option("--json", "as_json", is_flag=True)
def evaluate(model, data, as_json):
    """Accuracy and confusion matrix of a saved MODEL on a labelled folder."""
    from rich.console import Console
    from rich.table import Table

    from ..data.builtin import require_data_folder

    require_data_folder(data)
    from ..finetune.use import evaluate_folder

    result = evaluate_folder(model, data)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"{result['data']}: accuracy {result['accuracy']:.4f}, macro F1 {result['macro_f1']:.4f} on {result['images']} images")
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
