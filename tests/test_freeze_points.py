"""Freeze points as a report writes them: shares, module names, parameter-tensor counts; bad ones fail early."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from study_fixtures import TINY_BACKBONE, make_image_folder, write_study
from transferlab.errors import UserError
from transferlab.finetune.freeze import Stage, check_policy, plan_stages


@dataclass(frozen=True)
class FakeUnit:
    name: str
    parameter_names: tuple[str, ...]


# 5 units: stem (2 tensors), blocks.0 (3), blocks.1 (3), blocks.2 (4), head-side block (8) = 20 tensors
UNITS = [FakeUnit("stem", ("stem.w", "stem.b")),
         FakeUnit("blocks.0.0", tuple(f"blocks.0.0.t{i}" for i in range(3))),
         FakeUnit("blocks.1.0", tuple(f"blocks.1.0.t{i}" for i in range(3))),
         FakeUnit("blocks.2.0", tuple(f"blocks.2.0.t{i}" for i in range(4))),
         FakeUnit("blocks.3.0+conv_head", tuple(f"blocks.3.0.t{i}" for i in range(6)) + ("conv_head.w", "conv_head.b"))]


def frozen(policy: str) -> int:
    return plan_stages(policy, UNITS, "fake")[-1].frozen_units


@pytest.mark.parametrize("policy, expected", [
    ("first:50%", 2), ("first:100%", 5), ("first:0%", 0), ("top:40%", 3), ("top:25%", 3), ("first:3", 3),
    ("top:1", 4),
    ("from:blocks.2", 3), ("from:blocks.1.0", 2), ("from:conv_head", 4), ("from:stem", 0),
    ("first:params:5", 2), ("first:params:7", 2), ("first:params:8", 3), ("top:params:8", 4),
    ("top:params:9", 3), ("top:params:40%", 4), ("first:params:50%", 3), ("first:params:20", 5),
])
def test_freeze_points_resolve_to_unit_boundaries(policy, expected):
    assert frozen(policy) == expected


def test_two_stage_takes_any_point_for_its_second_stage():
    assert plan_stages("two-stage:from:blocks.2", UNITS) == [Stage(5, "head"), Stage(3, "fine-tune")]
    assert plan_stages("two-stage:top:40%", UNITS) == [Stage(5, "head"), Stage(3, "fine-tune")]
    assert plan_stages("two-stage:first:params:8", UNITS) == [Stage(5, "head"), Stage(3, "fine-tune")]


@pytest.mark.parametrize("policy", ["first:101%", "top:x%", "from:", "first:params:x", "first:params:-1",
                                    "two-stage:two-stage", "from: blocks.1", "params:3", "first:-5%"])
def test_bad_point_syntax_fails_where_the_value_enters(policy):
    with pytest.raises(UserError):
        check_policy(policy)


def test_points_beyond_the_backbone_suggest_a_share_or_a_module():
    with pytest.raises(UserError, match=r"fake has 5 freeze units; use a share such as first:50% or a module "
                                        r"such as from:blocks\.2"):
        frozen("first:100")
    with pytest.raises(UserError, match="fake has 20 parameter tensors"):
        frozen("top:params:21")
    with pytest.raises(UserError, match="no module 'blocks.9'"):
        frozen("from:blocks.9")


def test_efficientnet_lite0_structure_is_checked_without_weights():
    from transferlab.finetune.freeze import check_on_backbone

    assert check_on_backbone("two-stage:from:blocks.5", "efficientnet_lite0") == [Stage(17, "head"),
                                                                                   Stage(12, "fine-tune")]
    assert check_on_backbone("first:50%", "efficientnet_lite0") == [Stage(8, "train")]
    with pytest.raises(UserError, match="efficientnet_lite0 has 17 freeze units; use a share such as first:50% or "
                                        "a module such as from:blocks.5"):
        check_on_backbone("first:100", "efficientnet_lite0")


def test_study_dry_run_refuses_a_point_past_lite0s_units(tmp_path, cli):
    data = make_image_folder(tmp_path / "data", per_class=4)
    study = write_study(tmp_path, f"""
        data: {data}
        backbones: [efficientnet_lite0]
        methods:
          - {{name: ok, kind: finetune, freeze: "two-stage:from:blocks.5"}}
          - {{name: keras, kind: finetune, freeze: "first:100"}}
    """)
    result = cli("study", "run", str(study), "--store", str(tmp_path / "runs.sqlite"), "--dry-run")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert "efficientnet_lite0 has 17 freeze units; use a share such as first:50% or a module such as " \
           "from:blocks.5" in result.stderr
    assert "line 5" in result.stderr or "study.yaml:5" in result.stderr


def test_module_and_share_points_train_in_a_study(tmp_path, cli):
    data = make_image_folder(tmp_path / "data", per_class=6, size=24)
    study = write_study(tmp_path, f"""
        data: {data}
        backbones: [{TINY_BACKBONE}]
        settings: {{epochs: 1, stage2_epochs: 1, num_workers: 0, batch_size: 8, device: cpu}}
        methods:
          - {{name: from-module, kind: finetune, freeze: "two-stage:from:blocks.3"}}
          - {{name: half, kind: finetune, freeze: "first:50%"}}
    """)
    store = tmp_path / "runs.sqlite"
    result = cli("study", "run", str(study), "--store", str(store))
    assert result.returncode == 0, result.stderr + result.stdout
    from transferlab.study.store import RunStore

    with RunStore(str(store)) as runs:
        rows = {r.method: r for r in runs.runs()}
    # test_efficientnet: 6 units, blocks.3 is unit 4; half of 6 is 3
    assert rows["from-module"].result.frozen_layers == 4
    assert rows["half"].result.frozen_layers == 3
    # the table's figures, measured by the run itself
    half = rows["half"].result
    assert half.prefix_cache_seconds > 0 and half.training_seconds >= half.prefix_cache_seconds
    assert half.test_seconds > 0 and half.test_loss > 0
    assert half.train_accuracy_final == half.history[-1]["train_accuracy"]
    assert half.val_accuracy_final == half.history[-1]["val_accuracy"]


def test_finetune_refuses_a_bad_point_before_any_data_or_weights_load(tmp_path, cli, class_folders):
    out = tmp_path / "model"
    result = cli("finetune", "--data", str(class_folders), "-b", "test_efficientnet", "--random-init",
                 "--freeze", "two-stage:first:100", "-o", str(out), "--device", "cpu")

    assert result.returncode == 2
    assert "freeze policy 'two-stage:first:100': test_efficientnet has 6 freeze units; use a share such as " \
           "first:50% or a module such as from:blocks.3" in result.stderr
    assert not out.exists()  # refused before the run made its folder
