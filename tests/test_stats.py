"""Intervals and paired tests: checked against values worked out by hand."""

from __future__ import annotations

import math

import pytest

from transferlab.stats import mcnemar_exact, mean_interval, paired_bootstrap, wilson_interval


def test_wilson_interval_of_8_of_10():
    # centre (p + z²/2n) / (1 + z²/n), half-width z·sqrt(p(1-p)/n + z²/4n²) / (1 + z²/n), z = 1.95996
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)


def test_wilson_interval_at_the_edges_stays_inside_zero_and_one():
    low, high = wilson_interval(10, 10)
    assert high == pytest.approx(1.0) and low == pytest.approx(0.7225, abs=1e-4)
    assert wilson_interval(0, 10)[0] == pytest.approx(0.0)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_t_interval_of_the_mean_of_three_seeds():
    summary = mean_interval([0.80, 0.82, 0.84])
    half = 4.302653 * 0.02 / math.sqrt(3)  # t(0.975, 2 degrees of freedom) · s / sqrt(n)
    assert summary.mean == pytest.approx(0.82) and summary.std == pytest.approx(0.02)
    assert (summary.low, summary.high) == (pytest.approx(0.82 - half), pytest.approx(0.82 + half))


def test_one_value_has_no_interval_of_the_mean():
    summary = mean_interval([0.7])
    assert summary.mean == 0.7 and math.isnan(summary.low) and math.isnan(summary.high)


def test_mcnemar_exact_on_known_discordant_counts():
    # 6 images only A got right, 1 only B: P(X <= 1 or X >= 6), X ~ Binomial(7, 1/2) = 16/128
    a = [True] * 6 + [False] + [True] * 20 + [False] * 3
    b = [False] * 6 + [True] + [True] * 20 + [False] * 3
    test = mcnemar_exact(a, b)
    assert (test.n, test.only_a, test.only_b) == (30, 6, 1)
    assert test.p_value == pytest.approx(16 / 128)
    assert test.within_noise


def test_mcnemar_one_image_apart_is_noise_ten_apart_is_not():
    same = [True] * 40 + [False] * 10
    one_more = [True] * 41 + [False] * 9
    assert mcnemar_exact(one_more, same).p_value == pytest.approx(1.0)
    ten_more = [True] * 50
    test = mcnemar_exact(ten_more, same)
    assert test.p_value == pytest.approx(2 * 0.5 ** 10) and not test.within_noise


def test_mcnemar_is_paired_a_subset_gap_an_unpaired_test_would_miss():
    """B right on 50 of 100 images, A on those and 10 more: 60% vs 50% is noise for two unpaired samples
    (Fisher's exact p ~ 0.2), but every discordant image favours A, which is not noise."""
    b = [True] * 50 + [False] * 50
    a = [True] * 60 + [False] * 40
    assert mcnemar_exact(a, b).p_value < 0.01


def test_mcnemar_refuses_unpaired_lengths():
    with pytest.raises(ValueError):
        mcnemar_exact([True, False], [True])


def test_paired_bootstrap_is_seeded_and_brackets_the_difference():
    a = [True] * 30 + [False] * 10
    b = [True] * 25 + [False] * 15
    difference, low, high = paired_bootstrap(a, b, seed=3)
    assert difference == pytest.approx(5 / 40)
    assert low <= difference <= high and low >= 0  # every discordant pair favours A
    assert paired_bootstrap(a, b, seed=3) == (difference, low, high)


def test_interval_of_a_mean_accuracy_stays_within_zero_and_one():
    summary = mean_interval([0.9, 1.0], bounds=(0.0, 1.0))  # t(0.975, 1) = 12.7: the raw interval reaches 1.59
    assert summary.high == 1.0 and summary.low == pytest.approx(0.95 - 12.7062 * 0.0707107 / math.sqrt(2), abs=1e-3)
