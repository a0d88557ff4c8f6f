"""The `transferlab` command: results on stdout, one clear error line on stderr and exit code 2 for bad input.

Each process start imports torch and timm (several seconds), so the commands that
prove the real process contract run as subprocesses, and the many bad-input cases
run the same entry point (``transferlab.cli.main:run``) in this process.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from PIL import Image

from helpers import DIGITS_SMALL, make_class_folders, run_cli

skimage_data = pytest.importorskip("skimage.data")

SMALL = ["--num-classes", str(DIGITS_SMALL["num_classes"]), "--per-class", str(DIGITS_SMALL["per_class"])]



def assert_one_error_line(result, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]


def test_probe_json_prints_the_measured_figures():
    result = run_cli("probe", "--data", "digits", *SMALL, "--json")

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    record = json.loads(result.stdout)
    for key in ("accuracy", "macro_f1", "extraction_seconds", "head_fit_seconds", "feature_dim", "images_per_second"):
        assert key in record
    assert record["feature_dim"] == 1280
    assert record["accuracy"] > 0.8
    assert "predictions" not in record


def test_probe_table_goes_to_stdout_and_cache_dir_option_holds_the_cache(tmp_path):
    data = make_class_folders(tmp_path / "data", {"a": 8, "b": 8})
    cache = tmp_path / "my-cache"

    result = run_cli("--cache-dir", str(cache), "probe", "-d", str(data), "-b", "test_resnet", "--random-init",
                     "--precision", "fp32")

    assert result.returncode == 0, result.stderr
    assert "accuracy" in result.stdout and "test_resnet" in result.stdout
    assert "cpu, fp32" in result.stdout  # where it ran, said without asking
    assert list((cache / "features").rglob("*.npz"))


def test_probe_json_with_predictions_lists_each_test_image(cli, two_classes):
    result = cli("probe", "-d", str(two_classes), "-b", "test_efficientnet", "--random-init", "--workers", "0",
                 "--json", "--predictions")

    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert len(record["predictions"]) == record["test_images"] > 0


@pytest.fixture
def two_classes(tmp_path):
    return make_class_folders(tmp_path / "two", {"a": 8, "b": 8})


def test_unknown_backbone_is_one_error_line_from_the_real_process(two_classes):
    assert_one_error_line(run_cli("probe", "-d", str(two_classes), "-b", "no_such_net"), "unknown backbone")


def test_bad_option_value_is_one_error_line_from_the_real_process(two_classes):
    assert_one_error_line(run_cli("probe", "-d", str(two_classes), "--pooling", "mean"), "--pooling")


def test_missing_data_folder_is_one_error_line(cli, tmp_path):
    assert_one_error_line(cli("probe", "-d", str(tmp_path / "nowhere")), "data folder not found")


CHECK_BEFORE_TORCH = """
import sys
from transferlab.cli.main import run
sys.argv = ["transferlab", *sys.argv[1:]]
try:
    run()
except SystemExit as exc:
    print("exit", exc.code, "torch loaded:", "torch" in sys.modules)
