"""Reports with hostile names and on failing disks: report.md escapes them, CSVs run no formula, and the report
folder is replaced as a whole or not at all."""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import pytest
from bad_input_checks import assert_one_error, fill_disk, no_space, snapshot
from study_fixtures import finetune_result, probe_result

from transferlab.errors import UserError
from transferlab.report import write_report
from transferlab.report.records import RunRecord
from transferlab.report.tables import csv_cell, markdown_text

HOSTILE_NAMES = ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "[click](http://evil)",
                 "**bold** | pipe", "=HYPERLINK(\"http://evil\")", "+SUM(A1)", "-2+3+cmd|' /C calc'!A0",
                 "@SUM(1)", "\tTAB", "\rCR", "line\nbreak"]


def records(method: str = "m", classes: list[str] | None = None, accuracy: float = 0.8) -> list[RunRecord]:
    changes = {"classes": classes, "confusion_matrix": [[1, 2, 0], [3, 0, 1], [0, 2, 1]]} if classes else {}
    return [
        RunRecord("run1", method, "probe", "efficientnet_lite0", {"per_class": 2}, "done",
                  probe_result(accuracy, **changes), {"seed": 0}),
        RunRecord("run2", method + "-ft", "finetune", "efficientnet_lite0", {"per_class": 2}, "done",
                  finetune_result(accuracy - 0.1, **changes), {"seed": 0}),
        RunRecord("run3", method, "probe", "efficientnet_lite0", {"per_class": 4}, "failed", None, {"seed": 0},
                  error="-boom"),
    ]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_report_md_carries_no_raw_markup_of_a_name(tmp_path, name):
    files = write_report(records(method=name, classes=[name, "b", "c"]), tmp_path / "r", title=name,
                         description=name, images=False)
    text = files["markdown"].read_text()
    assert "<script" not in text and "<img" not in text and "](" not in text
    rows = [line for line in text.splitlines() if line.startswith("|")]
    for header, table in _tables(rows):  # a name's pipe or newline cannot add or split cells
        assert all(_cells(row) == _cells(header) for row in table)
    html = files["html"].read_text()
    assert "<script>alert" not in html and "<img src=x" not in html


def _cells(row: str) -> int:
    return len(re.findall(r"(?<!\\)\|", row))


def _tables(rows: list[str]):
    """(header, rows) of each Markdown table: a header is the row before a |---| line."""
    tables = []
    for i, row in enumerate(rows):
        if row.startswith("|---"):
            tables.append((rows[i - 1], []))
        elif tables and (i + 1 == len(rows) or not rows[i + 1].startswith("|---")):
            tables[-1][1].append(row)
    return tables


@pytest.mark.parametrize("name", [n for n in HOSTILE_NAMES if n[0] in "=+-@\t\r"])
def test_csv_cells_that_would_start_a_formula_are_neutralised(tmp_path, name):
    files = write_report(records(method=name, classes=[name, "b", "c"]), tmp_path / "r", images=False)
    for key in ("comparison_csv", "runs_csv", "confused_pairs_csv"):
        with open(files[key], newline="", encoding="utf-8") as f:
            for row in csv.reader(f):
                for cell in row:
                    assert not cell.startswith(("=", "+", "@", "\t", "\r")), (key, cell)
                    if cell.startswith("-"):
                        float(cell)  # only a plain negative number may start with a minus


@pytest.mark.parametrize("value, expected", [
    ("-0.5", "-0.5"), ("-12", "-12"), ("+3", "+3"), ("-1e-3", "-1e-3"), (-0.25, -0.25), (3, 3), ("=1+1", "'=1+1"),
    ("-cmd", "'-cmd"), ("@x", "'@x"), ("\t=x", "'\t=x"), ("plain", "plain"), ("", ""),
])
def test_csv_cell_keeps_numbers_and_neutralises_formulas(value, expected):
    assert csv_cell(value) == expected


@pytest.mark.parametrize("name, shown", [("<b>x</b>", "&lt;b>x&lt;/b>"), ("a_b_c", "a\\_b\\_c"),
                                         ("x|y", "x\\|y"), ("[a](b)", "\\[a\\]\\(b\\)"), ("a\nb", "a b"),
                                         ("p >= 0.05", "p >= 0.05"), ("> quote", "\\> quote"), ("&lt;", "&amp;lt;")])
def test_markdown_text_escapes_html_and_markdown(name, shown):
    assert markdown_text(name) == shown


