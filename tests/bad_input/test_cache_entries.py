"""Feature-cache entries changed on disk (NaN, 1e6, another shape or dtype, another container): each is discarded
with one warning and recomputed, so the probe gives the result of a clean cache, never a traceback."""

from __future__ import annotations

import io
import json
import logging

import numpy as np
import pytest
from bad_input_checks import assert_clean_success
from helpers import make_class_folders

from transferlab.readback import array_digest

TINY = ("-b", "test_efficientnet", "--random-init", "--workers", "0")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_class_folders(tmp_path_factory.mktemp("feature-cache") / "data", {"a": 10, "b": 10})


def entry(features, digest=None) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, features=features, digest=np.array(digest or array_digest(features)))
    return buffer.getvalue()


def _features(path):
    with np.load(path) as stored:
        return stored["features"]


DAMAGES = {  # what an entry becomes: a function of the stored features
    "NaN, digest recomputed": lambda f: entry(np.full_like(f, np.nan)),
    "one value NaN": lambda f: entry(np.where(np.arange(f.size) == 0, np.nan, f).astype(np.float32)),
    "1e6 everywhere, the old digest": lambda f: entry(np.full_like(f, 1e6), array_digest(f)),
    "scaled by 1e6": lambda f: entry(f * np.float32(1e6), array_digest(f)),
    "another shape, digest recomputed": lambda f: entry(np.concatenate([f, f])),
    "float64, digest recomputed": lambda f: entry(f.astype(np.float64)),
    "no digest": lambda f: (lambda b: (np.savez(b, features=f), b.getvalue())[1])(io.BytesIO()),
    "a plain .npy": lambda f: (lambda b: (np.save(b, f), b.getvalue())[1])(io.BytesIO()),
    "truncated": lambda f: entry(f)[: len(entry(f)) // 2],
    "garbage": lambda f: b"\x00garbage" * 10,
}


def probe(cli, data, cache):
    result = cli("--cache-dir", str(cache), "probe", "-d", str(data), *TINY, "--json")
    assert_clean_success(result)
    return json.loads(result.stdout)


def test_damaged_cache_entries_are_discarded_with_one_warning_and_recomputed(cli, data, tmp_path, caplog):
    """Each kind of damage on an entry of its own: every one is recomputed, the result is the clean cache's."""
    cache = tmp_path / "cache"
    clean = probe(cli, data, cache)
    entries = sorted((cache / "features").rglob("*.npz"))
    total = len(entries)
    assert clean["features_computed"] == total > len(DAMAGES)
    damaged = dict(zip(DAMAGES, entries))
    for name, path in damaged.items():
        path.write_bytes(DAMAGES[name](_features(path)))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        again = probe(cli, data, cache)
    assert again["accuracy"] == clean["accuracy"] and again["confusion_matrix"] == clean["confusion_matrix"]
    assert (again["features_computed"], again["features_from_cache"]) == (len(DAMAGES), total - len(DAMAGES))
    warnings = [r.getMessage() for r in caplog.records if "feature cache entry" in r.getMessage()]
    assert len(warnings) == 1 and "discarded" in warnings[0]
    for path in damaged.values():  # rewritten whole: the next run reads every entry
        assert np.isfinite(_features(path)).all()
    caplog.clear()
    assert probe(cli, data, cache)["features_from_cache"] == total
    assert not [r for r in caplog.records if "feature cache entry" in r.getMessage()]
