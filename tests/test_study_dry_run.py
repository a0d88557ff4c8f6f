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


def _study_with_outside_images(tmp_path):
    make_image_folder(tmp_path / "data", per_class=4)
    make_image_folder(tmp_path / "outside", per_class=1)
    return write_study(tmp_path, f"""
        name: outside
        data: data
        new_images: outside
        backbones: [{TINY_BACKBONE}]
        methods: [{{name: logreg, kind: probe, head: logreg}}]
        """)


def test_the_study_files_new_images_give_the_report_its_predictions_section(cli, tmp_path):
    from transferlab.study.store import RunStore

    study = _study_with_outside_images(tmp_path)
    RunStore(tmp_path / "runs.sqlite").close()
    result = cli("study", "report", str(study), "--store", str(tmp_path / "runs.sqlite"), "-o", str(tmp_path / "r"),
                 "--no-images")
    assert result.returncode == 0, result.stderr
    assert 'id="new-images"' in (tmp_path / "r" / "report.html").read_text()


def test_a_missing_new_images_folder_is_one_error_line(cli, tmp_path):
    from transferlab.study.store import RunStore

    study = _study_with_outside_images(tmp_path)
    RunStore(tmp_path / "runs.sqlite").close()
    result = cli("study", "report", str(study), "--store", str(tmp_path / "runs.sqlite"), "--new-images",
                 str(tmp_path / "nowhere"), "-o", str(tmp_path / "r"))
    assert result.returncode == 2
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
        f"error: new-images folder not found: {tmp_path / 'nowhere'}"]
    assert not (tmp_path / "r").exists()
