"""Figure: feature extraction end to end from the JPEG files, and the probe's accuracy in fp32 and auto precision.

Reference: ``ImageFolder`` + timm's eval transform + ``DataLoader(workers)`` + the model's pooled features
(``reset_classifier(0)``), over the same images transferlab's probe extracts (the training and test
images), timed from creating the loader to the last feature.
transferlab: ``transferlab.probe(data, head="logreg", cache=False)`` with ``precision="auto"`` (its
default) and with ``precision="fp32"``; images/s is its own ``images_per_second`` (extraction only: the
loader set-up of each split and every batch, not loading the backbone nor fitting the head).

Usage: ``.venv/bin/python bench/extraction.py [--data DIR] [--per-class N] [--device cpu|cuda]``
"""

from __future__ import annotations

import time

from common import (SummaryRow, fmt, image_folders, pick_device, plain_autocast, plain_inputs,
                    plain_loader, plain_model, plain_transform, ratio_text, run_child, safe_ratio, table)


def probe_paths(data: str, per_class: int | None) -> list[str]:
    """The images ``probe(head="logreg")`` extracts: the training images (``per_class`` of each class) and
    the test images."""
    from transferlab.data import load_dataset

    splits = load_dataset(data, per_class=per_class, seed=0)
    return [str(s.path) for s in splits.train + splits.test]


def reference(data: str, backbone: str, device: str, batch_size: int, per_class: int | None) -> dict:
    import torch

    device = pick_device(device)
    model, loaded = plain_model(backbone, num_classes=0, device=device)
    model.eval()
    dataset = image_folders(data, plain_transform(model), probe_paths(data, per_class))
    count = 0
    started = time.perf_counter()
    features = []
    with torch.no_grad():
        for x, _ in plain_loader(dataset, batch_size, device):
            with plain_autocast(device):
                out = model(plain_inputs(x, device))
            features.append(out.float().cpu())
            count += len(x)
    matrix = torch.cat(features)
    seconds = time.perf_counter() - started
    return {"images": count, "seconds": seconds, "images_per_second": count / seconds, "weights": loaded.weights_source,
            "dim": int(matrix.shape[1])}


def transferlab_probe(data: str, backbone: str, device: str, precision: str, batch_size: int,
                      per_class: int | None) -> dict:
    from common import transferlab_process

    transferlab_process()
    import transferlab

    result = transferlab.probe(data, backbone=backbone, head="logreg", cache=False, device=device,
                               precision=precision, batch_size=batch_size, per_class=per_class)
    return {
        "images": result.features_computed + result.features_from_cache,
        "seconds": result.extraction_seconds,
        "images_per_second": result.images_per_second,
        "accuracy": result.accuracy,
        "test_images": result.test_images,
        "evaluated_on": result.evaluated_on,
        "runtime": result.runtime,
        "weights": result.weights,
        "predictions": {p["path"]: p["predicted"] for p in result.predictions},
        "truth": {p["path"]: p["true"] for p in result.predictions},
    }


def run(args) -> list[SummaryRow]:
    common = dict(data=args.data, backbone=args.backbone, device=args.device, batch_size=args.batch_size,
                  per_class=args.probe_per_class)
    ref = run_child("extraction:reference", **common)
    auto = run_child("extraction:transferlab_probe", precision="auto", **common)
    same = "fp32" not in args.transferlab_precisions  # auto is fp32 here: one run stands for both
    fp32 = auto if same else run_child("extraction:transferlab_probe", precision="fp32", **common)

    def row(name, r, accuracy=None):
        return [name, r["images"], fmt(r["seconds"]), fmt(r["images_per_second"]),
                ratio_text(safe_ratio(r["images_per_second"], ref["images_per_second"])), accuracy or ""]

    auto_rt, fp32_rt = auto["runtime"], fp32["runtime"]
    table(
        f"Feature extraction from JPEG files ({args.backbone}, batch {args.batch_size}, weights: {ref['weights']})",
        ["run", "images", "seconds", "images/s", "vs reference", "probe accuracy"],
        [row("reference: ImageFolder + timm transform + DataLoader, plain model", ref),
         row(f"transferlab probe, precision auto ({_runtime(auto_rt)})", auto, fmt(auto["accuracy"], 4)),
         row(f"transferlab probe, precision fp32 ({_runtime(fp32_rt)})" + (" = the auto run" if same else ""),
             fp32, fmt(fp32["accuracy"], 4))],
        [f"reference: {_reference_setup(args.resolved_device, ref)}",
         "transferlab: probe(..., head='logreg', cache=False); images/s is its extraction of the train and test "
         "images (loader start-up included, backbone loading and head fit excluded)"],
    )
    differ = sorted(p for p in auto["predictions"] if auto["predictions"][p] != fp32["predictions"].get(p))
    correct_auto = round(auto["accuracy"] * auto["test_images"])
    correct_fp32 = round(fp32["accuracy"] * fp32["test_images"])
    print(f"   probe accuracy on {auto['evaluated_on']} ({auto['test_images']} images): "
          f"auto {auto['accuracy']:.4f} ({correct_auto} right), fp32 {fp32['accuracy']:.4f} ({correct_fp32} right): "
          f"{correct_auto - correct_fp32:+d} images; {len(differ)} test image(s) predicted differently")
    for path in differ[:5]:
        print(f"     {path}: true {auto['truth'][path]}, auto {auto['predictions'][path]}, "
              f"fp32 {fp32['predictions'].get(path)}")
    return [
        SummaryRow("extraction, images/s (precision auto)", fmt(auto["images_per_second"]),
                   fmt(ref["images_per_second"]), safe_ratio(auto["images_per_second"], ref["images_per_second"]),
                   f"{_runtime(auto_rt)}; issue's aim: >= 3x with native bf16, >= 1.5x without"),
        SummaryRow("extraction, images/s (precision fp32)", fmt(fp32["images_per_second"]),
                   fmt(ref["images_per_second"]), safe_ratio(fp32["images_per_second"], ref["images_per_second"]),
                   _runtime(fp32_rt)),
        SummaryRow("probe accuracy, auto vs fp32 (test images right)", str(correct_auto), str(correct_fp32), None,
                   f"{len(differ)} of {auto['test_images']} predicted differently; reference column = fp32; "
                   "aim: within one test image"),
    ]


def _runtime(rt: dict) -> str:
    memory = "channels_last" if rt.get("channels_last") else "NCHW"
    return f"{rt.get('device')} {rt.get('precision')} {memory}" + (" compiled" if rt.get("compile") else "")


def _reference_setup(device: str, ref: dict) -> str:
    from common import reference_workers

    where = ("GPU, channels_last + bf16 autocast, pinned memory" if device == "cuda"
             else "fp32, NCHW (on a CPU; on a GPU: channels_last + bf16 autocast + pinned memory)")
    return f"{where}; DataLoader workers {reference_workers()}; {ref['dim']}-d pooled features"


if __name__ == "__main__":
    from run_all import run_alone

    run_alone(run, __doc__)
