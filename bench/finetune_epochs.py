"""Figure: fine-tuning seconds per epoch with ``--freeze none``, ``half`` and ``all``.

transferlab: ``run_finetune(FinetuneConfig(freeze=..., epochs=E, early_stopping="none", per_class=N))``
with its defaults otherwise (Adam, lr 1e-3, batch 32, no augmentation, so the frozen-prefix cache is on
for ``half`` and ``all``); seconds per epoch is its history's mean (each epoch trains on the training
images and evaluates the validation images), and "whole training" its ``training_seconds``, which also
holds the one-off computation of the frozen-prefix cache.
Reference: the plain training loop on exactly the same training and validation images (transferlab's own
split of the data): ``ImageFolder`` + timm's eval transform + ``DataLoader(shuffle, workers)``, the same
model and weights with a new classifier, the same freeze units (timm's parameter groups, first n//2 for
``half``) set to ``requires_grad=False``, ``model.train()``, Adam (lr 1e-3) over the trainable
parameters, cross-entropy; each epoch a training pass and a validation pass under ``no_grad``. fp32 NCHW on
a CPU, channels_last + bf16 autocast + pinned memory on a GPU.

With ``--augment flip,crop`` both train on augmented images: the reference through timm's training transform
(``create_transform(is_training=True)``: random resized crop, flip; PIL, every image decoded every epoch),
transferlab through its tensor augmentation on images it decoded once.

Usage: ``.venv/bin/python bench/finetune_epochs.py [--per-class 20] [--epochs 2] [--freeze none,half,all]
[--augment flip,crop]``
"""

from __future__ import annotations

import tempfile
import time

from common import (SummaryRow, fmt, image_folders, pick_device, plain_autocast, plain_inputs, plain_loader,
                    plain_model, plain_transform, ratio_text, run_child, safe_ratio, sync, table)


