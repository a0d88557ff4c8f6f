"""``transferlab --version`` and the shell completion scripts click writes for the command."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

import transferlab
from helpers import run_cli


def test_version_prints_the_package_version_and_exits_0(cli):
    result = cli("--version")
    assert result.returncode == 0
    assert result.stdout == f"transferlab {transferlab.__version__}\n"
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    assert transferlab.__version__ == project["version"]


@pytest.mark.parametrize("shell, marker", [("bash", "complete -o nosort -F _transferlab_completion transferlab"),
                                           ("zsh", "#compdef transferlab"),
                                           ("fish", "complete --no-files --command transferlab")])
def test_the_completion_script_is_produced(shell, marker):
    result = run_cli(env={"_TRANSFERLAB_COMPLETE": f"{shell}_source"})
    assert result.returncode == 0, result.stderr
    assert marker in result.stdout


def test_completion_completes_a_command_name():
    result = run_cli(env={"_TRANSFERLAB_COMPLETE": "bash_complete", "COMP_WORDS": "transferlab fine",
                          "COMP_CWORD": "1"})
    assert result.returncode == 0, result.stderr
    assert "plain,finetune" in result.stdout.split()
