"""One timing model: a run's phases add up to every time the tables show, a cached run says "from cache",
a run with nothing frozen shows no frozen part, and inference per image is timed on one warm full batch.

No assertion here is about how fast anything is: only about which phases make up which figure.
"""

from __future__ import annotations

import math

import pytest
import torch

from transferlab.evaluation import INFERENCE_BATCH, TIMED_CALLS, inference_ms_per_image
from transferlab.finetune import FinetuneConfig, run_finetune
from transferlab.probing import probe
from transferlab.report.records import RunRecord
from transferlab.report.tables import comparison_rows
from transferlab.timing import FROZEN_PHASES, PHASES, TEST_PHASES, TRAINING_PHASES

TINY = {"backbone": "test_efficientnet", "random_init": True, "num_workers": 0}


def sums(result) -> dict[str, float]:
    phases = result.phases
    return {group: sum(phases.get(name, 0.0) for name in names)
            for group, names in (("training", TRAINING_PHASES), ("frozen", FROZEN_PHASES), ("test", TEST_PHASES))}


def row_of(result, kind: str) -> dict:
    record = RunRecord("r0", "m", kind, result.backbone, {}, "done", result, result.config)
    return comparison_rows([record])[0]


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_CACHE_DIR", str(tmp_path / "cache"))


def test_a_probes_times_are_sums_of_its_phases(class_folders, own_cache):
    result = probe(class_folders, head="logreg", **TINY)
    total = sums(result)

    assert set(result.phases) <= set(PHASES) and all(v >= 0 for v in result.phases.values())
    assert result.training_seconds == pytest.approx(total["training"])
    assert result.train_features_seconds == pytest.approx(total["frozen"])
    assert result.test_seconds == pytest.approx(total["test"])
    features = [p for p in FROZEN_PHASES + TEST_PHASES if p.split("_", 1)[1] in ("cache_read", "decode",
                                                                                  "frozen_forward")]
    assert result.extraction_seconds == pytest.approx(sum(result.phases.get(p, 0.0) for p in features))
    row = row_of(result, "probe")
    assert row["training_seconds"] == pytest.approx(total["training"])
    assert row["frozen_seconds"] == pytest.approx(total["frozen"])
    assert row["test_seconds_mean"] == pytest.approx(total["test"])
    assert "features" not in row["training"]  # the frozen features are the total's frozen part, counted once


def test_a_run_on_cached_features_says_from_cache(class_folders, own_cache, cli):
    computed = probe(class_folders, head="logreg", **TINY)
    cached = probe(class_folders, head="logreg", **TINY)

    assert computed.test_text() != "from cache" and "frozen part" in computed.training_text()
    assert cached.features_computed == 0
    assert cached.test_text() == "from cache"
    assert "frozen features from cache" in cached.training_text()
    row = row_of(cached, "probe")
    assert row["test_seconds"] == "from cache" and "from cache" in row["training_total"]
    assert math.isfinite(cached.inference_ms_per_image) and cached.inference_ms_per_image > 0

    printed = cli("probe", "-d", str(class_folders), "-b", "test_efficientnet", "--random-init", "--workers", "0")
    line = next(line for line in printed.stdout.splitlines() if "test set inference" in line)
    assert "from cache" in line


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    """Two tiny fine-tuning runs, one with half the units frozen, one with none."""
    from helpers import make_class_folders

    root = tmp_path_factory.mktemp("timing")
    data = make_class_folders(root / "data", {"a": 12, "b": 12, "c": 12})
    return {freeze: run_finetune(FinetuneConfig(data=str(data), output=str(root / freeze), epochs=2, freeze=freeze,
                                                early_stopping="none", batch_size=8, **TINY))
            for freeze in ("half", "none")}


@pytest.mark.parametrize("freeze", ["half", "none"])
def test_fine_tunings_times_are_sums_of_its_phases_none_counted_twice(finetuned, freeze):
    result = finetuned[freeze]
    total = sums(result)

    assert set(result.phases) <= set(PHASES)
    assert all(v >= 0 for v in result.phases.values()), result.phases  # train_other < 0: a part counted twice
    assert result.training_seconds == pytest.approx(total["training"])
    assert result.test_seconds == pytest.approx(total["test"])
    assert result.phases["train_network"] == pytest.approx(sum(h["seconds"] for h in result.history))
    assert result.phases["train_decode"] > 0  # the prefix cache decodes the images once, even with nothing frozen


def test_a_run_with_nothing_frozen_shows_no_frozen_part(finetuned):
    frozen, unfrozen = finetuned["half"], finetuned["none"]

    assert frozen.frozen_seconds() is not None and "frozen part" in frozen.training_text()
    assert "train_frozen_forward" not in unfrozen.phases
    assert unfrozen.frozen_seconds() is None and "frozen part" not in unfrozen.training_text()
    row = row_of(unfrozen, "finetune")
    assert row["frozen_seconds"] is None and "frozen" not in row["training_total"]


def test_inference_is_timed_on_one_full_warm_batch_once_per_process_and_key(tiny, tmp_path):
    """Three test images are repeated to a batch of 16; one untimed call, then the timed ones; a second run of
    the same backbone and runtime reuses the figure."""
    from PIL import Image

    seen: list[int] = []
    model = torch.nn.Conv2d(3, 2, 1)

    def forward(x):
        seen.append(len(x))
        return model(x).mean((2, 3))

    paths = []
    for i in range(3):
        Image.new("RGB", (8, 8), (i * 80, 0, 0)).save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
    key = ("test", str(tmp_path))
    first = inference_ms_per_image(model, forward, paths, tiny.eval_transform(), key=key)
    again = inference_ms_per_image(model, forward, paths, tiny.eval_transform(), key=key)

    assert seen == [INFERENCE_BATCH] * (1 + TIMED_CALLS)
    assert again == first
