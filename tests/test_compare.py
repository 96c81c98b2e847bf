"""Comparisons on hand-made records whose right answer is known."""

import numpy as np
import pytest

from bench.judging.compare import compare_records, compare_samples


def samples(center, spread, n=7, seed=0):
    rng = np.random.default_rng(seed)
    return list(center * (1 + spread * rng.standard_normal(n)))


def test_a_20_percent_throughput_regression_with_tight_spread_fails_the_gate():
    c = compare_samples(samples(80, 0.01), samples(100, 0.01, seed=1), "decode_tok_per_s", threshold=0.95)
    assert c.verdict == "slower" and c.gate == "FAIL"
    assert c.ratio == pytest.approx(0.8, abs=0.02) and c.ci_high < 0.95


def test_a_2_percent_change_inside_the_noise_does_not_fail():
    c = compare_samples(samples(98, 0.08), samples(100, 0.08, seed=1), "decode_tok_per_s", threshold=0.95)
    assert c.verdict == "no significant difference" and c.gate != "FAIL"


def test_latency_direction_is_respected():
    # TPOT went from 10 ms to 12 ms: lower is better, so the run is slower (speed ratio ~0.83)
    c = compare_samples(samples(0.012, 0.01), samples(0.010, 0.01, seed=1), "tpot_s", threshold=0.95)
    assert c.verdict == "slower" and c.gate == "FAIL" and c.ratio == pytest.approx(1 / 1.2, abs=0.02)
    better = compare_samples(samples(0.008, 0.01), samples(0.010, 0.01, seed=1), "tpot_s")
    assert better.verdict == "faster" and better.ratio > 1.2


def test_noise_wider_than_the_threshold_is_reported_not_flipped():
    c = compare_samples(samples(90, 0.25, n=4), samples(100, 0.25, n=4, seed=1), "decode_tok_per_s",
                        threshold=0.95)
    assert c.gate == "too noisy" and c.verdict == "no significant difference"


def test_one_round_is_insufficient_data():
    c = compare_samples([80.0], [100.0, 101.0], "decode_tok_per_s", threshold=0.95)
    assert c.verdict == "insufficient data" and c.gate == "too noisy" and c.ratio == pytest.approx(0.796, abs=0.01)


def test_the_interval_covers_the_true_ratio_about_95_percent_of_the_time():
    hits = 0
    for seed in range(400):
        c = compare_samples(samples(90, 0.05, seed=2 * seed), samples(100, 0.05, seed=2 * seed + 1),
                            "decode_tok_per_s")
        hits += c.ci_low <= 0.9 <= c.ci_high
    assert 0.90 <= hits / 400 <= 0.99


def rec(model, workload, kind, values, metric, ts="2026-11-22T00:00:00+00:00", **kw):
    return {"model": model, "dtype": "bf16", "workload": workload, "batch": 1, "backend_kind": "cpu",
            "kind": kind, "status": "ok", "device_name": "x", "timestamp_utc": ts,
            f"{metric}_samples": values, **kw}


def test_cases_match_by_identity_and_unmatched_cases_are_listed():
    run = [rec("m", "tg128", "decode", samples(80, 0.01), "decode_tok_per_s"),
           rec("m", "pp512", "prefill", samples(1000, 0.01), "prefill_tok_per_s")]
    base = [rec("m", "tg128", "decode", samples(100, 0.01, seed=1), "decode_tok_per_s"),
            rec("other", "tg128", "decode", samples(100, 0.01), "decode_tok_per_s")]
    c = compare_records(run, base, metrics=["decode_tok_per_s"], threshold=0.95)
    assert [r["workload"] for r in c.rows] == ["tg128"] and len(c.failed) == 1
    assert c.unmatched_run == [("m", "bf16", "pp512", 1, "cpu")]
    assert c.unmatched_base == [("other", "bf16", "tg128", 1, "cpu")]


def test_the_newest_ok_record_of_a_case_is_the_one_compared():
    base = [rec("m", "tg8", "decode", samples(100, 0.01), "decode_tok_per_s", ts="2026-01-01"),
            rec("m", "tg8", "decode", samples(80, 0.01), "decode_tok_per_s", ts="2026-02-01")]
    run = [rec("m", "tg8", "decode", samples(80, 0.01, seed=3), "decode_tok_per_s")]
    (row,) = compare_records(run, base, metrics=["decode_tok_per_s"]).rows
    assert row["verdict"] == "no significant difference"


def test_the_best_baseline_is_the_same_device_else_the_same_kind_never_the_run_itself():
    from bench.judging.compare import best_baseline

    label = lambda r: r["device_name"]  # noqa: E731
    run = [rec("m", "tg8", "decode", [1.0], "decode_tok_per_s", device_name="A", record_id="r1")]
    same = rec("m", "tg8", "decode", [1.0], "decode_tok_per_s", device_name="A", record_id="b1")
    other = rec("m", "tg8", "decode", [1.0], "decode_tok_per_s", device_name="B", record_id="b2")
    assert best_baseline(run, [same, other, run[0]], label) == [same]
    assert best_baseline(run, [other, run[0]], label) == [other]