def test_negative_numbers_stay_numbers_in_the_csv(tmp_path):
    files = write_report(records(accuracy=0.8), tmp_path / "r", images=False)
    with open(files["comparison_csv"], newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert all(float(row["accuracy_mean"]) > 0 for row in rows)


@pytest.fixture
def earlier(tmp_path) -> Path:
    out = tmp_path / "report"
    write_report(records(accuracy=0.8), out, title="earlier", images=False)
    return out


@pytest.mark.parametrize("fail", ["csv", "markdown", "html", "swap", "staging folder"])
def test_a_full_disk_leaves_the_earlier_report_whole(earlier, monkeypatch, fail):
    import transferlab.report.build as build
    import transferlab.report.tables as tables

    before = snapshot(earlier)
    real_write_text = Path.write_text
    if fail == "csv":
        monkeypatch.setattr(tables, "open", lambda *a, **k: no_space(), raising=False)
    elif fail in ("markdown", "html"):
        name = "report.md" if fail == "markdown" else "report.html"

        def write_text(self, *args, **kwargs):
            if self.name == name:
                no_space()
            return real_write_text(self, *args, **kwargs)
        monkeypatch.setattr(Path, "write_text", write_text)
    elif fail == "swap":
        real_rename = os.rename

        def rename(src, dst):
            if Path(dst) == earlier and ".new-" in str(src):
                no_space()
            return real_rename(src, dst)
        monkeypatch.setattr(build.os, "rename", rename)
    else:
        monkeypatch.setattr(build.tempfile, "mkdtemp", lambda *a, **k: no_space())
    with pytest.raises(UserError, match="no space left|No space left"):
        write_report(records(accuracy=0.3), earlier, title="later", images=False)
    assert snapshot(earlier) == before
    assert sorted(p.name for p in earlier.parent.iterdir()) == ["report"]  # no temporary folder left behind


def test_a_report_that_is_written_replaces_the_earlier_one_whole(earlier):
    files = write_report(records(accuracy=0.3), earlier, title="later", images=False)
    assert "later" in files["markdown"].read_text() and "later" in files["html"].read_text()
    assert sorted(p.name for p in earlier.parent.iterdir()) == ["report"]


def test_a_kill_between_the_renames_gives_the_earlier_report_back(earlier):
    before = snapshot(earlier)
    aside = earlier.parent / ".report.old-x1"
    aside.mkdir()
    os.rename(earlier, aside / "report")  # where the swap had put it when the process died
    write_report(records(accuracy=0.3), earlier, title="later", images=False)
    assert snapshot(earlier) != before and "later" in (earlier / "report.md").read_text()
    aside2 = earlier.parent / ".report.old-x2"
    aside2.mkdir()
    os.rename(earlier, aside2 / "report")
    from transferlab.report.build import _recover

    _recover(earlier)
    assert "later" in (earlier / "report.md").read_text()


def test_a_folder_with_other_files_is_never_replaced(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    before = snapshot(out)
    with pytest.raises(UserError, match="not part of a report"):
        write_report(records(), out, images=False)
    assert snapshot(out) == before


def test_the_report_command_refuses_a_folder_with_other_files(cli, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    before = snapshot(out)
    study = tmp_path / "s.yaml"
    study.write_text("name: s\ndata: digits\nbackbones: [{name: test_efficientnet, random_init: true}]\n"
                     "methods: [{name: p, kind: probe}]\n")
    from transferlab.study.store import RunStore

    RunStore(tmp_path / "runs.db").close()  # reading commands never create a store
    assert_one_error(cli("study", "report", str(study), "--store", str(tmp_path / "runs.db"), "-o", str(out),
                         "--no-images"), "not part of a report")
    assert snapshot(out) == before


def test_a_report_folder_that_is_a_file_is_one_user_error(tmp_path):
    out = tmp_path / "file"
    out.write_text("x")
    with pytest.raises(UserError, match="is a file"):
        write_report(records(), out, images=False)
    assert out.read_text() == "x"


def test_a_full_disk_from_the_kernel_is_one_user_error_for_plain_writes(tmp_path, monkeypatch):
    """Real ENOSPC from /dev/full through atomic_write_bytes (the writer of the cache and of descriptions)."""
    from transferlab.storage import atomic_write_bytes

    target = tmp_path / "x.bin"
    target.write_bytes(b"earlier")
    fill_disk(monkeypatch)
    with pytest.raises(UserError, match="no space left on the device"):
        atomic_write_bytes(target, b"y" * 100_000)
    assert target.read_bytes() == b"earlier"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.bin"]
