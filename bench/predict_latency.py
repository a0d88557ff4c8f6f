"""Figure: predict latency for one image (file to top-3), in milliseconds.

A model bundle is made first by a quick ``run_finetune(freeze="all", epochs=1)``. Reference: the bundle
loaded by plain timm (``timm.create_model("local-dir:BUNDLE", pretrained=True)``), then per call
``PIL.Image.open(...).convert("RGB")`` + timm's eval transform + the model on a batch of one + softmax
top-3 (fp32 NCHW on a CPU; channels_last + bf16 autocast on a GPU). transferlab:
``transferlab.finetune.use.predict_images(bundle, [path], runtime=resolve_runtime(device, precision))``
with the bundle loaded once (``load_bundle``), precision ``auto`` and ``fp32``; and, as the CLI does it
per command, with the bundle's folder (loading included). Each: median over N calls after a warm-up,
cycling through different test images.

Usage: ``.venv/bin/python bench/predict_latency.py [--predict-runs 30] [--device cpu|cuda]``
"""

from __future__ import annotations

import tempfile

from common import SummaryRow, fmt, median_ms, pick_device, ratio_text, run_child, safe_ratio, table


def make_bundle(data: str, backbone: str, device: str, out: str, per_class: int, images: int) -> dict:
    from common import transferlab_process

    transferlab_process()
    from transferlab.finetune import FinetuneConfig, run_finetune

    result = run_finetune(FinetuneConfig(data=data, backbone=backbone, freeze="all", epochs=1, per_class=per_class,
                                         early_stopping="none", device=device, output=out))
    return {"model_path": result.model_path, "images": [p["path"] for p in result.predictions][:images],
            "accuracy": result.accuracy}


def reference(bundle: str, images: list[str], device: str, runs: int, warmup: int) -> dict:
    import timm
    import torch
    from PIL import Image
    from timm.data import create_transform, resolve_data_config

    from common import plain_autocast, plain_inputs

    device = pick_device(device)
    model = timm.create_model(f"local-dir:{bundle}", pretrained=True).eval()
    if device.startswith("cuda"):
        model = model.to(device, memory_format=torch.channels_last)
    transform = create_transform(**resolve_data_config(model=model))

    def work(i: int):
        with Image.open(images[i % len(images)]) as image:
            x = transform(image.convert("RGB")).unsqueeze(0)
        with torch.no_grad(), plain_autocast(device):
            logits = model(plain_inputs(x, device))
        top = logits.float().softmax(dim=1).topk(3, dim=1)
        return top.indices.cpu().tolist()

    return median_ms(work, runs, warmup, device)


def transferlab_predict(bundle: str, images: list[str], device: str, precision: str, runs: int, warmup: int,
                        cold_runs: int) -> dict:
    from common import transferlab_process

    transferlab_process()
    from transferlab.engine import resolve_runtime
    from transferlab.finetune import load_bundle
    from transferlab.finetune.use import predict_images

    runtime = resolve_runtime(device, precision)
    loaded = load_bundle(bundle)
    warm = median_ms(lambda i: predict_images(loaded, [images[i % len(images)]], runtime=runtime), runs, warmup,
                     runtime.device)
    cold = median_ms(lambda i: predict_images(bundle, [images[i % len(images)]], runtime=runtime), cold_runs, 1,
                     runtime.device) if cold_runs else None
    return {**warm, "cold": cold, "runtime": runtime.describe()}


def run(args) -> list[SummaryRow]:
    with tempfile.TemporaryDirectory(prefix="transferlab-bench-") as tmp:
        made = run_child("predict_latency:make_bundle", data=args.data, backbone=args.backbone, device=args.device,
                         out=f"{tmp}/bundle", per_class=5, images=max(8, min(64, args.predict_runs)))
        common = dict(bundle=made["model_path"], images=made["images"], device=args.device,
                      runs=args.predict_runs, warmup=5)
        ref = run_child("predict_latency:reference", **common)
        tl = {p: run_child("predict_latency:transferlab_predict", precision=p,
                           cold_runs=5 if p == "auto" else 0, **common)
              for p in ("auto", "fp32")}
    reference_setup = "channels_last + bf16 autocast" if args.resolved_device == "cuda" else "fp32 NCHW"
    rows = [[f"reference: PIL + timm transform + model ({reference_setup})", fmt(ref["median_ms"]),
             fmt(ref["p10_ms"]), fmt(ref["p90_ms"]), "1.00x"]]
    for p, r in tl.items():
        rows.append([f"transferlab predict_images, bundle loaded once, precision {p} ({r['runtime']['precision']})",
                     fmt(r["median_ms"]), fmt(r["p10_ms"]), fmt(r["p90_ms"]),
                     ratio_text(safe_ratio(ref["median_ms"], r["median_ms"]))])
    cold = tl["auto"]["cold"]
    rows.append(["transferlab predict_images(bundle folder, ...): load + predict, as one CLI call",
                 fmt(cold["median_ms"]), fmt(cold["p10_ms"]), fmt(cold["p90_ms"]),
                 ratio_text(safe_ratio(ref["median_ms"], cold["median_ms"]))])
    table(f"Predict latency, one image ({args.backbone} bundle, freeze all, 1 epoch), ms",
          ["run", "median ms", "p10", "p90", "speed-up"], rows,
          [f"median of {args.predict_runs} calls after 5 warm-up calls ({cold['runs']} for load + predict), "
           f"cycling through {len(made['images'])} test images; speed-up = reference ms / transferlab ms"])
    return [
        SummaryRow("predict one image, ms (precision auto)", fmt(tl["auto"]["median_ms"]), fmt(ref["median_ms"]),
                   safe_ratio(ref["median_ms"], tl["auto"]["median_ms"]), "bundle loaded once"),
        SummaryRow("predict one image, ms (precision fp32)", fmt(tl["fp32"]["median_ms"]), fmt(ref["median_ms"]),
                   safe_ratio(ref["median_ms"], tl["fp32"]["median_ms"]), "bundle loaded once"),
    ]


if __name__ == "__main__":
    from run_all import run_alone

    run_alone(run, __doc__)
