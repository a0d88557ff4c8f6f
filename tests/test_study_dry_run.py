"""``study run --dry-run`` lists the plan against the store without writing anything."""

from __future__ import annotations

from study_fixtures import TINY_BACKBONE, make_image_folder, write_study


def test_a_dry_run_creates_no_store_and_lists_every_run_as_new(cli, tmp_path):
    make_image_folder(tmp_path / "data", per_class=4)
    study = write_study(tmp_path, f"""
        name: dry
        data: data
        backbones: [{TINY_BACKBONE}]
        methods: [{{name: logreg, kind: probe, head: logreg}}]
        sweep: {{seed: [0, 1]}}
        """)
    store = tmp_path / "runs.sqlite"
    result = cli("study", "run", str(study), "--store", str(store), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert [line.split()[1] for line in result.stdout.splitlines()] == ["new", "new"]
    assert not store.exists()
