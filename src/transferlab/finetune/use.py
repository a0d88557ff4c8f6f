"""Using a saved bundle: classify new images, or evaluate on a labelled folder."""

from __future__ import annotations

from pathlib import Path

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


def class_probabilities(bundle: Bundle, items: list, batch_size: int = 32,
                        runtime: Runtime = CPU) -> list:
    """Each item's class probabilities (a float32 tensor over ``bundle.classes``), None for an unreadable file.

    ``items``: image files or in-memory images (``MemoryImage``), through the bundle's own preprocessing and the
    engine's ``predict``, as ``transferlab predict`` classifies them."""
    probabilities: list = [None] * len(items)
    batches = image_batches(items, bundle.transform(), batch_size, None, runtime.pin_memory, runtime.device)
    found = collect(bundle.model, batches, runtime)
    for i, row in zip(found.indices, found.outputs.softmax(dim=1)):
        probabilities[i] = row
    return probabilities


def predict_images(model: str | Path | Bundle, inputs: list[str | Path], top_k: int = 3, batch_size: int = 32,
                   runtime: Runtime = CPU, gradcam: str | Path | None = None) -> list[dict]:
    """Top-k classes per image; unreadable files are listed with an error instead.

    ``gradcam``: a new (or empty) folder for a Grad-CAM heat map of each image's top class.
    """
    bundle = _on(model if isinstance(model, Bundle) else load_bundle(model), runtime)
    files = image_files(inputs)
    k = max(1, min(top_k, len(bundle.classes)))
    results: list[dict] = []
    for path, probabilities in zip(files, class_probabilities(bundle, files, batch_size, runtime)):
        if probabilities is None:
            results.append({"image": str(path), "error": "unreadable image"})
            continue
        top = probabilities.topk(k)
        results.append({
            "image": str(path),
            "top": [{"label": bundle.classes[int(c)], "probability": round(float(p), 4)}
                    for p, c in zip(top.values, top.indices)],
        })
    if gradcam is not None:
        from .gradcam import write_gradcams

        tops = [bundle.classes.index(r["top"][0]["label"]) if "top" in r else None for r in results]
        for r, path in zip(results, write_gradcams(bundle, files, tops, Path(gradcam).expanduser())):
            if path is not None:
                r["gradcam"] = str(path)
    return results


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


def evaluate_folder(model: str | Path | Bundle, data: str | Path, batch_size: int = 32, runtime: Runtime = CPU) -> dict:
    """Accuracy, macro F1 and confusion matrix on a labelled folder.

    A folder with given splits is evaluated on its test split (or ``val/`` without
    one); a plain class-per-folder tree is evaluated whole; so is a .csv/.tsv list,
    except for its test (or val) rows when it has a split column; a CIFAR binary
    folder is evaluated on its test batch.
    """
    bundle = _on(model if isinstance(model, Bundle) else load_bundle(model), runtime)
    root = resolve_data_path(data)
    if not root.is_dir() and not is_list_file(root):
        raise wrong_kind(root, "data folder", "a folder or a .csv/.tsv list of images")
    folder, names, samples = evaluation_samples(root)
    unknown = [n for n in names if n not in bundle.classes]
    if unknown:
        raise UserError(f"class {unknown[0]!r} of {folder} is not one the model knows: {', '.join(bundle.classes)}")
    labels = [bundle.classes.index(names[s.label]) for s in samples]
    batches = image_batches([s.path for s in samples], bundle.transform(), batch_size, None, runtime.pin_memory,
                            runtime.device)
    found = collect(bundle.model, batches, runtime)
    unreadable = [str(samples[i].path) for i in found.unreadable]
    predicted = found.outputs.argmax(1).tolist() if found.indices else []
    truth = [labels[i] for i in found.indices]
    if not truth:
        raise UserError(f"no readable images in {folder}")
    return {
        "data": str(folder),
        "images": len(truth),
        "classes": bundle.classes,
        **score(truth, predicted, bundle.classes),
        "unreadable_count": len(unreadable),
        "unreadable_examples": unreadable[:5],
    }
