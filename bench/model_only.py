"""Figure: the network alone on a random batch (no decoding), against the compiled-bf16 ceiling.

Reference: the plain model's pooled features, fp32 in the default memory format on a CPU (channels_last
+ bf16 autocast on a GPU). transferlab: ``FeatureExtractor(...).forward`` under its ``Runtime``
(``resolve_runtime(device, precision)``: channels_last and its autocast precision), with precision
``auto`` and ``fp32`` (and ``bf16`` on a CPU with native bf16). Ceiling: ``torch.compile`` with
``torch._inductor.config.freezing = True``, channels_last, bf16 autocast; its compile time (the warm-up)
is printed and excluded. All under ``torch.no_grad()``, inputs already on the device.

Usage: ``.venv/bin/python bench/model_only.py [--model-batch 32] [--no-compile] [--device cpu|cuda]``
"""

from __future__ import annotations

import time

from common import (SummaryRow, fmt, native_bf16, pick_device, plain_autocast, plain_model, rate, ratio_text,
                    run_child, safe_ratio, table)


def _batch(backbone_model, batch_size: int):
    import torch
    from timm.data import resolve_data_config

    size = resolve_data_config(model=backbone_model)["input_size"]
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch_size, *size, generator=generator)


def reference(backbone: str, device: str, batch_size: int, min_seconds: float) -> dict:
    import torch

    from common import plain_inputs

    device = pick_device(device)
    model, _ = plain_model(backbone, num_classes=0, device=device)
    model.eval()
    x = plain_inputs(_batch(model, batch_size), device)

    def work():
        with torch.no_grad(), plain_autocast(device):
            return model(x)

    return rate(work, batch_size, device, min_seconds=min_seconds)


def transferlab_runtime(backbone: str, device: str, precision: str, batch_size: int, min_seconds: float) -> dict:
    import torch

    from common import transferlab_process

    transferlab_process()
    from transferlab.backbones import load_backbone
    from transferlab.engine import resolve_runtime
    from transferlab.features import FeatureExtractor

    runtime = resolve_runtime(device, precision)
    extractor = FeatureExtractor(load_backbone(backbone), cache=False, runtime=runtime)
    x = runtime.inputs(_batch(extractor.model, batch_size))

    def work():
        with torch.no_grad(), runtime.autocast():
            return extractor.forward(x)

    return {**rate(work, batch_size, runtime.device, min_seconds=min_seconds), "runtime": runtime.describe()}


def ceiling(backbone: str, device: str, batch_size: int, min_seconds: float) -> dict:
    import torch
    import torch._inductor.config

    device = pick_device(device)
    model, _ = plain_model(backbone, num_classes=0, device=device)
    model = model.eval().to(memory_format=torch.channels_last)
    x = _batch(model, batch_size).to(device).contiguous(memory_format=torch.channels_last)
    torch._inductor.config.freezing = True
    compiled = torch.compile(model)

    def work():
        with torch.no_grad(), torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16):
            return compiled(x)

    started = time.perf_counter()
    work()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    compile_seconds = time.perf_counter() - started
    return {**rate(work, batch_size, device, warmup=2, min_seconds=min_seconds), "compile_seconds": compile_seconds}


def run(args) -> list[SummaryRow]:
    batch = args.model_batch or (256 if args.resolved_device == "cuda" else 32)
    common = dict(backbone=args.backbone, device=args.device, batch_size=batch, min_seconds=args.min_seconds)
    ref = run_child("model_only:reference", **common)
    precisions = ["auto", "fp32"] + (["bf16"] if args.resolved_device == "cpu" and native_bf16() else [])
    runs = {p: run_child("model_only:transferlab_runtime", precision=p, **common) for p in precisions}
    ceil, ceil_error = None, ""
    if args.compile:
        try:
            ceil = run_child("model_only:ceiling", **common)
        except Exception as exc:  # noqa: BLE001 - a failed compile is reported, not fatal
            ceil_error = str(exc).strip().splitlines()[-1][:200]
    reference_setup = ("channels_last + bf16 autocast" if args.resolved_device == "cuda"
                       else "fp32, NCHW (default memory format)")
    rows = [[f"reference: plain model, {reference_setup}", fmt(ref["per_second"]), "1.00x", "", ""]]
    for p, r in runs.items():
        rt = r["runtime"]
        rows.append([f"transferlab runtime, precision {p} ({rt['device']} {rt['precision']}"
                     f"{' channels_last' if rt['channels_last'] else ''})", fmt(r["per_second"]),
                     ratio_text(safe_ratio(r["per_second"], ref["per_second"])),
                     ratio_text(safe_ratio(r["per_second"], ceil["per_second"])) if ceil else "", ""])
    if ceil:
        rows.append(["ceiling: torch.compile (freezing) + channels_last + bf16 autocast", fmt(ceil["per_second"]),
                     ratio_text(safe_ratio(ceil["per_second"], ref["per_second"])), "1.00x",
                     fmt(ceil["compile_seconds"])])
    notes = [f"random input batch of {batch}, pooled features, torch.no_grad(), inputs already on the device; "
             f"warm-up excluded, each timed for at least {args.min_seconds:g} s; images/s of the median batch"]
    if not args.compile:
        notes.append("ceiling skipped (--no-compile)")
    elif ceil is None:
        notes.append(f"ceiling skipped: torch.compile failed: {ceil_error}")
    table(f"The model alone ({args.backbone}, batch {batch}), images/s",
          ["run", "images/s", "vs reference", "vs ceiling", "compile s"], rows, notes)
    auto = runs["auto"]
    summary = [
        SummaryRow("model alone, images/s (precision auto)", fmt(auto["per_second"]), fmt(ref["per_second"]),
                   safe_ratio(auto["per_second"], ref["per_second"]), f"batch {batch}"),
        SummaryRow("model alone, images/s (precision fp32)", fmt(runs["fp32"]["per_second"]),
                   fmt(ref["per_second"]), safe_ratio(runs["fp32"]["per_second"], ref["per_second"]),
                   f"batch {batch}"),
    ]
    if ceil:
        summary.append(SummaryRow("model alone, auto vs compiled-bf16 ceiling", fmt(auto["per_second"]),
                                  fmt(ceil["per_second"]), safe_ratio(auto["per_second"], ceil["per_second"]),
                                  "reference column = the ceiling"))
    return summary


if __name__ == "__main__":
    from run_all import run_alone

    run_alone(run, __doc__)
