"""A trained model saved as a bundle: a timm model folder plus transferlab's description.

- ``model.safetensors``: the timm model's own state dict (``timm.create_model(arch,
  num_classes=K)`` loads it, for the linear head; an ``mlp:...`` head replaces the
  classifier, which only transferlab rebuilds);
- ``config.json``: timm's Hub layout (architecture, num_classes, label_names,
  pretrained_cfg with the preprocessing), written by timm's own ``save_config_for_hf``,
  so ``timm.create_model("local-dir:FOLDER")`` finds the architecture and preprocessing;
- ``transferlab.json``: the head, the preprocessing, the classes and the training summary.

Loading never unpickles anything, never reaches a network, and checks the
description's types before using them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from timm.models._hub import save_config_for_hf

from ..backbones.resolution import fixed_input_size
from ..backbones.state_fit import load_exactly
from ..backbones import small_cnn  # noqa: F401  (registers transferlab_small_cnn, which bundles may name)
from ..data.transforms import TensorEvalTransform
from ..errors import UserError
from ..pathkinds import kind_of
from ..readback import number_problem
from ..storage import atomic_path, atomic_write_text
from .model import TransferModel

WEIGHTS_NAME = "model.safetensors"
META_NAME = "transferlab.json"
TIMM_CONFIG_NAME = "config.json"
BUNDLE_FILES = (WEIGHTS_NAME, TIMM_CONFIG_NAME, META_NAME)  # the whole saved model (shared, logged, pushed)
FORMAT = "transferlab-bundle/3"
OLD_FORMATS = ("transferlab-bundle/1",)
# bundle/2 named the head inputs differently: its "avg" was the model's own pre-logits features
FORMAT2_POOLING = {"avg": "pre_logits", "flatten": "flatten"}
HEAD_INPUTS = ("pre_logits", "avg", "max", "flatten", "token")
MAX_META_BYTES = 16 * 1024 * 1024
MAX_CLASSES = 100_000


@dataclass
class Bundle:
    model: TransferModel
    classes: list[str]
    meta: dict[str, Any]

    @property
    def net(self) -> torch.nn.Module:
        """The timm model inside."""
        return self.model.net

    @property
    def temperature(self) -> float:
        """What ``--calibrate`` fitted: the logits are divided by it before the softmax (1: not calibrated)."""
        return float(self.meta.get("calibration", {}).get("temperature", 1.0))

    @property
    def threshold(self) -> float | None:
        """A multi-label model's threshold (tuned on its validation images): every label whose sigmoid is over it is
        predicted; None for a single-label model (softmax over its classes)."""
        threshold = self.meta.get("multi_label", {}).get("threshold")
        return None if threshold is None else float(threshold)

    def transform(self):
        """The model's evaluation transform on uint8 tensors (as its training used)."""
        return TensorEvalTransform(self.meta["preprocessing"])


def save_bundle(folder: Path, model: TransferModel, meta: dict[str, Any]) -> None:
    """Weights and timm's config first, transferlab's description last: a folder with it holds a whole bundle."""
    folder.mkdir(parents=True, exist_ok=True)
    net = model.net
    state = {k: v.detach().to("cpu").contiguous() for k, v in net.state_dict().items()}
    with atomic_path(folder / WEIGHTS_NAME) as tmp:
        # serialised here and written by Python: safetensors' own file writer can drop a full disk's error
        tmp.write_bytes(save(state, metadata={"format": "pt"}))
    preprocessing = meta["preprocessing"]
    data_config = {k: (tuple(v) if isinstance(v, list) else v) for k, v in preprocessing.items()}
    with atomic_path(folder / TIMM_CONFIG_NAME) as tmp:
        save_config_for_hf(net, str(tmp), model_config={"label_names": list(meta["classes"])},
                           data_config=data_config)
    atomic_write_text(folder / META_NAME, json.dumps({"format": FORMAT, **meta}, indent=2, default=str))


def bundle_folder(model: Path | str) -> Path:
    """The model folder ``model`` names: a folder, or the ``transferlab.json`` in one (taken for its folder, as
    a user picking the model's file means); anything else is refused saying to give the folder."""
    path = Path(model).expanduser()
    if path.name == META_NAME and path.is_file():
        return path.parent
    if path.is_dir():
        return path
    kind = kind_of(path)
    if kind is None:
        raise UserError(f"no transferlab model at {model} (expected {META_NAME} in the folder)")
    raise UserError(f"{model} is {kind}: give the model folder (the one finetune wrote, holding {META_NAME} "
                    f"and {WEIGHTS_NAME})")


