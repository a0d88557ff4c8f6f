"""Sharing a saved model: ``transferlab push`` (a Hub folder with a model card) and the ONNX export's metadata.

The folder a dry run writes is read back by the tools a user shares with: timm (``local-dir:``) must
give the bundle's logits, ``huggingface_hub.ModelCard`` must find the card's metadata; an ONNX file's
metadata is read back by onnx and onnxruntime. One tiny fine-tune (``test_efficientnet``, random
weights) serves the module.
"""

from __future__ import annotations

import json

import pytest
import torch

from helpers import make_class_folders
from test_finetune import TINY
from transferlab.finetune import FinetuneConfig, load_bundle, run_finetune
from transferlab.finetune.bundle import read_meta
from transferlab.finetune.share import model_card

PUSHED = {"README.md", "config.json", "model.safetensors", "transferlab.json"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(model folder, result) of a two-epoch fine-tune on three small classes in a folder named ``colours``."""
    root = tmp_path_factory.mktemp("share")
    data = make_class_folders(root / "colours", {"a": 20, "b": 20, "c": 20})
    result = run_finetune(FinetuneConfig(**TINY, data=str(data), output=str(root / "model"), epochs=2,
                                         freeze="half", early_stopping="none"))
    return root / "model", result


def assert_one_error(result, *fragments: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def card_of(folder):
    from huggingface_hub import ModelCard

    return ModelCard.load(folder / "README.md")


# -- push --dry-run --------------------------------------------------------------------------------------------------

def test_a_dry_run_folder_loads_in_timm_with_the_bundles_logits(cli, trained, tmp_path):
    import timm

    model, _ = trained
    out = tmp_path / "pushed"
    result = cli("push", str(model), "someone/colours", "--dry-run", "--output", str(out))

    assert result.returncode == 0, result.stderr
    assert "pushed nothing" in result.stdout
    assert {p.name for p in out.iterdir()} == PUSHED
    net = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    x = torch.randn(2, 3, 160, 160, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(net(x), load_bundle(model).model(x), rtol=1e-4, atol=1e-5)
    assert net.pretrained_cfg["label_names"] == ["a", "b", "c"]
    assert load_bundle(out).classes == ["a", "b", "c"]  # transferlab loads the pushed folder too


def test_the_card_carries_the_metrics_with_their_intervals_the_config_and_the_hub_metadata(cli, trained, tmp_path):
    model, result = trained
    out = tmp_path / "pushed"
    assert cli("push", str(model), "someone/colours", "--dry-run", "-o", str(out)).returncode == 0

    card = card_of(out)
    data = card.data.to_dict()
    assert data["library_name"] == "timm"
    assert data["pipeline_tag"] == "image-classification"
    assert data["datasets"] == ["colours"]
    assert "base_model" not in data  # random weights: no pretrained model was fine-tuned
    metrics = data["transferlab"]["metrics"]
    assert metrics["accuracy"] == pytest.approx(result.accuracy)
    assert metrics["accuracy_95_interval"] == pytest.approx(list(result.interval()))
    assert metrics["macro_f1"] == pytest.approx(result.macro_f1)
    assert metrics["test_images"] == result.test_images
    config = data["transferlab"]["training_config"]
    assert (config["backbone"], config["epochs"], config["freeze"], config["lr"]) == ("test_efficientnet", 2,
                                                                                      "half", pytest.approx(1e-3))
    assert "data" not in config and "output" not in config  # no local paths on the Hub
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results == {"accuracy": pytest.approx(result.accuracy), "f1": pytest.approx(result.macro_f1)}
    low, high = result.interval()
    assert f"| accuracy | {result.accuracy:.4f} | [{low:.4f}, {high:.4f}] |" in card.text
    assert "## Intended use and limitations" in card.text


def test_a_pretrained_backbone_is_the_cards_base_model(trained):
    model, _ = trained
    meta = read_meta(model)
    meta["backbone"]["weights"] = "timm: test_efficientnet.r160_in1k"
    meta["backbone"]["timm_name"] = "test_efficientnet.r160_in1k"
    meta["training"]["config"]["random_init"] = False
    assert model_card(meta, "someone/colours").data.base_model == "timm/test_efficientnet.r160_in1k"


def test_a_dry_run_never_writes_into_a_folder_holding_files(cli, trained, tmp_path):
    model, _ = trained
    out = tmp_path / "pushed"
    out.mkdir()
    (out / "README.md").write_text("mine")

    assert_one_error(cli("push", str(model), "someone/colours", "--dry-run", "-o", str(out)), "not an empty folder")
    assert [p.name for p in out.iterdir()] == ["README.md"] and (out / "README.md").read_text() == "mine"


def test_a_dry_run_fills_an_empty_folder(cli, trained, tmp_path):
    model, _ = trained
    (tmp_path / "empty").mkdir()
    assert cli("push", str(model), "someone/colours", "--dry-run", "-o", str(tmp_path / "empty")).returncode == 0
    assert {p.name for p in (tmp_path / "empty").iterdir()} == PUSHED


@pytest.mark.parametrize("args, fragment", [
    (("someone/colours", "--dry-run"), "--output"),
    (("not a/repo id!", "--dry-run", "-o", "OUT"), "not a Hub repository id"),
])
def test_a_dry_run_without_a_folder_or_with_a_bad_repo_id_is_one_error(cli, trained, tmp_path, args, fragment):
    model, _ = trained
    args = tuple(str(tmp_path / "out") if a == "OUT" else a for a in args)
    assert_one_error(cli("push", str(model), *args), fragment)
    assert not (tmp_path / "out").exists()


# -- a real push -----------------------------------------------------------------------------------------------------

def test_a_push_uploads_the_folder_a_dry_run_writes(cli, trained, tmp_path, monkeypatch):
    """Patched at huggingface_hub's boundary only: what upload_folder was given equals the dry run's folder."""
    from huggingface_hub import HfApi

    model, _ = trained
    calls = {}

    def create_repo(self, repo_id, **kwargs):
        calls["create"] = (repo_id, kwargs.get("private"))

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        calls["upload"] = repo_id
        calls["files"] = {p.name: p.read_bytes() for p in __import__("pathlib").Path(folder_path).iterdir()}
        return "https://huggingface.co/someone/colours/commit/0"

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    result = cli("push", str(model), "someone/colours", "--private")
    assert result.returncode == 0, result.stderr
    assert calls["create"] == ("someone/colours", True) and calls["upload"] == "someone/colours"
    assert cli("push", str(model), "someone/colours", "--dry-run", "-o", str(tmp_path / "dry")).returncode == 0
    assert calls["files"] == {p.name: p.read_bytes() for p in (tmp_path / "dry").iterdir()}


def test_a_push_without_the_hub_is_one_error_line(cli, trained, monkeypatch):
    from huggingface_hub import constants

    model, _ = trained
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there: as offline
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "2")
    assert_one_error(cli("push", str(model), "someone/colours"), "cannot push to the Hub repository someone/colours")


# -- ONNX metadata -----------------------------------------------------------------------------------------------------

def test_an_onnx_export_carries_class_names_preprocessing_and_version(cli, trained, tmp_path):
    pytest.importorskip("onnxruntime")
    import onnx
    import onnxruntime

    from transferlab import __version__

    model, _ = trained
    target = tmp_path / "model.onnx"
    assert cli("export", str(model), "--format", "onnx", "-o", str(target)).returncode == 0

    props = {p.key: p.value for p in onnx.load(str(target)).metadata_props}
    runtime = onnxruntime.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    assert runtime.get_modelmeta().custom_metadata_map == props
    assert json.loads(props["classes"]) == ["a", "b", "c"]
    preprocessing = json.loads(props["preprocessing"])
    assert preprocessing == read_meta(model)["preprocessing"]
    assert {"mean", "std", "input_size", "interpolation", "crop_pct"} <= set(preprocessing)
    assert props["transferlab_version"] == __version__
    assert props["backbone"].startswith("test_efficientnet")
