"""Bad input under ``torchrun --nproc-per-node 2``: one ``error:`` line for the job, from the first rank to fail.

Real torchrun jobs on the CPU (gloo), a few seconds each.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from bad_input_checks import snapshot
from helpers import make_class_folders
from test_distributed import HERE, torchrun
from torchrun_rank_error import RANK_ONE_ERROR

FINETUNE = ("finetune", "--backbone", "test_efficientnet", "--random-init", "--workers", "0", "--precision", "fp32",
            "--freeze", "all", "--epochs", "1")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_class_folders(tmp_path_factory.mktemp("ranks") / "data", {"a": 8, "b": 8})


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_bad_input_seen_by_rank_one_alone_is_one_error_line(data, tmp_path):
    """Rank 0 is inside a collective when rank 1 stops: rank 1 says why, rank 0 leaves without a traceback."""
    output = tmp_path / "model"
    done = torchrun(*FINETUNE, "--batch-size", "8", "--data", str(data), "--output", str(output),
                    script=(str(HERE / "torchrun_rank_error.py"),))
    assert done.returncode != 0
    assert error_lines(done.stderr) == [f"error: {RANK_ONE_ERROR}"], done.stderr[-4000:]
    assert "[rank0]: Traceback" not in done.stderr and "[rank1]: Traceback" not in done.stderr, done.stderr[-4000:]
    assert "exitcode  : 2" in done.stderr  # torchrun's summary: rank 1 stopped on bad input
    assert snapshot(output) == {}


def test_bad_input_every_rank_meets_is_said_once(data, tmp_path):
    done = torchrun(*FINETUNE, "--batch-size", "7", "--data", str(data), "--output", str(tmp_path / "model"))
    assert done.returncode != 0
    assert len(error_lines(done.stderr)) == 1, done.stderr[-4000:]
    assert "--batch-size 7 is the global batch" in error_lines(done.stderr)[0]
    assert "[rank0]: Traceback" not in done.stderr and "[rank1]: Traceback" not in done.stderr
