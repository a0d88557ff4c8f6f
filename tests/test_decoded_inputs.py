"""Augmented fine-tuning decodes each training image once and augments the kept copy every epoch."""

from __future__ import annotations

import multiprocessing
import os
import random
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as F

from test_finetune import DATA_CONFIG, tiny_config
from transferlab.data import loading
from transferlab.engine import inputs
from transferlab.engine.inputs import DecodedInputs, ImageInputs
from transferlab.finetune.augment import KeepResized, train_transform
from transferlab.finetune.run import FinetuneRun, run_finetune


@pytest.fixture
def decodes(monkeypatch) -> Counter:
    """How often each file is decoded (in this process: the runs below use no workers)."""
    counts: Counter = Counter()
    decode = loading.decode_rgb

    def counting(path, min_size=None):
        counts[str(path)] += 1
        return decode(path, min_size)

    monkeypatch.setattr(loading, "decode_rgb", counting)
    return counts


def training_paths(config) -> list[str]:
    run = FinetuneRun(config)
    run.prepare()
    return [str(s.path) for s in run.train_samples]


def test_no_epoch_of_an_augmented_two_stage_run_decodes_a_training_image_again(class_folders, tmp_path, decodes):
    config = tiny_config(class_folders, tmp_path / "m", freeze="two-stage", epochs=2, stage2_epochs=2,
                         augment=["flip", "crop"], num_workers=0)
    run_finetune(config)
    paths = training_paths(config)
    assert paths and all(decodes[p] == 1 for p in paths), {p: decodes[p] for p in paths}


def test_images_that_do_not_fit_in_memory_are_decoded_every_epoch(class_folders, tmp_path, decodes, monkeypatch):
    monkeypatch.setattr(inputs, "memory_budget", lambda device: 0)
    monkeypatch.setattr("transferlab.finetune.run.memory_budget", lambda device: 0)
    config = tiny_config(class_folders, tmp_path / "m", freeze="none", epochs=3, augment=["flip"], num_workers=0)
    run_finetune(config)
    paths = training_paths(config)
    assert all(decodes[p] == 3 for p in paths)


@pytest.fixture
def half_white_file(tmp_path):
    image = Image.new("RGB", (96, 64), "black")
    image.paste((255, 255, 255), (0, 0, 48, 64))
    path = tmp_path / "half.png"
    image.save(path)
    return path


def test_kept_images_are_the_evaluation_resize_and_each_epoch_draws_new_augmentation(half_white_file):
    transform = train_transform(DATA_CONFIG, ["flip", "crop"])
    kept = DecodedInputs.decode([half_white_file] * 8, torch.zeros(8, dtype=torch.long), transform.keeper(),
                                transform, num_workers=0)
    assert all(min(image.shape[-2:]) == transform.keep_size for image in kept.images)  # 32 / crop_pct 1.0
    first = torch.cat([x for x, _, _ in kept.batches(4, range(8), seed=1)])
    second = torch.cat([x for x, _, _ in kept.batches(4, range(8), seed=2)])
    again = torch.cat([x for x, _, _ in kept.batches(4, range(8), seed=1)])
    assert first.shape == (8, 3, 32, 32)
    assert not torch.allclose(first, second)  # another epoch's seed: other crops
    assert torch.equal(first, again)
    assert len({tuple(image.flatten()[:64].tolist()) for image in first}) > 1  # one file, eight crops


def test_an_images_augmentation_depends_on_its_epoch_seed_and_row_alone(half_white_file):
    """Not on the worker that draws it, the number of workers, the batch it falls in, or the caller's random
    state; and the caller's random state is left as it was."""
    transform = train_transform(DATA_CONFIG, ["flip", "crop", "randaugment"])
    labels = torch.zeros(8, dtype=torch.long)

    def epoch(workers: int, batch_size: int, order) -> dict[int, torch.Tensor]:
        kept = DecodedInputs.decode([half_white_file] * 8, labels, transform.keeper(), transform, num_workers=0)
        kept.num_workers = workers
        states = torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy()
        try:
            return {int(i): x for xs, _, rows in kept.batches(batch_size, order, seed=5) for i, x in zip(rows, xs)}
        finally:
            kept.shutdown()
            assert torch.equal(torch.get_rng_state(), states[0]) and random.getstate() == states[1]
            assert (np.random.get_state()[1] == states[2]).all()

    torch.manual_seed(0)
    alone = epoch(0, 4, range(8))
    torch.manual_seed(123)
    shuffled = epoch(2, 3, [5, 2, 7, 0, 1, 6, 3, 4])
    assert alone.keys() == shuffled.keys()
    assert all(torch.equal(alone[i], shuffled[i]) for i in alone)


def worker_pid(image):
    return torch.tensor([os.getpid()])


def test_the_workers_persist_from_epoch_to_epoch_and_stop_with_the_run(half_white_file):
    """Forked afresh every epoch, workers made the training process copy every page it wrote again."""
    kept = DecodedInputs.decode([half_white_file] * 8, torch.zeros(8, dtype=torch.long), F.pil_to_tensor,
                                worker_pid, num_workers=2)
    epochs = [{int(p) for x, _, _ in kept.batches(2, range(8), seed=s) for p in x} for s in range(3)]
    assert len(epochs[0]) == 2 and os.getpid() not in epochs[0]
    assert epochs[0] == epochs[1] == epochs[2]
    assert {p.pid for p in multiprocessing.active_children()} >= epochs[0]
    kept.shutdown()
    assert not {p.pid for p in multiprocessing.active_children()} & epochs[0]


def test_a_kept_image_is_only_shrunk_never_enlarged():
    keep = KeepResized(48)
    assert tuple(keep(torch.zeros(3, 96, 128, dtype=torch.uint8)).shape) == (3, 48, 64)
    assert tuple(keep(torch.zeros(3, 20, 30, dtype=torch.uint8)).shape) == (3, 20, 30)


def test_the_tensor_augmentation_gives_a_pil_image_and_its_tensor_the_same_result():
    image = Image.new("RGB", (64, 48), "black")
    image.paste((200, 30, 30), (0, 0, 20, 48))
    transform = train_transform(DATA_CONFIG, ["rotate"], rotation=20)
    torch.manual_seed(3)
    from_pil = transform(image)
    torch.manual_seed(3)
    from_tensor = transform(F.pil_to_tensor(image))
    assert from_pil.shape == from_tensor.shape == (3, 32, 32)
    assert (from_pil - from_tensor).abs().mean() < 0.05


def test_without_augmentation_nothing_is_kept(class_folders, tmp_path):
    run = FinetuneRun(tiny_config(class_folders, tmp_path / "m", freeze="none", prefix_cache=False))
    run.prepare()
    assert isinstance(run.stage_inputs(run.train_samples, "train", training=True), ImageInputs)
    assert run.kept is None