def reference(data: str, backbone: str, device: str, freeze: str, epochs: int, batch_size: int,
              per_class: int | None, augment: str = "") -> dict:
    import torch

    from transferlab.data import load_dataset
    from transferlab.finetune.freeze import plan_stages

    device = pick_device(device)
    splits = load_dataset(data, per_class=per_class, seed=0, validation=True)  # transferlab's own split
    train, val = splits.train, splits.val
    model, loaded = plain_model(backbone, num_classes=len(splits.classes), device=device)
    units = loaded.units
    frozen = plan_stages(freeze, len(units))[0].frozen_units
    frozen_names = {name for unit in units[:frozen] for name in unit.parameter_names}
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name not in frozen_names)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    transform = plain_transform(model)
    train_transform = plain_training_transform(model, augment) if augment else transform
    train_set = image_folders(data, train_transform, [s.path for s in train])
    val_set = image_folders(data, transform, [s.path for s in val])
    history = []
    for _ in range(epochs):
        started = time.perf_counter()
        model.train()
        for x, y in plain_loader(train_set, batch_size, device, shuffle=True):
            x, y = plain_inputs(x, device), y.to(device, non_blocking=True)
            with plain_autocast(device):
                logits = model(x)
            loss = loss_fn(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in plain_loader(val_set, batch_size, device):
                with plain_autocast(device):
                    logits = model(plain_inputs(x, device))
                correct += int((logits.float().argmax(1).cpu() == y).sum())
        sync(device)
        history.append({"seconds": time.perf_counter() - started, "val_accuracy": correct / max(1, len(val_set))})
    seconds = [h["seconds"] for h in history]
    return {"seconds_per_epoch": sum(seconds) / len(seconds), "training_seconds": sum(seconds), "history": history,
            "train_images": len(train_set), "val_images": len(val_set), "frozen_units": frozen,
            "units": len(units), "trainable_parameters": sum(p.numel() for p in trainable)}


def plain_training_transform(model, augment: str):
    """timm's training transform as a user writes it: random resized crop when asked, else the eval framing."""
    from timm.data import create_transform, resolve_data_config

    names = augment.split(",")
    return create_transform(**resolve_data_config(model=model), is_training=True, scale=(0.7, 1.0) if "crop" in names
                            else (1.0, 1.0), ratio=(3 / 4, 4 / 3) if "crop" in names else (1.0, 1.0),
                            hflip=0.5 if "flip" in names else 0.0, color_jitter=None)


def transferlab_run(data: str, backbone: str, device: str, precision: str, freeze: str, epochs: int,
                    batch_size: int, per_class: int | None, augment: str = "") -> dict:
    from common import transferlab_process

    transferlab_process()
    from transferlab.finetune import FinetuneConfig, run_finetune

    with tempfile.TemporaryDirectory() as out:
        config = FinetuneConfig(data=data, backbone=backbone, freeze=freeze, epochs=epochs, early_stopping="none",
                                per_class=per_class, device=device, precision=precision, batch_size=batch_size,
                                augment=augment, output=out)
        result = run_finetune(config)
    return {"seconds_per_epoch": result.seconds_per_epoch, "training_seconds": result.training_seconds,
            "history": [{"seconds": h["seconds"], "val_accuracy": h.get("val_accuracy")} for h in result.history],
            "train_images": result.train_images, "val_images": result.val_images,
            "frozen_units": result.frozen_layers, "units": result.backbone_layers,
            "trainable_parameters": result.trainable_parameters, "prefix_cache_used": result.prefix_cache_used,
            "accuracy": result.accuracy, "runtime": result.runtime,
            "notes": [n for n in result.notes if n.startswith("frozen-prefix")]}


def run(args) -> list[SummaryRow]:
    policies = [p.strip() for p in args.freeze.split(",") if p.strip()]
    common = dict(data=args.data, backbone=args.backbone, device=args.device, epochs=args.epochs,
                  batch_size=args.batch_size, per_class=args.per_class, augment=args.augment)
    precisions = args.transferlab_precisions
    rows, summary = [], []
    for policy in policies:
        ref = run_child("finetune_epochs:reference", freeze=policy, **common)
        rows.append([f"{policy}: reference plain loop", f"{ref['frozen_units']}/{ref['units']}",
                     f"{ref['train_images']}/{ref['val_images']}", fmt(ref["seconds_per_epoch"], 2), "1.00x",
                     fmt(ref["training_seconds"], 1), "1.00x", _val(ref)])
        for precision in precisions:
            tl = run_child("finetune_epochs:transferlab_run", freeze=policy, precision=precision, **common)
            speedup = safe_ratio(ref["seconds_per_epoch"], tl["seconds_per_epoch"])
            whole = safe_ratio(ref["training_seconds"], tl["training_seconds"])
            rt = tl["runtime"]
            label = f"{policy}: transferlab {precision} ({rt['precision']}" + (
                ", prefix cache" if tl["prefix_cache_used"] and policy != "none" else "") + ")"
            rows.append([label, f"{tl['frozen_units']}/{tl['units']}", f"{tl['train_images']}/{tl['val_images']}",
                         fmt(tl["seconds_per_epoch"], 2), ratio_text(speedup), fmt(tl["training_seconds"], 1),
                         ratio_text(whole), _val(tl)])
            summary.append(SummaryRow(f"fine-tune --freeze {policy}, s/epoch (precision {precision})",
                                      fmt(tl["seconds_per_epoch"], 2), fmt(ref["seconds_per_epoch"], 2), speedup,
                                      f"whole {args.epochs}-epoch training {ratio_text(whole)}"))
    table(f"Fine-tuning seconds per epoch ({args.backbone}, {args.per_class} training images per class, validation "
          f"images carved apart, {args.epochs} epochs, batch {args.batch_size}, early stopping off"
          + (f", augment {args.augment}" if args.augment else "") + ")",
          ["run", "frozen units", "train/val", "s/epoch", "speed-up", "whole training s", "speed-up",
           "val accuracy per epoch"], rows,
          ["speed-up = reference seconds / transferlab seconds (>1: transferlab faster)",
           "whole training: transferlab's training_seconds (frozen-prefix cache computed once, included); "
           "reference: the sum of its epochs",
           "reference: " + ("channels_last + bf16 autocast + pinned memory" if args.resolved_device == "cuda"
                            else "fp32 NCHW") + ", Adam lr 1e-3, frozen units requires_grad=False, model.train()"])
    return summary


def _val(r: dict) -> str:
    return " ".join(fmt(h["val_accuracy"], 3) if h.get("val_accuracy") is not None else "-" for h in r["history"])


if __name__ == "__main__":
    from run_all import run_alone

    run_alone(run, __doc__)
