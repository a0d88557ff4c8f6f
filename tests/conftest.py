"""Shared fixtures: an isolated transferlab cache per test session, small image folders, backbones.

Every test sees ``TRANSFERLAB_CACHE_DIR`` pointing at one temporary folder for the
whole session, so the built-in digits dataset and the real backbone's features are
computed once, and nothing touches ``~/.cache``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import make_class_folders

os.environ["HF_HUB_OFFLINE"] = "1"  # no test may try a model hub


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory) -> Path:
    """One cache folder for the session, set before any fixture of any scope runs."""
    path = tmp_path_factory.mktemp("transferlab-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRANSFERLAB_CACHE_DIR", str(path))
        patch.setenv("HF_HUB_OFFLINE", "1")
        yield path


@pytest.fixture(autouse=True)
def isolated_cache(session_cache, monkeypatch) -> Path:
    """Each test starts with the session's cache folder, whatever the previous test changed."""
    monkeypatch.setenv("TRANSFERLAB_CACHE_DIR", str(session_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return session_cache


@pytest.fixture(scope="session")
def lite0():
    """The real EfficientNet-Lite0 with its offline ImageNet weights (loaded once)."""
    from transferlab.backbones import load_backbone

    return load_backbone("efficientnet_lite0")


@pytest.fixture(scope="session")
def tiny():
    """A tiny randomly initialised EfficientNet (input 160 px): fast, for plumbing tests."""
    from transferlab.backbones import load_backbone

    return load_backbone("test_efficientnet", random_init=True)


@pytest.fixture(scope="session")
def weights(tmp_path_factory) -> str:
    """A saved state dict of ``test_efficientnet`` (random init, seed 3): a ``--weights`` file that makes tiny
    fine-tunes start from fixed "pretrained" weights, as a real backbone would."""
    from safetensors.torch import save_file

    from transferlab.backbones import load_backbone

    source = load_backbone("test_efficientnet", random_init=True, seed=3)
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in source.model.state_dict().items()}, str(path))
    return str(path)


@pytest.fixture
def class_folders(tmp_path) -> Path:
    """Three classes (a, b, c) of 20 small images each, one folder per class."""
    return make_class_folders(tmp_path / "data", {"a": 20, "b": 20, "c": 20})


@pytest.fixture
def cli(capsys, monkeypatch):
    """``transferlab ARGS`` through the console-script entry point, in this process."""
    from transferlab.cli.main import run

    def invoke(*args: str) -> subprocess.CompletedProcess:
        monkeypatch.setattr(sys, "argv", ["transferlab", *args])
        try:
            run()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)

    return invoke
