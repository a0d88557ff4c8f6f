"""Every example study plans on the built-in data: its keys, freeze points and split sizes are valid as written."""

from __future__ import annotations

from pathlib import Path

import pytest

from transferlab.study import load_study, plan_study

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_the_example_study_plans_on_the_builtin_data(path):
    plan = plan_study(load_study(path))
    assert plan.runs
    assert all(run.config.data for run in plan.runs)
