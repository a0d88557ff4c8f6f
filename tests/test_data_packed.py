"""Data packed in bigger files: WebDataset tar shards and Hugging Face ``datasets`` (saved to disk, parquet).

Each is made here from a small class folder (train/ and test/), so the folder is the reference:
the same seed chooses the same images (by their names) and gives the same accuracy.
"""

from __future__ import annotations

import io
import random
import tarfile
from pathlib import Path

import numpy as np
import pytest

from helpers import make_class_folders
from wiring import FINETUNE, PROBE, ProbeRecorder
from transferlab.data import load_dataset
from transferlab.data.packed import rank_positions, sort_name
from transferlab.data.shards import ShardImage

wds = pytest.importorskip("webdataset")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("packed") / "folder"
    make_class_folders(root / "train", {"red": 9, "green": 9, "blue": 9}, seed=1)
    make_class_folders(root / "test", {"red": 4, "green": 4, "blue": 4}, seed=2)
    return root


def pack(folder: Path, out: Path, per_shard: int = 5, shuffle: int | None = 0, prefix: str = "") -> Path:
    """Every image of ``folder`` as ``CLASS/NAME.png`` + ``.cls`` in tar shards (``{prefix}{split}-NNNNNN.tar``),
    written in a shuffled order (so that the index, not the packing, orders them)."""
    out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        files = sorted((folder / split).rglob("*.png"))
        if shuffle is not None:
            random.Random(shuffle).shuffle(files)
        with wds.ShardWriter(str(out / f"{prefix}{split}-%06d.tar"), maxcount=per_shard, verbose=0) as sink:
            for path in files:
                relative = path.relative_to(folder / split)
                sink.write({"__key__": relative.with_suffix("").as_posix(), "png": path.read_bytes(),
                            "cls": relative.parts[0]})
    return out


@pytest.fixture(scope="module")
def shards(folder) -> Path:
    return pack(folder, folder.parent / "shards")


def names(samples) -> list[str]:
    """Each image's name as the folder has it: CLASS/FILE."""
    return ["/".join(Path(str(s.path if hasattr(s, "path") else s).replace("#", "/")).parts[-2:]) for s in samples]


# -- the same images as the folder ---------------------------------------------------------------------------------

@pytest.mark.parametrize("options", [{"per_class": 4, "seed": 3}, {"per_class": 5, "seed": 1, "validation": True},
                                     {"test_per_class": 2, "seed": 2}])
def test_shards_split_and_choose_the_folders_images_for_the_same_seed(folder, shards, options):
    a, b = load_dataset(str(folder), **options), load_dataset(str(shards), **options)
    assert b.classes == a.classes == ["blue", "green", "red"]
    for part in ("train", "val", "test"):
        assert names(getattr(b, part) or []) == names(getattr(a, part) or [])
        assert [s.label for s in getattr(b, part) or []] == [s.label for s in getattr(a, part) or []]


def test_train_shards_alone_are_one_pool_split_by_ratios_as_a_folder_of_class_folders(folder, shards):
    pattern = str(shards / "train-{000000..000005}.tar")
    for options in ({"seed": 4}, {"per_class": 3, "seed": 0, "validation": True}):
        a, b = load_dataset(str(folder / "train"), **options), load_dataset(pattern, **options)
        assert b.evaluated_on == a.evaluated_on
        assert [names(getattr(b, p) or []) for p in ("train", "val", "test")] == \
               [names(getattr(a, p) or []) for p in ("train", "val", "test")]


def test_a_shard_image_is_read_by_seek_as_the_bytes_of_its_file(folder, shards):
    splits = load_dataset(str(shards))
    image = splits.train[0].path
    assert isinstance(image, ShardImage) and sort_name(image) == "blue/blue_000.png"
    assert image.read_bytes() == (folder / "train" / "blue" / "blue_000.png").read_bytes()


def probe_names(seen: ProbeRecorder) -> list[list[str]]:
    return [names(paths) for _, paths, _ in seen.extractions]


