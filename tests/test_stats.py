"""The statistics leaf: each method against an answer known in closed form or by simulation."""

import math

import numpy as np
import pytest

from chipbench import stats


def test_holm_adjusts_step_down_and_keeps_order():
    adjusted = stats.holm([0.01, 0.04, 0.03, 0.20])
    # sorted 0.01, 0.03, 0.04, 0.20 -> 4 x 0.01, 3 x 0.03, max(2 x 0.04, 0.09), max(0.20, 0.09)
    assert adjusted == pytest.approx([0.04, 0.09, 0.09, 0.20])
    assert stats.holm([0.9]) == [0.9] and stats.holm([]) == []


def test_the_variance_components_of_a_balanced_design_come_back():
    rng = np.random.default_rng(0)
    trial, drift = math.log1p(0.02), math.log1p(0.05)
    sides = [stats.Side.of([rng.normal(rng.normal(0, drift), trial, 4) for _ in range(6)]) for _ in range(200)]
    tv = stats.trial_variance(sides)
    dv = stats.drift_variance([(s, tv[0]) for s in sides])
    assert math.sqrt(tv[0]) == pytest.approx(trial, rel=0.05) and tv[1] == 200 * 6 * 3
    assert math.sqrt(dv[0]) == pytest.approx(drift, rel=0.1) and dv[1] == 200 * 5


def test_one_invocation_carries_its_whole_drift_and_k_equal_ones_a_kth():
    assert stats.Side.of([[0.0] * 3]).drift_weight == 1
    assert stats.Side.of([[0.0] * 3] * 4).drift_weight == pytest.approx(0.25)


def test_the_difference_counts_every_level():
    noise = stats.Noise(trial_var=0.02**2, trial_df=10, drift_var=0.05**2, drift_df=8, drift_source="measured")
    run, base = stats.Side.of([[0.0] * 3]), stats.Side.of([[0.1] * 3] * 3)
    d, se, df = stats.difference(run, base, noise)
    assert d == pytest.approx(-0.1)
    assert se**2 == pytest.approx(0.05**2 * (1 + 1 / 3) + 0.02**2 * (1 / 3 + 1 / 9))
    assert 8 <= df <= 18


def test_without_a_measured_drift_the_prior_stands_in_never_zero():
    run, base = stats.Side.of([[0.0, 0.01, -0.01]]), stats.Side.of([[0.0, 0.02, -0.02]])
    noise = stats.noise_for(run, base, stats.trial_variance([run, base]), None)
    assert noise.drift_var == pytest.approx(math.log1p(stats.DRIFT_PRIOR) ** 2) and not noise.drift_known
    one = stats.noise_for(stats.Side.of([[0.0]]), stats.Side.of([[0.0]]), None, None, rounds_var=0.2**2)
    assert one.drift_var == pytest.approx(0.04) and not one.gateable  # the rounds said more than the prior


def test_the_minimum_detectable_regression_is_caught_80_percent_of_the_time():
    # a known-variance normal model: the gate fails when d + z_{1-a} * se < log T
    se, threshold = 0.05, 0.95
    mdr = stats.min_detectable(se, math.inf, threshold)
    rng = np.random.default_rng(1)
    d = math.log1p(-mdr) + se * rng.standard_normal(20000)
    caught = np.mean([stats.p_below(x, se, math.inf, threshold) <= stats.GATE_ALPHA for x in d[:4000]])
    assert caught == pytest.approx(stats.POWER, abs=0.02)
    assert stats.min_detectable(se / 2, math.inf, threshold) < mdr  # less noise, smaller regressions seen
    assert stats.min_detectable(se, math.inf, threshold, rows=4) > mdr  # a family of 4 costs power


def test_summarize_gives_a_t_interval_cut_at_zero_for_positive_values():
    s = stats.summarize([10.0, 11.0, 12.0])
    assert s["mean"] == 11 and s["stdev"] == 1 and s["ci95_low"] == pytest.approx(11 - 4.302653 / math.sqrt(3))
    assert stats.summarize([2.0, 20.0])["ci95_low"] == 0.0


def test_a_single_trial_case_never_takes_a_pure_drift_estimate_for_its_whole_variance():
    # the device's pool came from invocations of 3 trials (n0 = 3): drift alone, 1%; this case's
    # invocations hold one trial each, whose own spread (drift and trials together) is 10%
    pooled = (0.01**2, 8, 3.0)
    run, base = stats.Side.of([[0.0]]), stats.Side.of([[0.1], [-0.1], [0.0]])
    noise = stats.noise_for(run, base, None, pooled)
    assert noise.drift_var == pytest.approx(0.01) and noise.drift_source.startswith("measured over 4 single-trial")
    alone = stats.noise_for(stats.Side.of([[0.0]]), stats.Side.of([[0.0]]), None, pooled)
    assert not alone.gateable  # nothing of its own: no gate, rather than the pool's 1%
    single = stats.noise_for(run, base, None, (0.02**2, 8, 1.0))  # a pool of single-trial invocations: used
    assert single.drift_var == pytest.approx(0.0004) and single.drift_df == 8
