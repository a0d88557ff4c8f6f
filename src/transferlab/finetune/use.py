"""Using a saved bundle: classify new images, or evaluate on a labelled folder."""

from __future__ import annotations

from pathlib import Path

import torch

from ..calibration import expected_calibration_error
from ..data import image_batches
from ..data.builtin import resolve_data_path
from ..data.cifar import binary_layout, read_cifar_splits, refuse_python_version
from ..data.layout import Sample, find_splits, read_class_folders
from ..data.listfile import is_list_file, read_list
from ..engine.loop import collect
from ..engine.runtime import CPU, Runtime
from ..errors import UserError
from ..pathkinds import wrong_kind
from ..evaluation import score
from ..tta import check_views, scored_forward
from .bundle import Bundle, load_bundle


def image_files(inputs: list[str | Path]) -> list[Path]:
    """Files given directly, plus every non-hidden file under the folders given."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")))
        elif path.is_file():
            files.append(path)
        else:
            raise wrong_kind(path, "image or folder", "an image file or a folder")
    if not files:
        raise UserError("no image files found in " + ", ".join(map(str, inputs)))
    return files


def _on(bundle: Bundle, runtime: Runtime) -> Bundle:
    runtime.prepare(bundle.model)
    return bundle


def bundle_forward(bundle: Bundle, tta: int = 1):
    """The bundle's model as predict and evaluate score with it: logits divided by its calibration temperature,
    probabilities averaged over ``tta`` views."""
    return scored_forward(bundle.model, bundle.temperature, tta)


def class_probabilities(bundle: Bundle, items: list, batch_size: int = 32,
                        runtime: Runtime = CPU, tta: int = 1) -> list:
    """Each item's class probabilities (a float32 tensor over ``bundle.classes``; a multi-label model's: every
    label's own sigmoid), None for an unreadable file.

    ``items``: image files or in-memory images (``MemoryImage``), through the bundle's own preprocessing and the
    engine's ``predict``, as ``transferlab predict`` classifies them (calibrated when the bundle was; ``tta``
    views averaged)."""
    probabilities: list = [None] * len(items)
    forward = bundle_forward(bundle, tta)
    batches = image_batches(items, bundle.transform(), batch_size, None, runtime.pin_memory, runtime.device)
    found = collect(bundle.model, batches, runtime, forward)
    if found.indices:  # (none when every item was unreadable)
        rows = found.outputs.softmax(dim=1) if bundle.threshold is None else found.outputs.sigmoid()
        for i, row in zip(found.indices, rows):
            probabilities[i] = row
    return probabilities


def predict_images(model: str | Path | Bundle, inputs: list[str | Path], top_k: int = 3, batch_size: int = 32,
                   runtime: Runtime = CPU, gradcam: str | Path | None = None, tta: int = 1) -> list[dict]:
    """Top-k classes per image (``tta`` views averaged); unreadable files are listed with an error instead. A
    multi-label model also lists every label over its threshold (``labels``), most probable first.

    ``gradcam``: a new (or empty) folder for a Grad-CAM heat map of each image's top class.
    """
    check_views(tta)
    bundle = _on(model if isinstance(model, Bundle) else load_bundle(model), runtime)
    check_multi_label_views(bundle, tta)
    files = image_files(inputs)
    k = max(1, min(top_k, len(bundle.classes)))
    results: list[dict] = []
    for path, probabilities in zip(files, class_probabilities(bundle, files, batch_size, runtime, tta)):
        if probabilities is None:
            results.append({"image": str(path), "error": "unreadable image"})
            continue
        top = probabilities.topk(k)
        results.append({
            "image": str(path),
            "top": [{"label": bundle.classes[int(c)], "probability": round(float(p), 4)}
                    for p, c in zip(top.values, top.indices)],
        })
        if bundle.threshold is not None:
            ranked = probabilities.sort(descending=True)
            results[-1]["labels"] = [{"label": bundle.classes[int(c)], "probability": round(float(p), 4)}
                                     for p, c in zip(ranked.values, ranked.indices) if p >= bundle.threshold]
    if gradcam is not None:
        from .gradcam import write_gradcams

        tops = [bundle.classes.index(r["top"][0]["label"]) if "top" in r else None for r in results]
        for r, path in zip(results, write_gradcams(bundle, files, tops, Path(gradcam).expanduser())):
            if path is not None:
                r["gradcam"] = str(path)
    return results


def check_multi_label_views(bundle: Bundle, tta: int) -> None:
    """Test-time augmentation averages softmax probabilities: a multi-label model has a sigmoid per label."""
    if bundle.threshold is not None and tta > 1:
        raise UserError("--tta averages softmax probabilities over views: not for a multi-label model")


def evaluation_samples(root: Path) -> tuple[Path, list[str], list]:
    """(what is evaluated, its class names, its samples) of a labelled folder, list file or CIFAR folder."""
    if is_list_file(root):
        listed = read_list(root)
        if listed[0].split is not None:
            split = "test" if any(item.split == "test" for item in listed) else "val"
            listed = [item for item in listed if item.split == split]
            if not listed:
                raise UserError(f"{root} has no test or val rows to evaluate on")
        names = sorted({item.label for item in listed})
        return root, names, [Sample(item.path, names.index(item.label)) for item in listed]
    layout = binary_layout(root)
    if layout is not None:
        splits = read_cifar_splits(root, layout)
        return root / layout.test, splits.classes, splits.test
    refuse_python_version(root)
    splits = find_splits(root)
    folder = splits.get("test") or splits.get("val") or root
    names, samples = read_class_folders(folder)
    return folder, names, samples


def evaluate_folder(model: str | Path | Bundle, data: str | Path, batch_size: int = 32, runtime: Runtime = CPU,
                    tta: int = 1) -> dict:
    """Accuracy, macro F1, confusion matrix and calibration error (ECE) on a labelled folder; with ``tta`` > 1
    also the accuracy with that many views averaged (``tta_accuracy``), beside the plain one.

    A folder with given splits is evaluated on its test split (or ``val/`` without
    one); a plain class-per-folder tree is evaluated whole; so is a .csv/.tsv list,
    except for its test (or val) rows when it has a split column; a CIFAR binary
    folder is evaluated on its test batch.
    """
    check_views(tta)
    bundle = _on(model if isinstance(model, Bundle) else load_bundle(model), runtime)
    if bundle.threshold is not None:
        raise UserError("evaluate scores one class per image; a multi-label model's test figures (mAP, F1, subset "
                        "accuracy) are in its fine-tune result (transferlab.json)")
    root = resolve_data_path(data)
    if not root.is_dir() and not is_list_file(root):
        raise wrong_kind(root, "data folder", "a folder or a .csv/.tsv list of images")
    folder, names, samples = evaluation_samples(root)
    unknown = [n for n in names if n not in bundle.classes]
    if unknown:
        raise UserError(f"class {unknown[0]!r} of {folder} is not one the model knows: {', '.join(bundle.classes)}")
    labels = [bundle.classes.index(names[s.label]) for s in samples]
    truth, probabilities, unreadable = _scored(bundle, samples, labels, batch_size, runtime, 1)
    if not truth:
        raise UserError(f"no readable images in {folder}")
    result = {
        "data": str(folder),
        "images": len(truth),
        "classes": bundle.classes,
        **score(truth, probabilities.argmax(1).tolist(), bundle.classes),
        "ece": expected_calibration_error(probabilities.numpy(), truth),
        "calibration_temperature": bundle.temperature,
        "unreadable_count": len(unreadable),
        "unreadable_examples": unreadable[:5],
    }
    if tta > 1:
        views_truth, views_probabilities, _ = _scored(bundle, samples, labels, batch_size, runtime, tta)
        result["tta"] = tta
        result["tta_accuracy"] = float((views_probabilities.argmax(1) == torch.tensor(views_truth)).float().mean())
    return result


def _scored(bundle: Bundle, samples: list, labels: list[int], batch_size: int, runtime: Runtime,
            tta: int) -> tuple[list[int], torch.Tensor, list[str]]:
    """(true labels, class probabilities, unreadable files) of ``samples`` as the bundle scores them."""
    batches = image_batches([s.path for s in samples], bundle.transform(), batch_size, None, runtime.pin_memory,
                            runtime.device)
    found = collect(bundle.model, batches, runtime, bundle_forward(bundle, tta))
    truth = [labels[i] for i in found.indices]
    rows = found.outputs.softmax(dim=1) if found.indices else torch.zeros(0, len(bundle.classes))
    return truth, rows, [str(samples[i].path) for i in found.unreadable]
