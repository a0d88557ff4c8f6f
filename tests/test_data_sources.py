"""Data beyond class folders: a CSV/TSV list of images, and CIFAR-10/100 in their binary distribution.

The CIFAR folders are written here byte for byte in the real layout (label byte(s) then
3072 channel-planar pixel bytes per record), a few records per class.
"""

from __future__ import annotations

import numpy as np
import pytest

from helpers import make_class_folders
from transferlab.data import load_dataset
from transferlab.data.cifar import CIFAR10
from transferlab.data.memory import MemoryImage, content_digest
from transferlab.errors import UserError
from transferlab.probing import probe

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
TINY = {"backbone": "test_efficientnet", "random_init": True, "num_workers": 0, "image_size": 64}


def cifar_pixels(label: int, rng) -> np.ndarray:
    """32 x 32 channel-planar pixels whose colour says the class (so a probe can learn it)."""
    planes = np.zeros((3, 32, 32))
    planes[label % 3] = 60 + 15 * label
    return np.clip(planes + rng.normal(0, 20, planes.shape), 0, 255).astype(np.uint8).reshape(-1)


def write_batch(path, labels, label_bytes: int = 1, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    records = []
    for label in labels:
        prefix = [label // 2, label] if label_bytes == 2 else [label]  # CIFAR-100: coarse, then fine
        records.append(np.concatenate([np.array(prefix, np.uint8), cifar_pixels(label, rng)]))
    np.concatenate(records).tofile(path)


def make_cifar10(root, per_class_per_batch: int = 2, classes: int = 3):
    """A cifar-10-batches-bin folder: five training batches and the test batch; images of the first classes only."""
    root.mkdir(parents=True)
    (root / "batches.meta.txt").write_text("\n".join(CIFAR10_NAMES) + "\n\n")
    labels = [c for c in range(classes) for _ in range(per_class_per_batch)]
    for i, name in enumerate(CIFAR10.train):
        write_batch(root / name, labels, seed=i)
    write_batch(root / CIFAR10.test, labels, seed=99)
    return root


def make_list(folder, rows: list[str], name: str = "list.csv") -> object:
    path = folder / name
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture
def listed(tmp_path):
    """list.csv in lists/ naming images in ../images/<class>/ by paths relative to itself."""
    make_class_folders(tmp_path / "images", {"red": 8, "green": 8, "blue": 8})
    (tmp_path / "lists").mkdir()
    rows = ["path,label"] + [f"../images/{c}/{c}_{i:03d}.png,{c}" for c in ("red", "green", "blue") for i in range(8)]
    return make_list(tmp_path / "lists", rows)


# -- CSV / TSV lists -------------------------------------------------------------------------------------------


def test_a_list_file_loads_with_paths_relative_to_itself(listed, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path / "images" / "red")  # not where the list is: paths must not depend on it
    splits = load_dataset(listed)
    assert splits.classes == ["blue", "green", "red"]
    assert sum(splits.counts().values()) == 24
    image = next(s for s in splits.train if s.label == splits.classes.index("green")).path
    assert image.parent == tmp_path / "lists" / ".." / "images" / "green"


def test_a_tsv_list_with_a_split_column_keeps_its_splits(tmp_path):
    make_class_folders(tmp_path / "im", {"x": 6, "y": 6})
    rows = ["label\tpath\tsplit"] + [f"{c}\tim/{c}/{c}_{i:03d}.png\t{'test' if i < 2 else 'train'}"
                                     for c in "xy" for i in range(6)]
    splits = load_dataset(make_list(tmp_path, rows, "list.tsv"))
    assert splits.counts() == {"train": 8, "val": 0, "test": 4}
    assert all(int(s.path.stem[-3:]) < 2 for s in splits.test)


@pytest.mark.parametrize("rows, line, message", [
    (["path,label", "im/x/x_000.png,x", "im/x/missing.png,x"], 3, "image not found"),
    (["path,label,colour", "im/x/x_000.png,x,red"], 1, "unknown column 'colour'"),
    (["path,label", "im/x/x_000.png,x", "im/y/y_000.png,x", "im/y/y_001.png,"], 4, "empty label"),
    (["path,label", "im/x/x_000.png"], 2, "1 fields where the header has 2"),
    (["path,label,split", "im/x/x_000.png,x,holdout"], 2, "unknown split 'holdout'"),
    (["im/x/x_000.png,x"], 1, "unknown column"),  # no header: the first row is read as one
])
def test_a_bad_list_is_one_error_with_its_file_and_line(cli, tmp_path, rows, line, message):
    make_class_folders(tmp_path / "im", {"x": 2, "y": 2})
    path = make_list(tmp_path, rows)
    result = cli("probe", "--data", str(path), "--backbone", "test_efficientnet", "--random-init")
    assert result.returncode == 2
    assert result.stderr.strip() == result.stderr.strip().splitlines()[0]  # one line, no traceback
    assert result.stderr.startswith(f"error: {path}:{line}: ") and message in result.stderr


def test_a_data_file_that_is_not_a_list_is_refused(cli, tmp_path):
    (tmp_path / "list.txt").write_text("path,label\n")
    result = cli("probe", "--data", str(tmp_path / "list.txt"))
    assert result.returncode == 2 and "not a folder or a .csv/.tsv list" in result.stderr


def test_probe_runs_on_a_listed_dataset(cli, listed):
    import json

    result = cli("probe", "--data", str(listed), "--backbone", "test_efficientnet", "--random-init",
                 "--image-size", "64", "--workers", "0", "--json")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["classes"] == ["blue", "green", "red"]
    assert (record["train_images"], record["test_images"]) == (16, 4)  # 70/15/15 of 24, stratified


# -- CIFAR binary ----------------------------------------------------------------------------------------------


def test_cifar10_binary_loads_with_its_train_and_test_split(tmp_path):
    root = make_cifar10(tmp_path / "cifar-10-batches-bin")
    splits = load_dataset(root)
    assert splits.classes == CIFAR10_NAMES
    assert splits.counts() == {"train": 5 * 6, "val": 0, "test": 6}
    assert "test_batch.bin" in splits.evaluated_on
    record = splits.test[0].path
    assert isinstance(record, MemoryImage) and record.source == root / "test_batch.bin"


def test_cifar_records_are_read_channel_planar(tmp_path):
    root = make_cifar10(tmp_path / "c")
    raw = np.fromfile(root / "test_batch.bin", np.uint8).reshape(-1, 3073)
    sample = load_dataset(root).test[3]
    assert sample.label == raw[3, 0]
    expected = raw[3, 1:].reshape(3, 32, 32)
    assert np.array_equal(sample.path.tensor().numpy(), expected)
    assert np.array_equal(np.asarray(sample.path.pil()), expected.transpose(1, 2, 0))


def test_cifar100_binary_uses_the_fine_labels(tmp_path):
    root = tmp_path / "cifar-100-binary"
    root.mkdir()
    names = [f"fine{i}" for i in range(100)]
    (root / "fine_label_names.txt").write_text("\n".join(names))
    (root / "coarse_label_names.txt").write_text("\n".join(f"coarse{i}" for i in range(20)))
    write_batch(root / "train.bin", [7, 7, 9, 9], label_bytes=2)
    write_batch(root / "test.bin", [9, 7], label_bytes=2)
    splits = load_dataset(root)
    assert [s.label for s in splits.train] == [7, 7, 9, 9] and [s.label for s in splits.test] == [9, 7]
    assert splits.classes == names


def test_the_python_cifar_version_is_refused_without_unpickling(cli, tmp_path, monkeypatch):
    import pickle

    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    for name in ("batches.meta", "data_batch_1", "test_batch"):
        (root / name).write_bytes(b"not read")
    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("unpickled"))
    result = cli("probe", "--data", str(root), "--backbone", "test_efficientnet", "--random-init")
    assert result.returncode == 2
    assert "Python version of CIFAR" in result.stderr and "use the binary version" in result.stderr


def test_a_truncated_cifar_batch_is_one_user_error(tmp_path):
    root = make_cifar10(tmp_path / "c")
    data = (root / "data_batch_2.bin").read_bytes()
    (root / "data_batch_2.bin").write_bytes(data[:-10])
    with pytest.raises(UserError, match="data_batch_2.bin is not a CIFAR-10 binary batch"):
        load_dataset(root)


def test_a_cifar_folder_missing_a_batch_is_one_user_error(tmp_path):
    root = make_cifar10(tmp_path / "c")
    (root / "data_batch_4.bin").unlink()
    with pytest.raises(UserError, match="no data_batch_4.bin"):
        load_dataset(root)


def test_probe_runs_on_cifar10_binary_end_to_end(tmp_path):
    root = make_cifar10(tmp_path / "cifar-10-batches-bin")
    result = probe(root, **TINY)
    assert result.train_images == 30 and result.test_images == 6
    assert result.features_computed == 36
    assert result.predictions[0]["path"] == f"{root / 'test_batch.bin'}#0"
    again = probe(root, **TINY)
    assert again.features_from_cache == 36 and again.accuracy == result.accuracy


def test_finetune_runs_on_cifar10_binary(tmp_path):
    from transferlab.finetune import finetune

    root = make_cifar10(tmp_path / "cifar-10-batches-bin")
    result = finetune(root, output=str(tmp_path / "m"), epochs=1, freeze="half", batch_size=16,
                      early_stopping="none", **TINY)
    assert result.test_images == 6 and len(result.classes) == 10


def test_evaluate_takes_a_cifar_folder_and_a_list(cli, tmp_path, listed):
    import json

    from transferlab.finetune import finetune

    root = make_cifar10(tmp_path / "cifar-10-batches-bin")
    finetune(root, output=str(tmp_path / "m"), epochs=1, freeze="all", batch_size=16, early_stopping="none", **TINY)
    result = cli("evaluate", str(tmp_path / "m"), "--data", str(root), "--json")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["images"] == 6 and record["data"].endswith("test_batch.bin")

    finetune(listed, output=str(tmp_path / "l"), epochs=1, freeze="all", batch_size=16, early_stopping="none", **TINY)
    result = cli("evaluate", str(tmp_path / "l"), "--data", str(listed), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["images"] == 24  # a list without a split column is evaluated whole


# -- the cache and the study fingerprint key on content -----------------------------------------------------------


def test_in_memory_images_key_the_cache_by_their_pixels(tmp_path):
    pixels = bytes(range(256)) * 12
    one = MemoryImage(tmp_path / "a.bin", 0, 32, 32, pixels)
    same_elsewhere = MemoryImage(tmp_path / "b.bin", 5, 32, 32, pixels)
    changed = MemoryImage(tmp_path / "a.bin", 0, 32, 32, pixels[:-1] + b"\x00")
    assert content_digest(one) == content_digest(same_elsewhere)
    assert content_digest(one) != content_digest(changed)


def test_the_study_fingerprint_follows_cifar_bytes_and_listed_images(tmp_path, listed):
    from transferlab.study.identity import data_fingerprint

    root = make_cifar10(tmp_path / "c")
    before = data_fingerprint(root)
    data = bytearray((root / "data_batch_3.bin").read_bytes())
    data[100] ^= 0xFF
    (root / "data_batch_3.bin").write_bytes(bytes(data))
    assert data_fingerprint(root) != before

    listed_before = data_fingerprint(listed)
    image = tmp_path / "images" / "red" / "red_003.png"
    image.write_bytes(image.read_bytes() + b"\x00")  # same name, other content
    assert data_fingerprint(listed) != listed_before
