"""Freeze policies count timm's units from the input side; every bad policy is a UserError before torch runs."""

from __future__ import annotations

import pytest

from transferlab.errors import UserError
from transferlab.finetune.freeze import Stage, check_policy, frozen_units, plan_stages


def test_freeze_policies_count_units_from_the_input_side():
    assert frozen_units("all", 17) == 17
    assert frozen_units("none", 17) == 0
    assert frozen_units("half", 17) == 8
    assert frozen_units("first:7", 17) == 7
    assert frozen_units("top:3", 17) == 14


def test_two_stage_trains_the_head_first_then_unfreezes():
    assert plan_stages("two-stage", 17) == [Stage(17, "head"), Stage(0, "fine-tune")]
    assert plan_stages("two-stage:top:5", 17) == [Stage(17, "head"), Stage(12, "fine-tune")]
    assert plan_stages("two-stage:half", 17) == [Stage(17, "head"), Stage(8, "fine-tune")]
    assert plan_stages("top:3", 17) == [Stage(14, "train")]


@pytest.mark.parametrize("policy", ["bogus", "first:99", "top:-1", "first:x", "two-stage:bogus", "top:"])
def test_bad_freeze_policy_is_a_user_error(policy):
    with pytest.raises(UserError):
        plan_stages(policy, 17)


@pytest.mark.parametrize("policy", ["bogus", "top:-1", "first:x", "two-stage:first:y"])
def test_policy_syntax_is_checked_without_the_backbone(policy):
    with pytest.raises(UserError):
        check_policy(policy)
    assert check_policy("two-stage:first:100") == "two-stage:first:100"  # the count is checked against the backbone
