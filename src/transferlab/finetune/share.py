"""Sharing a saved model on the Hugging Face Hub: its bundle plus a model card, uploaded by ``huggingface_hub``.

The bundle is already in timm's Hub layout (``model.safetensors`` + ``config.json``), so the pushed
repository loads with ``timm.create_model("hf-hub:USER/NAME", pretrained=True)``, and the folder a dry run
writes with ``timm.create_model("local-dir:FOLDER", pretrained=True)``. The card (``README.md``) is written
by ``huggingface_hub.ModelCard``: its YAML header carries the Hub's metadata (library, base model, dataset,
model-index results) and transferlab's own (the metrics with their 95% intervals, the training config).
A dry run and a push write the same folder; the push then uploads it with ``HfApi().upload_folder``.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import UserError
from .bundle import BUNDLE_FILES, bundle_folder, read_meta

CARD_NAME = "README.md"
PUSHED_FILES = BUNDLE_FILES  # the card is written beside them
# config fields the card leaves out: local paths (the data folder's name is the dataset) and where it wrote
LOCAL_FIELDS = ("data", "output", "weights", "resume")


def card_metadata(meta: dict[str, Any], repo_id: str):
    """The card's YAML header (a ``huggingface_hub.ModelCardData``) from a bundle's description."""
    from huggingface_hub import EvalResult, ModelCardData

    training = meta.get("training") or {}
    dataset = dataset_name(training)
    split = training.get("evaluated_on") or "test"
    accuracy, macro_f1 = training.get("accuracy"), training.get("macro_f1")
    low, high = accuracy_interval(training)
    results = [EvalResult(task_type="image-classification", dataset_type=dataset, dataset_name=dataset,
                          dataset_split=split, metric_type=kind, metric_name=name, metric_value=value)
               for kind, name, value in (("accuracy", "accuracy", accuracy), ("f1", "macro F1", macro_f1))
               if isinstance(value, (int, float))]
    config = training.get("config") or {}
    return ModelCardData(
        library_name="timm",
        pipeline_tag="image-classification",
        tags=["image-classification", "timm", "transferlab"],
        base_model=base_model(meta),
        datasets=[dataset],
        metrics=["accuracy", "f1"],
        model_name=repo_id.split("/")[-1],
        eval_results=results or None,
        transferlab={
            "version": meta.get("transferlab", __version__),
            "metrics": {"accuracy": accuracy, "accuracy_95_interval": [low, high],
                        "interval_method": "Wilson score, 95%", "macro_f1": macro_f1,
                        "test_images": training.get("test_images"), "evaluated_on": split},
            "classes": list(meta["classes"]),
            "head": meta["head"],
            "preprocessing": meta["preprocessing"],
            "training_config": card_config(config),
        },
    )


def card_config(config: dict[str, Any]) -> dict[str, Any]:
    """The training config's fields that decide the model (speed-only fields and local paths left out)."""
    from ..options import speed_only_fields
    from .config import FinetuneConfig

    skip = speed_only_fields(FinetuneConfig) | set(LOCAL_FIELDS)
    return {k: v for k, v in config.items() if k not in skip}


def base_model(meta: dict[str, Any]) -> str | None:
    """The Hub id of the pretrained timm weights fine-tuned (``timm/<timm name>``, where timm keeps them); None
    for a model trained from random initialisation, which has no base model."""
    backbone = meta["backbone"]
    if backbone.get("weights") == "random initialisation" or (meta.get("training") or {}).get(
            "config", {}).get("random_init"):
        return None
    return f"timm/{backbone['timm_name']}"


def dataset_name(training: dict[str, Any]) -> str:
    """The data's name as the card gives it: ``digits``, or the data folder's name (never its full path)."""
    data = str(training.get("data") or (training.get("config") or {}).get("data") or "unknown")
    return Path(data.rstrip("/")).name or data


def accuracy_interval(training: dict[str, Any]) -> tuple[float | None, float | None]:
    from ..finetune.result import FinetuneResult

    if not isinstance(training.get("accuracy"), (int, float)):
        return None, None
    try:
        low, high = FinetuneResult.from_dict(training).interval()
    except (TypeError, ValueError):
        return None, None
    return float(low), float(high)


