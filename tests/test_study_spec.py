"""Study files: every mistake names the file and line; a valid file expands into the right runs."""

from __future__ import annotations

import pytest

import os
from dataclasses import replace

from PIL import Image

import transferlab
from study_fixtures import TINY_BACKBONE, make_image_folder, write_study
from transferlab.errors import UserError
from transferlab.finetune.config import FinetuneConfig
from transferlab.probing.config import ProbeConfig
from transferlab.study import identity, load_study, plan_study
from transferlab.study.identity import data_fingerprint, run_id
from transferlab.study.spec import MethodSpec, StudySpec


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
    assert ":5:" in message and "per_class must be at least 1, got 0" in message


@pytest.mark.parametrize("line, expected", [
    ("kind: finetune, head: svm", "unknown head 'svm': use one of linear, mlp"),
    ("kind: finetune, head: 'mlp:0'", "mlp hidden sizes must be positive"),
    ("kind: probe, head: 'knn:3'", "head knn takes no sizes"),
    ("kind: finetune, lr: -1", "lr must be greater than 0"),
    ("kind: probe, batch_size: 0", "batch_size must be at least 1"),
    ("kind: finetune, dropout: 1.5", "dropout must be at most 0.95"),
    ("kind: finetune, freeze: 'top:x'", "is not a whole number of units"),
    ("kind: finetune, augment: [flip, blur]", "unknown augmentation 'blur'"),
    ("kind: probe, pooling: mean", "unknown pooling 'mean'"),
    ("kind: finetune, ratios: [0, 0.5, 0.5]", "split ratios"),
])
def test_value_the_config_refuses_is_an_error_at_its_line(tmp_path, line, expected):
    message = error_of(tmp_path, f"name: s\nmethods:\n  - {{name: m, {line}}}\n")
    assert message.startswith(f"{tmp_path / 'study.yaml'}:3: ") and expected in message


def test_shared_value_is_checked_for_each_method_that_gets_it(tmp_path):
    message = error_of(tmp_path, """
        settings: {head: svm}
        methods:
          - {name: p, kind: probe}
          - {name: f, kind: finetune}
        """)
    assert ":1:" in message and "unknown head 'svm'" in message and "finetune method 'f'" in message
    message = error_of(tmp_path, """
        methods:
          - {name: f, kind: finetune}
        sweep:
          augment: [[flip], [flip, crop], [spin]]
        """)
    assert ":4:" in message and "unknown augmentation 'spin'" in message
    # a value a method overrides, or a shared axis a method does not take, is not checked against it
    load_study(write_study(tmp_path, "settings: {head: svm}\nmethods:\n  - {kind: probe}\n"
                                     "  - {kind: finetune, head: linear}\n"))


def test_plan_names_the_method_of_a_refused_value_when_the_study_has_no_file(tmp_path):
    make_image_folder(tmp_path / "data", per_class=2)
    spec = StudySpec(name="s", path=None, data=str(tmp_path / "data"), backbones=load_study(
        write_study(tmp_path, f"backbones: [{TINY_BACKBONE}]\nmethods: [{{kind: probe}}]\n")).backbones,
        methods=[MethodSpec(name="ft", kind="finetune", options={"epochs": 1}, sweep={"lr": [0.1, -1.0]})])
    with pytest.raises(UserError, match=r"method 'ft' with lr=-1.0: lr must be greater than 0"):
        plan_study(spec)


def test_unknown_kind_head_and_freeze_policy(tmp_path):
    assert "did you mean 'probe'" in error_of(tmp_path, "methods:\n  - kind: prob\n")
    message = error_of(tmp_path, "methods:\n  - kind: probe\n    head: lgreg\n")
    assert ":3:" in message and "did you mean 'logreg'" in message
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


def test_run_identity_leaves_out_exactly_the_speed_only_fields():
    config = ProbeConfig(data="/d", backbone="b")
    same = run_id("probe", config, "fp")
    assert same == run_id("probe", replace(config, num_workers=3, cache=False, device="cpu"), "fp")
    assert same == run_id("probe", replace(config, data="/elsewhere"), "fp")  # the data is its fingerprint
    assert same != run_id("probe", replace(config, per_class=4), "fp")
    assert same != run_id("probe", replace(config, precision="fp32"), "fp")
    assert same != run_id("probe", config, "other data")
    assert same != run_id("finetune", config, "fp")
    finetune = FinetuneConfig(data="/d")
    assert run_id("finetune", finetune, "fp") == run_id(
        "finetune", replace(finetune, prefix_cache=False, output="/o", resume=True), "fp")


IDENTITY_STUDY = f"""
    data: data
    backbones: [{TINY_BACKBONE}]
    settings: {{num_workers: 0, prefix_cache: true}}
    methods:
      - {{name: p, kind: probe}}
      - {{name: f, kind: finetune, epochs: 1}}
    sweep:
      seed: [0, 1]
    """


def ids_of(path) -> list[str]:
    return [r.run_id for r in plan_study(load_study(path)).runs]


def test_changing_one_image_changes_every_run_id_and_replanning_keeps_them(tmp_path, monkeypatch):
    data = make_image_folder(tmp_path / "data", per_class=3)
    path = write_study(tmp_path, IDENTITY_STUDY)
    first = ids_of(path)
    assert len(set(first)) == 4
    read = []
    real_digest = identity.file_digest
    monkeypatch.setattr(identity, "file_digest", lambda p: read.append(p) or real_digest(p))
    assert ids_of(path) == first
    assert read == []  # the digests of unchanged files come from the cache

    image = data / "red" / "red_00.png"
    stat = image.stat()
    Image.new("RGB", (40, 40), (1, 2, 3)).save(image)
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    changed = ids_of(path)
    assert read == [image]
    assert not set(changed) & set(first)
    (data / "blue" / "blue_00.png").rename(data / "blue" / "blue_99.png")
    assert not set(ids_of(path)) & set(changed)  # a renamed image is other data too


def test_speed_settings_keep_the_ids_and_the_version_changes_them(tmp_path, monkeypatch):
    make_image_folder(tmp_path / "data", per_class=3)
    first = ids_of(write_study(tmp_path, IDENTITY_STUDY))
    faster = IDENTITY_STUDY.replace("{num_workers: 0, prefix_cache: true}", "{num_workers: 3, prefix_cache: false}")
    assert ids_of(write_study(tmp_path, faster, "faster.yaml")) == first
    monkeypatch.setattr(transferlab, "__version__", "99.0")
    assert not set(ids_of(write_study(tmp_path, IDENTITY_STUDY))) & set(first)


def test_fingerprint_reads_the_candidate_files_only(tmp_path):
    data = make_image_folder(tmp_path / "data", per_class=2)
    before = data_fingerprint(data)
    (data / "notes.txt").write_text("top-level files are not images of a class")
    (data / ".hidden").mkdir()
    (data / ".hidden" / "x.png").write_bytes(b"x")
    (data / "red" / ".DS_Store").write_bytes(b"x")
    assert data_fingerprint(data) == before
    (data / "red" / "extra.png").write_bytes(b"x")
    assert data_fingerprint(data) != before
    assert data_fingerprint(str(data)) == data_fingerprint(data.parent / "data")