def read_meta(folder: Path | str) -> dict[str, Any]:
    meta_path = bundle_folder(folder) / META_NAME
    if not meta_path.is_file():
        raise UserError(f"no transferlab model at {folder} (expected {META_NAME} in the folder)")
    if meta_path.stat().st_size > MAX_META_BYTES:
        raise UserError(f"{meta_path} is too large to be a transferlab model description")
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError:  # not JSON, not UTF-8, or beyond Python's own limits (an integer of 5,000 digits)
        raise UserError(f"{meta_path} is not a transferlab model description") from None
    if not isinstance(meta, dict):
        raise UserError(f"{meta_path} is not a transferlab model description")
    if meta.get("format") in OLD_FORMATS:
        raise UserError(f"{meta_path.parent} was saved by transferlab 0.1, whose weights are not a timm state dict; "
                        "fine-tune it again with this version (the same `transferlab finetune` options give the "
                        "same model), or use transferlab 0.1 to export it to ONNX")
    if meta.get("format") == "transferlab-bundle/2" and isinstance(meta.get("head"), dict):
        meta["head"]["pooling"] = FORMAT2_POOLING.get(meta["head"].get("pooling"))
        meta["format"] = FORMAT
    if meta.get("format") != FORMAT:
        raise UserError(f"{meta_path} is not a {FORMAT} bundle")
    _check_meta(meta, meta_path)
    return meta


def _check_meta(meta: dict, where: Path) -> None:
    def bad(what: str) -> UserError:
        return UserError(f"{where}: {what}")

    backbone, head, pre, classes = (meta.get(k) for k in ("backbone", "head", "preprocessing", "classes"))
    if not isinstance(backbone, dict) or not isinstance(backbone.get("timm_name"), str):
        raise bad("backbone.timm_name must be a model name")
    if not isinstance(classes, list) or not 2 <= len(classes) <= MAX_CLASSES \
            or not all(isinstance(c, str) for c in classes) or len(set(classes)) != len(classes):
        raise bad(f"classes must be a list of 2 to {MAX_CLASSES} different names")
    if not isinstance(head, dict) or not isinstance(head.get("spec"), str) or head.get("pooling") not in HEAD_INPUTS \
            or not isinstance(head.get("dropout"), (int, float)):
        raise bad("head must give spec, dropout and pooling")
    size = pre.get("input_size") if isinstance(pre, dict) else None
    if not (isinstance(size, list) and len(size) == 3 and all(isinstance(s, int) and 0 < s <= 4096 for s in size)):
        raise bad("preprocessing.input_size must be three sizes (channels, height, width)")
    calibration, multi_label = meta.get("calibration", {}), meta.get("multi_label", {})
    if not isinstance(calibration, dict):
        raise bad("calibration must give the temperature")
    if not isinstance(multi_label, dict):
        raise bad("multi_label must give the threshold")
    problem = (number_problem("head.dropout", head["dropout"], 0.0, 1.0) or _preprocessing_problem(pre)
               or number_problem("calibration.temperature", calibration.get("temperature"), 1e-3, 1e3, optional=True)
               or number_problem("multi_label.threshold", multi_label.get("threshold"), 0.0, 1.0, optional=True))
    if problem:
        raise bad(problem)


def _preprocessing_problem(pre: dict) -> str | None:
    """What is wrong with the stored preprocessing for the evaluation transform (a NaN mean, a zero std, a crop
    of 0, an unknown interpolation), or None."""
    for name in ("mean", "std"):
        values = pre.get(name)
        if values is not None and not (isinstance(values, list) and len(values) == 3):
            return f"preprocessing.{name} must be three numbers"
        for value in values or []:
            problem = number_problem(f"preprocessing.{name}", value, 1e-6 if name == "std" else -1e6, 1e6)
            if problem:
                return problem
    problem = number_problem("preprocessing.crop_pct", pre.get("crop_pct"), 1e-3, 4.0, optional=True)
    if problem:
        return problem
    try:
        TensorEvalTransform(pre)
    except (ValueError, TypeError, KeyError) as exc:
        return f"preprocessing: {exc}"
    return None


def load_bundle(folder: Path | str) -> Bundle:
    """Rebuild the model from its description and load its weights (eval mode, on the CPU)."""
    folder = bundle_folder(folder)
    meta = read_meta(folder)
    architecture = meta["backbone"]["timm_name"].split(".", 1)[0]
    if not timm.is_model(architecture):
        raise UserError(f"{folder} names the model {architecture!r}, which the installed timm does not have")
    head = meta["head"]
    input_size = tuple(meta["preprocessing"]["input_size"])
    # a fixed-size model (a ViT) is built for the resolution it was fine-tuned at; a CNN takes any
    size = {"img_size": input_size[1:]} if fixed_input_size(meta["backbone"]["timm_name"]) else {}
    with torch.random.fork_rng():
        net = timm.create_model(architecture, pretrained=False, **size)
        model = TransferModel(net, len(meta["classes"]), head["spec"], float(head["dropout"]), head["pooling"],
                              input_size)
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise UserError(f"{folder} has no {WEIGHTS_NAME} (a regular file)")
    try:
        state = load_file(str(weights))
    except (RuntimeError, OSError, SafetensorError) as exc:
        raise UserError(f"cannot load weights of {folder}: {str(exc).splitlines()[0][:200]}") from None
    load_exactly(model.net, state, f"the weights in {weights}")
    return Bundle(model.to(memory_format=torch.channels_last).eval(), list(meta["classes"]), meta)