"""


@pytest.mark.parametrize("command", ["probe", "finetune"])
def test_missing_data_folder_is_reported_before_torch_loads(tmp_path, command):
    out = subprocess.run([sys.executable, "-c", CHECK_BEFORE_TORCH, command, "-d", str(tmp_path / "nowhere")],
                         capture_output=True, text=True)

    assert "data folder not found" in out.stderr
    assert out.stdout.strip() == "exit 2 torch loaded: False"


def test_one_class_folder_is_one_error_line(cli, tmp_path):
    data = make_class_folders(tmp_path / "one", {"only": 8})

    assert_one_error_line(cli("probe", "-d", str(data)), "at least two class folders")


def test_empty_class_folder_is_one_error_line(cli, two_classes):
    (two_classes / "c").mkdir()

    assert_one_error_line(cli("probe", "-d", str(two_classes)), "has no images")


@pytest.mark.parametrize("split", ["0.7,0.3", "a,b,c", "0.7,0.3,0"])
def test_bad_split_is_one_error_line(cli, two_classes, split):
    assert_one_error_line(cli("probe", "-d", str(two_classes), "--split", split), "--split")


def test_missing_required_option_is_one_error_line(cli):
    assert_one_error_line(cli("probe"), "--data")


def test_unknown_command_is_one_error_line(cli):
    assert_one_error_line(cli("frobnicate"), "frobnicate")


def test_backbone_without_offline_weights_is_one_error_line_naming_weights_option(two_classes, tmp_path):
    empty = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": str(tmp_path / "hf" / "hub"), "TORCH_HOME": str(tmp_path / "torch")}

    result = run_cli("probe", "-d", str(two_classes), "-b", "resnet50", env=empty)

    assert_one_error_line(result, "resnet50", "--weights")


def test_bare_command_prints_help_and_succeeds(cli):
    result = cli()

    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout and "probe" in result.stdout


def test_backbones_lists_efficientnet_lite0_as_available_offline():
    result = run_cli("backbones")

    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if " efficientnet_lite0 " in line)
    assert "yes" in line


def test_layers_lists_the_freeze_units_and_feature_layers_of_efficientnet_lite0():
    result = run_cli("layers", "efficientnet_lite0")

    assert result.returncode == 0, result.stderr
    assert "17 freeze units" in result.stdout and "5 feature layers" in result.stdout
    units, features = result.stdout.split("5 feature layers")
    for name in ("conv_stem", "blocks.3.2", "blocks.6.0", "conv_head"):
        assert name in units
    for name in ("blocks.0", "blocks.6", "320 x 7 x 7", "15,680", "pre_logits", "logits"):
        assert name in features
    assert "100.0" in units  # the last unit's cumulative share: first:17 freezes the whole backbone


def test_layers_json_counts_parameters_and_shapes(cli):
    result = cli("layers", "test_efficientnet", "--json")

    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    units, layers = record["units"], record["feature_layers"]
    assert [u["index"] for u in units] == list(range(len(units))) and len(units) > 2
    assert sum(u["parameters"] for u in units) == record["backbone_parameters"]
    assert units[-1]["cumulative_percent"] == 100.0
    shares = [u["cumulative_percent"] for u in units]
    assert shares == sorted(shares)
    for layer in layers:
        c, h, w = layer["shape"]
        assert layer["pooled_dim"] == c and layer["flatten_dim"] == c * h * w
    assert record["pre_logits_dim"] > 0 and record["logits_dim"] == 1000


def test_layers_of_a_vit_lists_its_blocks():
    result = run_cli("layers", "vit_tiny_patch16_224", "--json")

    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert len(record["feature_layers"]) == 12 and record["feature_layers"][0]["shape"] == [192, 14, 14]
    assert record["pre_logits_dim"] == 192
    assert any(u["name"].startswith("blocks.11") for u in record["units"])


def test_finetune_then_evaluate_on_the_builtin_digits(cli, tmp_path):
    model = tmp_path / "model"
    trained = cli("finetune", "-d", "digits", "-b", "small-cnn", "--per-class", "5", "--split", "0.6,0.2,0.2",
                  "--epochs", "1", "--workers", "0", "--device", "cpu", "--precision", "fp32", "-o", str(model),
                  "--json")
    assert trained.returncode == 0, trained.stderr
    assert json.loads(trained.stdout)["config"]["ratios"] == [0.6, 0.2, 0.2]

    result = cli("evaluate", str(model), "--data", "digits", "--device", "cpu", "--json")

    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["images"] == 1797 and len(record["classes"]) == 10
    assert 0.0 <= record["accuracy"] <= 1.0
    low, high = record["accuracy_interval"]  # 95% Wilson interval over the 1797 images
    assert low < record["accuracy"] < high and high - low < 0.05


IMPORTS_WITHOUT_TORCH = """
import sys
import transferlab.cli.finetune, transferlab.cli.study
assert "transferlab.cli.main" not in sys.modules, "a command module imports cli.main"
import transferlab.cli.main
assert "torch" not in sys.modules, "importing the CLI loads torch"
print("ok")
"""


def test_cli_modules_import_without_torch_or_a_cycle():
    out = subprocess.run([sys.executable, "-c", IMPORTS_WITHOUT_TORCH], capture_output=True, text=True)

    assert out.stdout.strip() == "ok", out.stderr


def test_verbose_logs_the_config_on_stderr(cli, tmp_path):
    result = cli("-vv", "probe", "-d", str(tmp_path / "nowhere"), "--seed", "3")

    assert result.returncode == 2
    assert "ProbeConfig" in result.stderr and "seed=3" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: data folder not found")
    assert "ProbeConfig" not in cli("probe", "-d", str(tmp_path / "nowhere")).stderr


def test_predict_imagenet_names_the_cat_in_chelsea(tmp_path):
    path = tmp_path / "chelsea.png"
    Image.fromarray(skimage_data.chelsea()).save(path)

    result = run_cli("predict-imagenet", str(path), "--top-k", "1", "--json")

    assert result.returncode == 0, result.stderr
    top = json.loads(result.stdout)[0]["top"][0]["label"]
    assert top in {"tiger cat", "Egyptian cat", "tabby, tabby cat"}


def test_predict_imagenet_on_a_missing_image_is_one_error_line(cli, tmp_path):
    assert_one_error_line(cli("predict-imagenet", str(tmp_path / "absent.png")), "image not found")
