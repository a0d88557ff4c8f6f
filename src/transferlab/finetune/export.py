"""Export a bundle to ONNX or TorchScript, checked against the PyTorch output.

An ONNX file carries what a runtime needs besides the graph in its ``metadata_props`` (read back by
``onnxruntime``'s ``get_modelmeta().custom_metadata_map``): the class names and the preprocessing, as
JSON, and the transferlab version that wrote it.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..errors import UserError
from .bundle import Bundle, bundle_folder, load_bundle

FORMATS = ("onnx", "torchscript")
PARITY_TOLERANCE = 1e-4


def export_model(model: str | Path | Bundle, fmt: str, output: str | Path | None = None) -> dict:
    """Write the exported model and return its path and the largest probability difference from PyTorch."""
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}: use {', '.join(FORMATS)}")
    folder = None if isinstance(model, Bundle) else bundle_folder(model)
    bundle = model if isinstance(model, Bundle) else load_bundle(model)
    suffix = ".onnx" if fmt == "onnx" else ".pt"
    target = Path(output) if output else (folder or Path(".")) / f"model{suffix}"
    size = tuple(bundle.meta["preprocessing"]["input_size"])
    example = torch.randn((2, *size), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = bundle.model(example).softmax(dim=1).numpy()
    from ..storage import atomic_path

    with atomic_path(target) as tmp:  # checked before it takes the target's place: a failed one keeps the earlier
        got = _export_onnx(bundle, example, tmp) if fmt == "onnx" else _export_torchscript(bundle, example, tmp)
        difference = float(np.abs(got - expected).max())
        if not difference <= PARITY_TOLERANCE:
            raise UserError(f"exported {fmt} model differs from PyTorch by {difference:.2e} (> {PARITY_TOLERANCE}); "
                            "not kept")
    return {"path": str(target), "format": fmt, "max_abs_difference": difference}


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _export_onnx(bundle: Bundle, example: torch.Tensor, path: Path) -> np.ndarray:
    try:
        import onnxruntime
    except ImportError:
        raise UserError("ONNX export needs onnx, onnxscript and onnxruntime: pip install 'transferlab[export]'") from None
    with contextlib.redirect_stdout(io.StringIO()):
        torch.onnx.export(bundle.model, (example,), str(path), dynamic_shapes=({0: torch.export.Dim("batch")},),
                          dynamo=True, external_data=False)
    import onnx

    graph = onnx.load(str(path))
    onnx.helper.set_model_props(graph, onnx_metadata(bundle))
    onnx.save(graph, str(path))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = session.run(None, {session.get_inputs()[0].name: example.numpy()})[0]
    return _softmax(logits)


def onnx_metadata(bundle: Bundle) -> dict[str, str]:
    """The ONNX file's metadata: class names in output order and the preprocessing (mean, std, input size,
    interpolation, crop) as JSON, the backbone and head, and the transferlab version."""
    return {"classes": json.dumps(list(bundle.classes)),
            "preprocessing": json.dumps(bundle.meta["preprocessing"]),
            "backbone": bundle.meta["backbone"]["timm_name"],
            "head": bundle.meta["head"]["spec"],
            "transferlab_version": __version__}


def _export_torchscript(bundle: Bundle, example: torch.Tensor, path: Path) -> np.ndarray:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated upstream, still asked for
        traced = torch.jit.trace(bundle.model, example)
        traced.save(str(path))
        loaded = torch.jit.load(str(path))
    with torch.no_grad():
        return loaded(example).softmax(dim=1).numpy()