def test_probe_on_shards_extracts_the_folders_images_and_gets_its_accuracy(folder, shards, monkeypatch, tmp_path):
    from transferlab.probing.run import probe

    monkeypatch.setenv("TRANSFERLAB_CACHE_DIR", str(tmp_path / "cache"))
    seen = ProbeRecorder(monkeypatch)
    options = {**PROBE, "per_class": 5, "seed": 3, "cache": False, "progress": False}
    on_folder = probe(str(folder), **options)
    extracted, features = probe_names(seen), [f for _, _, f in seen.extractions]
    seen.clear()
    on_shards = probe(f"{shards}/train-{{000000..000005}}.tar::{shards}/test-{{000000..000002}}.tar", **options)
    assert probe_names(seen) == extracted and len(extracted[0]) == 15
    for mine, theirs in zip((f for _, _, f in seen.extractions), features):
        np.testing.assert_array_equal(mine, theirs)
    assert on_shards.accuracy == on_folder.accuracy
    assert names(p["path"] for p in on_shards.predictions) == names(p["path"] for p in on_folder.predictions)


def test_finetune_on_shards_trains_on_the_folders_images_and_ends_where_the_folder_does(folder, shards):
    from transferlab.finetune.run import finetune

    options = {**FINETUNE, "epochs": 2, "per_class": 4, "seed": 5, "progress": False}
    on_folder = finetune(str(folder), **options)
    on_shards = finetune(str(shards), **options)
    assert [e["samples"] for e in on_shards.history] == [e["samples"] for e in on_folder.history]
    assert [e["train_loss"] for e in on_shards.history] == pytest.approx([e["train_loss"] for e in on_folder.history])
    assert on_shards.accuracy == on_folder.accuracy
    assert names(p["path"] for p in on_shards.predictions) == names(p["path"] for p in on_folder.predictions)


# -- the feature cache keys on the image, not its place ------------------------------------------------------------

def test_cached_features_are_found_again_after_repacking_and_from_the_folder(folder, shards, tmp_path, monkeypatch):
    from transferlab.probing.run import probe

    monkeypatch.setenv("TRANSFERLAB_CACHE_DIR", str(tmp_path / "cache"))
    options = {**PROBE, "per_class": 4, "seed": 0, "progress": False}
    first = probe(str(shards), **options)
    assert first.features_computed == 12 + 12
    repacked = pack(folder, tmp_path / "repacked", per_shard=3, shuffle=7, prefix="")
    again = probe(str(repacked), **options)
    assert (again.features_computed, again.features_from_cache) == (0, 24)
    assert probe(str(folder), **options).features_computed == 0


# -- Hugging Face datasets ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hf(folder):
    datasets = pytest.importorskip("datasets")
    datasets.disable_progress_bars()
    order = ["red", "green", "blue"]  # ClassLabel's own order: classes still sort by name, as folders
    features = datasets.Features({"img": datasets.Image(), "fine": datasets.ClassLabel(names=order)})
    parts = {}
    for split, name in (("train", "train"), ("test", "test")):
        files = sorted((folder / split).rglob("*.png"), reverse=True)
        parts[name] = datasets.Dataset.from_dict(
            {"img": [{"bytes": f.read_bytes(), "path": f"{f.parent.name}/{f.name}"} for f in files],
             "fine": [order.index(f.parent.name) for f in files]}, features=features)
    saved = folder.parent / "hf-saved"
    datasets.DatasetDict(parts).save_to_disk(str(saved))
    parquet = folder.parent / "hf-parquet"
    parquet.mkdir()
    for name, part in parts.items():
        part.to_parquet(str(parquet / f"{name}-00000-of-00001.parquet"))
    return saved, parquet