def model_card(meta: dict[str, Any], repo_id: str):
    """The whole card: the YAML header, then what the model is, how well it did, how to use it, and its limits."""
    from huggingface_hub import ModelCard

    data = card_metadata(meta, repo_id)
    extra = data.transferlab
    metrics, classes, config = extra["metrics"], extra["classes"], extra["training_config"]
    low, high = metrics["accuracy_95_interval"]
    timm_name = meta["backbone"]["timm_name"]
    origin = (f"fine-tuned from the pretrained timm model `{timm_name}`" if data.base_model
              else f"the timm architecture `{timm_name}` trained from random initialisation (no pretrained weights)")
    linear = meta["head"]["spec"] == "linear"
    lines = [
        f"# {repo_id.split('/')[-1]}", "",
        f"An image classifier of {len(classes)} classes made with [transferlab](https://pypi.org/project/transferlab/) "
        f"{extra['version']}: {origin}, on the data set `{dataset_name(meta.get('training') or {})}`.", "",
        "## Results", "",
        f"Measured on {metrics['test_images']} held-out images ({metrics['evaluated_on']}); the interval is the "
        "95% Wilson score interval of the accuracy.", "",
        "| metric | value | 95% interval |", "|---|---|---|",
        f"| accuracy | {_number(metrics['accuracy'])} | [{_number(low)}, {_number(high)}] |",
        f"| macro F1 | {_number(metrics['macro_f1'])} | - |", "",
        "## Classes", "", ", ".join(f"`{c}`" for c in classes), "",
        "## Training config", "", *[f"- {k}: `{v}`" for k, v in config.items()], "",
        "## How to use", "",
    ]
    if linear:
        lines += ["```python", "import timm, torch",
                  f'model = timm.create_model("hf-hub:{repo_id}", pretrained=True).eval()',
                  "config = timm.data.resolve_data_config(model=model)",
                  "transform = timm.data.create_transform(**config)",
                  "# logits = model(transform(image).unsqueeze(0)); class names: model.pretrained_cfg['label_names']",
                  "```", ""]
    lines += ["With transferlab (any head): download the folder (`huggingface_hub.snapshot_download`), then "
              "`transferlab predict FOLDER IMAGES` or `Predictor.load(FOLDER)`.", "",
              "## Intended use and limitations", "",
              f"- Intended use: classifying images like the training data into the {len(classes)} classes above. "
              "It knows no other class: every image gets one of them, however unlike the training images.",
              f"- The figures hold for images like the {metrics['test_images']} test images of this data set; the "
              "interval says how far they can move from sampling alone. Another camera, place or population of "
              "images can do worse: measure it on your own labelled images (`transferlab evaluate`).",
              "- Preprocessing must be the model's own (input size, resize, crop, mean and std, in `config.json` "
              "and `transferlab.json`); timm and transferlab apply it from there."]
    if not linear:
        lines.append(f"- The head is `{meta['head']['spec']}`, which plain timm does not build: load it with "
                     "transferlab (the timm `config.json` describes the backbone only).")
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n")


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "n/a"


def write_hub_folder(model: str | Path, output: str | Path, repo_id: str) -> Path:
    """Write ``output`` as the repository will hold it: the bundle's files and the card. An existing folder is
    used only when empty (an earlier push's folder is never overwritten)."""
    check_repo_id(repo_id)
    source = bundle_folder(model)
    meta = read_meta(source)
    missing = [name for name in PUSHED_FILES if not (source / name).is_file()]
    if missing:
        raise UserError(f"{source} has no {', '.join(missing)}: not a whole saved model")
    target = Path(output).expanduser()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UserError(f"{output} already exists and is not an empty folder: choose another --output")
    card = model_card(meta, repo_id)
    try:
        target.mkdir(parents=True, exist_ok=True)
        for name in PUSHED_FILES:
            shutil.copyfile(source / name, target / name)
        card.save(target / CARD_NAME)
    except OSError as exc:
        raise UserError(f"cannot write {target}: {(exc.strerror or str(exc)).lower()}") from None
    return target


def check_repo_id(repo_id: str) -> None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise UserError(f"{repo_id!r} is not a Hub repository id (USER/NAME): {str(exc).splitlines()[0]}") from None


def push_model(model: str | Path, repo_id: str, *, dry_run: bool = False, output: str | Path | None = None,
               private: bool = False) -> dict[str, Any]:
    """Write the repository's folder (into ``output``, or a temporary one) and, unless ``dry_run``, upload it to
    the Hub repository ``repo_id`` (created when missing; the token is huggingface_hub's: ``HF_TOKEN`` or
    ``hf auth login``). Returns the folder, the files and the commit's URL (None for a dry run)."""
    if dry_run and output is None:
        raise UserError("--dry-run writes the folder it would push: give it --output DIR")
    with tempfile.TemporaryDirectory(prefix="transferlab-push-") as scratch:
        folder = write_hub_folder(model, output if output is not None else Path(scratch) / "repo", repo_id)
        files = sorted(p.name for p in folder.iterdir())
        url = None if dry_run else upload(folder, repo_id, private)
    return {"repo_id": repo_id, "folder": str(folder) if output is not None else None, "files": files,
            "url": url, "dry_run": dry_run}


def upload(folder: Path, repo_id: str, private: bool) -> str:
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.upload_folder(repo_id=repo_id, folder_path=str(folder),
                                   commit_message=f"Upload model with transferlab {__version__}")
    except Exception as exc:  # no network, no token, no permission: huggingface_hub's many error types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot push to the Hub repository {repo_id}: {first[:300]}") from None
    return str(getattr(commit, "commit_url", commit))
