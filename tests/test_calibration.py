"""The gate's error rates, measured: simulated pairs of runs with known answers, in the record
schema, through compare_records (what `chipbench compare --fail-below` calls).

Each cell is a machine with 4 decode cases gated together (Holm); a false alarm is a pair of A/A
runs in which any case failed, power the share of truly regressed cases that failed. The seeds are
fixed, so the rates are the same in every run; each target is checked with the cell's sampling
error (a 95% Wilson interval) where a rate near its target could be luck. The full grid, with more
pairs per cell, is results/calibration/gate-calibration.csv (python -m chipbench.judging.calibration).
"""

import csv
from pathlib import Path

import pytest

from chipbench.judging.calibration import Cell, Rate, _record, grid, run_cell, simulate_pair
from chipbench.publishing.schema import validate as validate_record

ROOT = Path(__file__).resolve().parents[1]


def test_simulated_records_are_valid_records():
    import numpy as np

    run, base = simulate_pair(Cell(0.05, 0.03, 3, 0.2, 3), np.random.default_rng(0))
    assert len(run) == 4 * 3 and len(base) == 4 * 3 * 3
    for rec in run[:2] + base[:2]:
        validate_record(rec)
    assert _record(0, 0, "s", 0, 1, 50.0, np.random.default_rng(1))["workload"] == "tg16"


@pytest.mark.parametrize("trials", [1, 3, 10])
def test_a_a_false_alarms_stay_at_most_5_percent_where_the_baseline_knows_the_drift(trials):
    rates = {
        (s, d): run_cell(Cell(s, d, trials, 0.0, 3), reps=100) for s in (0.01, 0.05, 0.15) for d in (0.0, 0.03, 0.05)
    }
    pooled = Rate(sum(r.hits for r in rates.values()), sum(r.of for r in rates.values()))
    assert pooled.rate <= 0.05, rates
    assert all(r.wilson()[0] <= 0.05 for r in rates.values()), rates  # no cell significantly above 5%


@pytest.mark.parametrize("trials", [3, 10])
def test_a_ratio_right_at_the_threshold_fails_at_most_5_percent_of_the_time(trials):
    # the gate's null is "ratio >= T": at its edge (every case exactly 5% slower) the family-wise
    # rate of FAILs is the test's size, which must hold at GATE_ALPHA, drift known or assumed
    rates = [run_cell(Cell(s, d, trials, 0.05, k), reps=100) for s in (0.02, 0.10) for d in (0.0, 0.03) for k in (1, 3)]
    assert all(r.wilson()[0] <= 0.05 for r in rates), rates
    assert sum(r.hits for r in rates) / sum(r.of for r in rates) <= 0.05, rates


def test_a_a_false_alarms_stay_low_with_the_drift_prior_inside_its_range():
    rates = [run_cell(Cell(s, d, 3, 0.0, 1), reps=100) for s in (0.01, 0.05) for d in (0.0, 0.05)]
    assert sum(r.hits for r in rates) / sum(r.of for r in rates) <= 0.05


@pytest.mark.parametrize("drift", [0.0, 0.01, 0.03])
def test_a_20_percent_regression_at_5_percent_spread_3_vs_3_is_caught_80_percent_of_the_time(drift):
    rate = run_cell(Cell(0.05, drift, 3, 0.20, 3), reps=100)
    assert rate.rate >= 0.80, rate


def test_power_never_falls_with_more_trials():
    # 5% spread, 3% drift, a 20% regression, drift known: each step may only rise (or stay within
    # two standard errors of sampling noise: the rates are estimates)
    rates = [run_cell(Cell(0.05, 0.03, n, 0.20, 3), reps=100) for n in (1, 3, 5, 10)]
    for a, b in zip(rates, rates[1:]):
        se = (a.rate * (1 - a.rate) / a.of + b.rate * (1 - b.rate) / b.of) ** 0.5
        assert b.rate >= a.rate - 2 * se, rates


def test_more_evidence_makes_the_old_failures_fail():
    # the old gate: 40% regression, 5% spread, 3 trials a side failed 1 pair in 10, and 10 trials
    # a side never, because its floor was compared with 1 - T; the drift prior stands in here
    for trials in (3, 10):
        assert run_cell(Cell(0.05, 0.0, trials, 0.40, 1), reps=40).rate >= 0.95


def test_the_committed_calibration_table_meets_the_targets():
    path = ROOT / "results" / "calibration" / "gate-calibration.csv"
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == len(grid())
    for r in rows:
        rate, lo = float(r["rate"]), float(r["wilson_low"])
        known = r["drift_known"] == "True"
        if known and r["measure"] in ("false alarm", "size at T"):
            assert lo <= 0.05, r
        if (
            known
            and r["measure"] == "power"
            and float(r["spread"]) == 0.05
            and int(r["trials"]) == 3
            and float(r["regression"]) == 0.20
            and float(r["drift"]) <= 0.03
        ):
            assert rate >= 0.80, r
