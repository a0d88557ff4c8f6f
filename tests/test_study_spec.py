"""Study files: every mistake names the file and line; a valid file expands into the right runs."""

from __future__ import annotations

import pytest

from study_fixtures import TINY_BACKBONE, make_image_folder, write_study
from transferlab.errors import UserError
from transferlab.study import load_study, plan_study
from transferlab.study.identity import run_id


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFERLAB_CACHE_DIR", str(tmp_path / "cache"))


def error_of(tmp_path, text: str) -> str:
    path = write_study(tmp_path, text)
    with pytest.raises(UserError) as info:
        load_study(path)
    return str(info.value)


def test_unknown_method_key_names_file_line_and_suggestion(tmp_path):
    message = error_of(tmp_path, """
        name: s
        methods:
          - kind: probe
            hed: logreg
        """)
    assert message.startswith(f"{tmp_path / 'study.yaml'}:4:")
    assert "'hed'" in message and "did you mean 'head'" in message


def test_wrong_value_type_names_its_line(tmp_path):
    message = error_of(tmp_path, """
        methods:
          - kind: finetune
            epochs: many
        """)
    assert ":3:" in message and "epochs must be an integer" in message


def test_yaml_syntax_error_names_its_line(tmp_path):
    message = error_of(tmp_path, "methods: [{kind: probe}]\nsweep:\n  seed: [0, 1\n")
    assert "study.yaml:" in message and "study.yaml:1:" not in message


def test_duplicate_key_is_an_error_at_its_line(tmp_path):
    message = error_of(tmp_path, "methods: [{kind: probe}]\nsweep: {seed: [0]}\nsweep: {seed: [1]}\n")
    assert ":3:" in message and "duplicate key 'sweep'" in message


def test_unknown_top_level_key_and_sweep_axis(tmp_path):
    assert ":2:" in error_of(tmp_path, "methods: [{kind: probe}]\nbackbone: resnet50\n")
    message = error_of(tmp_path, "methods: [{kind: probe}]\nsweep:\n  per_klass: [4]\n")
    assert ":3:" in message and "did you mean 'per_class'" in message


def test_bad_axis_value_points_at_the_item(tmp_path):
    message = error_of(tmp_path, "methods: [{kind: probe}]\nsweep:\n  per_class:\n    - 4\n    - 0\n")
    assert ":5:" in message and "positive" in message


def test_unknown_kind_head_and_freeze_policy(tmp_path):
    assert "did you mean 'probe'" in error_of(tmp_path, "methods:\n  - kind: prob\n")
    assert ":3:" in error_of(tmp_path, "methods:\n  - kind: probe\n    head: lgreg\n")
    assert ":3:" in error_of(tmp_path, "methods:\n  - kind: finetune\n    freeze: sometimes\n")


def test_temperature_method_needs_temperatures(tmp_path):
    message = error_of(tmp_path, "methods:\n  - {name: t, kind: temperature}\n")
    assert ":2:" in message and "temperature" in message


def test_yaml_exponent_without_dot_is_a_number(tmp_path):
    path = write_study(tmp_path, "methods:\n  - {kind: finetune, lr: 1e-4}\n")
    assert load_study(path).methods[0].options["lr"] == pytest.approx(1e-4)


def test_expansion_applies_axes_only_where_they_belong(tmp_path):
    data = make_image_folder(tmp_path / "data", per_class=4)
    path = write_study(tmp_path, f"""
        name: expand
        data: data
        backbones: [{TINY_BACKBONE}]
        methods:
          - {{name: lr, kind: probe, head: logreg}}
          - {{name: temp, kind: temperature, sweep: {{temperature: [0.5, 2]}}}}
          - {{name: ft, kind: finetune, epochs: 1, sweep: {{lr: [0.01, 0.001]}}}}
          - {{name: scratch, kind: scratch, epochs: 1}}
        sweep:
          per_class: [2, 3]
          seed: [0, 1]
        """)
    plan = plan_study(load_study(path))
    by_method = {}
    for run in plan.runs:
        by_method.setdefault(run.method, []).append(run)
    assert {m: len(r) for m, r in by_method.items()} == {"lr": 4, "temp": 8, "ft": 8, "scratch": 4}
    assert all(r.config.temperature is None for r in by_method["lr"])
    assert {r.config.head for r in by_method["temp"]} == {"softmax"}
    assert {r.backbone for r in by_method["scratch"]} == {"small-cnn"}
    assert {r.config.lr for r in by_method["ft"]} == {0.01, 0.001}
    assert plan.data == str(data.resolve())  # relative to the study file's folder
    assert len({r.run_id for r in plan.runs}) == len(plan.runs)


def test_data_option_overrides_and_missing_folder_is_an_error(tmp_path, monkeypatch):
    make_image_folder(tmp_path / "other", per_class=2)
    spec = load_study(write_study(tmp_path, "data: nowhere\nmethods: [{kind: probe}]\n"))
    with pytest.raises(UserError, match="data folder not found"):
        plan_study(spec)
    monkeypatch.chdir(tmp_path)
    assert plan_study(spec, "other").data == str((tmp_path / "other").resolve())


def test_optional_backbone_without_weights_is_skipped_with_a_note(tmp_path):
    make_image_folder(tmp_path / "data", per_class=2)
    spec = load_study(write_study(tmp_path, f"""
        data: data
        backbones: [{TINY_BACKBONE}, {{name: resnet18, optional: true}}]
        methods: [{{kind: probe}}]
        """))
    plan = plan_study(spec)
    assert [r.backbone for r in plan.runs] == ["test_efficientnet"]
    assert any("resnet18" in note for note in plan.notes)


def test_run_identity_ignores_speed_settings_only():
    from dataclasses import replace

    from transferlab.probing import ProbeConfig

    config = ProbeConfig(data="/d", backbone="b")
    assert run_id("probe", config) == run_id("probe", replace(config, num_workers=3, cache=False))
    assert run_id("probe", config) != run_id("probe", replace(config, per_class=4))
    assert run_id("probe", config) != run_id("finetune", config)