def test_a_saved_dataset_and_its_parquet_files_give_the_folders_splits(folder, hf, tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_CACHE_DIR", str(tmp_path / "cache"))
    reference = load_dataset(str(folder), per_class=4, seed=3, validation=True)
    for path in hf:
        got = load_dataset(f"hf:{path}", per_class=4, seed=3, validation=True)
        assert got.classes == ["blue", "green", "red"]
        for part in ("train", "val", "test"):
            assert [(Path(s.path.stored_name).name, s.label) for s in getattr(got, part)] == \
                   [(s.path.name, s.label) for s in getattr(reference, part)]
        assert got.train[0].path.read_bytes() == reference.train[0].path.read_bytes()


def test_probe_on_a_saved_dataset_gets_the_folders_accuracy(folder, hf, monkeypatch, tmp_path):
    from transferlab.probing.run import probe

    monkeypatch.setenv("TRANSFERLAB_CACHE_DIR", str(tmp_path / "cache"))
    options = {**PROBE, "per_class": 5, "seed": 2, "num_workers": 2, "progress": False}
    on_folder = probe(str(folder), **options)
    on_hf = probe(f"hf:{hf[0]}", **options)
    assert on_hf.accuracy == on_folder.accuracy
    assert on_hf.features_computed == 0  # the same bytes: the folder's cached features


# -- rank sharding --------------------------------------------------------------------------------------------------

def members(counts: dict[str, int]) -> list[ShardImage]:
    items = [ShardImage(shard, f"k{i}.jpg", 512 * (i + 1), 10) for shard, n in counts.items() for i in range(n)]
    random.Random(0).shuffle(items)  # samples come in class order, not shard order
    return items


@pytest.mark.parametrize("world", [1, 2, 3, 5])
def test_each_shard_is_read_by_one_rank_and_every_image_once(world):
    items = members({"a.tar": 7, "b.tar": 3, "c.tar": 5, "d.tar": 5})
    owned = [rank_positions(items, rank, world) for rank in range(world)]
    assert sorted(p for part in owned for p in part) == list(range(len(items)))
    readers = {}
    for rank, part in enumerate(owned):
        for p in part:
            assert readers.setdefault(items[p].shard, rank) == rank
        assert [(items[p].shard, items[p].offset) for p in part] == sorted((items[p].shard, items[p].offset)
                                                                            for p in part)
    if world == 2:
        assert sorted(len(part) for part in owned) == [10, 10]


def test_files_are_left_to_the_contiguous_slices():
    assert rank_positions([Path("a.png"), Path("b.png")], 0, 2) is None


def test_probe_over_two_ranks_reads_each_shard_on_one_rank_and_matches_one_process(shards, tmp_path):
    import json

    from test_distributed import torchrun
    from helpers import run_cli

    args = ("probe", "--backbone", "test_efficientnet", "--random-init", "--head", "logreg", "--batch-size", "8",
            "--workers", "0", "--precision", "fp32", "--image-size", "32", "--json", "--predictions",
            "--data", str(shards))
    one = run_cli(*args, env={"TRANSFERLAB_CACHE_DIR": str(tmp_path / "c1")})
    two = torchrun("-v", *args, env={"TRANSFERLAB_CACHE_DIR": str(tmp_path / "c2")})
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-3000:]
    first, second = json.loads(one.stdout), json.loads(two.stdout)
    assert second["predictions"] == first["predictions"] and second["accuracy"] == first["accuracy"]
    read: dict[str, int] = {}
    for line in two.stderr.splitlines():
        if " reads " in line and "shard(s):" in line:
            rank = int(line.split("rank ")[1].split()[0])
            for name in filter(None, (n.strip() for n in line.split("shard(s): ")[1].split(","))):
                assert read.setdefault(name, rank) == rank
    assert set(read.values()) == {0, 1}
    assert sorted(read) == sorted(p.name for p in shards.glob("*.tar"))


# -- bad input: one error line, exit 2 ------------------------------------------------------------------------------

def tar_with(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buffer, "PNG")
    return buffer.getvalue()


def bad_shards(tmp_path: Path, case: str) -> str:
    good = {f"{c}{i}.{e}": (png() if e == "png" else c.encode()) for c in "ab" for i in range(3) for e in ("png", "cls")}
    folder = tmp_path / case
    folder.mkdir()
    if case == "not-a-tar":
        (folder / "train-0.tar").write_bytes(b"this is not a tar file at all" * 40)
    elif case == "truncated":
        data = tar_with(folder / "whole.tar", good).read_bytes()
        (folder / "whole.tar").unlink()
        (folder / "train-0.tar").write_bytes(data[:3000])
    elif case == "no-label":
        tar_with(folder / "train-0.tar", {k: v for k, v in good.items() if k != "b1.cls"})
    elif case == "empty-label":
        tar_with(folder / "train-0.tar", {**good, "b1.cls": b"  "})
    elif case == "no-image":
        tar_with(folder / "train-0.tar", {k: v for k, v in good.items() if k != "a2.png"})
    elif case == "same-key-twice":
        tar_with(folder / "train-0.tar", good)
        tar_with(folder / "train-1.tar", {"a0.png": png(), "a0.cls": b"a"})
    elif case == "missing-shard":
        tar_with(folder / "train-0.tar", good)
        return str(folder / "train-{0..1}.tar")
    elif case == "url":
        return "https://example.com/train-{000..009}.tar"
    return str(folder)


