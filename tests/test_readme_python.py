"""The README's ``python`` blocks run as they stand: in order, in one empty folder, each in a fresh namespace."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).parents[1] / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)


def python_blocks() -> list[str]:
    return BLOCK.findall(README.read_text())


def test_the_readme_has_the_library_examples():
    text = "\n".join(python_blocks())
    for call in ("transferlab.probe(", "finetune(", "Predictor.load(", ".predict(", "run_study_file("):
        assert call in text, call


def test_every_python_block_of_the_readme_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    printed = []
    for number, block in enumerate(python_blocks(), 1):
        try:
            exec(compile(block, f"README.md python block {number}", "exec"), {"__name__": "__readme__"})
        except Exception as exc:  # noqa: BLE001 - the block's own failure, named
            pytest.fail(f"README python block {number} failed: {type(exc).__name__}: {exc}\n{block}")
        printed.append(capsys.readouterr().out)
    probe, tuned, predicted, study = printed
    assert float(re.search(r"probe accuracy ([\d.]+)", probe).group(1)) > 0.8
    assert float(re.search(r"fine-tuned accuracy ([\d.]+)", tuned).group(1)) > 0.8
    assert (tmp_path / "digits-model" / "model.safetensors").is_file()
    assert predicted.split()[0] == "0", predicted  # the digit shown is a 0
    assert len(re.findall(r"per_class=\d+\]', 0\.\d+", study)) == 2, study
