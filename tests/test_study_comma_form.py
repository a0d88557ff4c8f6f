"""A study file takes list options in the command line's comma form (``augment: flip,rotate``), as the same run.

``--augment flip,rotate`` on the command line and ``augment: [flip, rotate]`` in a study are one setting;
``augment: "flip,rotate"`` (and ``augment: flip``) in a study is that same setting, so its runs have the
same ids in ``study run --dry-run``: likewise classes and the split ratios.
"""

from __future__ import annotations

import pytest
from study_fixtures import TINY_BACKBONE, make_image_folder, write_study


def planned_ids(cli, tmp_path, method: str, sweep: str = "", name: str = "study.yaml") -> list[str]:
    """The run ids ``study run --dry-run`` lists for a study of one method (``{...}`` YAML) and its sweep."""
    if not (tmp_path / "data").exists():
        make_image_folder(tmp_path / "data", per_class=4)
    study = write_study(tmp_path, f"""
        name: comma
        data: data
        backbones: [{TINY_BACKBONE}]
        methods: [{method}]
        {"sweep: " + sweep if sweep else ""}
        """, name)
    result = cli("study", "run", str(study), "--store", str(tmp_path / "runs.sqlite"), "--dry-run")
    assert result.returncode == 0, result.stderr
    return [line.split()[0] for line in result.stdout.splitlines()]


@pytest.mark.parametrize("comma, listed", [
    ('augment: "flip,rotate"', "augment: [flip, rotate]"),
    ("augment: flip", "augment: [flip]"),
    ('classes: "blue,red"', "classes: [blue, red]"),
    ('ratios: "0.5,0.25,0.25"', "ratios: [0.5, 0.25, 0.25]"),
])
def test_the_comma_form_of_a_list_option_is_the_listed_setting(cli, tmp_path, comma, listed):
    by_comma = planned_ids(cli, tmp_path, f"{{name: ft, kind: finetune, epochs: 1, {comma}}}", name="a.yaml")
    by_list = planned_ids(cli, tmp_path, f"{{name: ft, kind: finetune, epochs: 1, {listed}}}", name="b.yaml")
    default = planned_ids(cli, tmp_path, "{name: ft, kind: finetune, epochs: 1}", name="c.yaml")

    assert len(by_comma) == 1 and by_comma == by_list
    assert by_comma != default  # the setting reached the run


def test_a_swept_list_option_takes_the_comma_form_per_value(cli, tmp_path):
    swept = planned_ids(cli, tmp_path, "{name: ft, kind: finetune, epochs: 1}", '{augment: [flip, "flip,rotate"]}',
                        name="a.yaml")
    one = planned_ids(cli, tmp_path, "{name: ft, kind: finetune, epochs: 1, augment: [flip]}", name="b.yaml")
    two = planned_ids(cli, tmp_path, "{name: ft, kind: finetune, epochs: 1, augment: [flip, rotate]}", name="c.yaml")

    assert swept == one + two


def test_a_bad_word_in_the_comma_form_is_an_error_at_its_line(cli, tmp_path):
    make_image_folder(tmp_path / "data", per_class=4)
    study = write_study(tmp_path, f"""
        name: comma
        data: data
        backbones: [{TINY_BACKBONE}]
        methods:
          - {{name: ft, kind: finetune, augment: "flip,spin"}}
        """)
    result = cli("study", "run", str(study), "--dry-run")

    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {study}:5: ") and "unknown augmentation 'spin'" in result.stderr