@pytest.mark.parametrize("case, says", [
    ("not-a-tar", "not a readable tar file"), ("truncated", "not a readable tar file"), ("no-label", "has no label"),
    ("empty-label", "is empty"), ("no-image", "has no image"), ("same-key-twice", "is in two shards"),
    ("missing-shard", "shard not found"), ("url", "only local shards"),
])
def test_bad_shards_are_one_error_line(cli, tmp_path, case, says):
    done = cli("probe", "--data", bad_shards(tmp_path, case), "--backbone", "test_efficientnet", "--random-init",
               "--workers", "0")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and says in lines[0], done.stderr


def test_an_undecodable_member_is_dropped_and_named_as_an_unreadable_file_is(tmp_path, monkeypatch):
    from transferlab.probing.run import probe

    monkeypatch.setenv("TRANSFERLAB_CACHE_DIR", str(tmp_path / "cache"))
    members_ = {f"{c}{i}.{e}": (png() if e == "png" else c.encode()) for c in "ab" for i in range(8)
                for e in ("png", "cls")}
    tar_with(tmp_path / "data.tar", {**members_, "a3.png": b"not an image"})
    result = probe(str(tmp_path / "data.tar"), **{**PROBE, "progress": False})
    assert result.unreadable_count == 1 and "data.tar#a3.png" in result.unreadable_examples[0]


def test_hf_without_a_label_column_or_path_is_one_error_line(cli, tmp_path):
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_dict({"image": [{"bytes": png(), "path": None}] * 4},
                               features=datasets.Features({"image": datasets.Image()})).save_to_disk(str(tmp_path / "d"))
    for data, says in ((f"hf:{tmp_path / 'd'}", "no label column"), (f"hf:{tmp_path / 'nothing'}", "not found")):
        done = cli("probe", "--data", data, "--backbone", "test_efficientnet", "--random-init", "--workers", "0")
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and says in lines[0], done.stderr


@pytest.mark.parametrize("module, data", [("braceexpand", "x/train-{0..1}.tar"), ("datasets", "hf:x")])
def test_a_missing_extra_is_one_error_line(cli, monkeypatch, module, data):
    import importlib.util
    import sys

    monkeypatch.setitem(sys.modules, module, None)  # import fails
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == module else real(name, *a))
    done = cli("probe", "--data", data)
    extra = "shards" if module == "braceexpand" else "hf"
    assert done.returncode == 2 and done.stderr.strip() == f"error: {'WebDataset shards' if extra == 'shards' else 'Hugging Face datasets'} need the '{extra}' extra: pip install 'transferlab[{extra}]'"


# -- studies --------------------------------------------------------------------------------------------------------

def test_a_study_on_shards_plans_and_its_fingerprint_follows_the_shards(folder, tmp_path):
    from study_fixtures import TINY_BACKBONE, write_study
    from transferlab.study.plan import plan_study
    from transferlab.study.spec import load_study

    copy = pack(folder, tmp_path / "shards")
    study = write_study(tmp_path, f"""
        name: packed
        data: shards/train-{{000000..000005}}.tar::shards/test-{{000000..000002}}.tar
        backbones: [{TINY_BACKBONE}]
        methods: [{{name: logreg, kind: probe, head: logreg, per_class: 3}}]
        """)
    plan = plan_study(load_study(study))
    assert plan.data.startswith(str(tmp_path)) and len(plan.runs) == 1
    tar_with(copy / "test-000002.tar", {"red/extra.png": png(), "red/extra.cls": b"red"})
    assert plan_study(load_study(study)).data_fingerprint != plan.data_fingerprint


def test_a_stored_prediction_of_a_shard_member_finds_its_picture_for_the_report(folder, shards):
    from transferlab.report.pictures import find_picture, picture_rgb

    picture = find_picture(f"{shards}/test-000000.tar#" + ShardImage.__name__)  # no such member
    assert picture is None
    member = load_dataset(str(shards)).test[0].path
    found = find_picture(str(member))
    assert found == member and picture_rgb(found).size == (32, 32)
