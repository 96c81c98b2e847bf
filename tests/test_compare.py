"""Comparisons on hand-made records whose right answer is known: trials, noise floors, devices."""

import numpy as np
import pytest

from chipbench.errors import UsageError
from chipbench.judging.cases import case_stat
from chipbench.judging.compare import compare_records, compare_stats
from tests.records import make_record, make_trials


def test_one_trial_a_side_gives_a_verdict_with_its_assumption_and_no_gate():
    # Two back-to-back runs of identical code, one trial each: the rounds inside each process are
    # tight, but the runs sit 6% apart (drift). Nothing measured the spread between processes.
    run = [make_record(tpot_s=0.0212, spread=0.005, seed=1)]
    base = [make_record(tpot_s=0.0200, spread=0.005, seed=2)]
    (row,) = compare_records(run, base, metrics=["decode_tok_per_s"], threshold=0.95).rows
    assert row["gate"] == "too noisy" and "nothing measured the spread between processes" in row["gate_note"]
    assert row["verdict"] == "no significant difference" and row["drift_source"].startswith("prior")
    assert "1 trial vs 1 trial" in row["basis"] and "assumed" in row["basis"]


@pytest.mark.parametrize("seed", range(5))
def test_two_a_a_runs_with_between_run_drift_pass_the_gate(seed):
    # Identical code, 3 trials each; every trial drifts by 1.5% (between runs), rounds by 0.5%.
    run = make_trials(3, tpot_s=0.02, drift=0.015, seed=10 * seed)
    base = make_trials(3, tpot_s=0.02, drift=0.015, seed=10 * seed + 5)
    rows = compare_records(run, base, threshold=0.95).rows
    assert rows and all(r["gate"] != "FAIL" for r in rows)
    assert all(r["basis"].startswith("3 trials vs 3 trials") for r in rows)


def test_only_the_headline_is_gated_unless_others_are_named():
    run = make_trials(3, tpot_s=0.02, drift=0.015, seed=1)
    base = make_trials(3, tpot_s=0.02, drift=0.015, seed=2)
    rows = compare_records(run, base, threshold=0.95).rows
    assert {r["metric"]: r["gate"] is not None for r in rows} == {
        "decode_tok_per_s": True,
        "ttft_s": False,
        "tpot_s": False,
    }
    named = compare_records(run, base, threshold=0.95, gate_metrics=["headline", "tpot_s"]).rows
    assert {r["metric"] for r in named if r["gate"] is not None} == {"decode_tok_per_s", "tpot_s"}
    assert all(r["p_holm"] >= r["p_below"] for r in named if r["gate"] is not None)


def test_a_real_20_percent_regression_still_fails_and_says_what_it_could_catch():
    run = make_trials(3, tpot_s=0.025, drift=0.015, seed=1)  # 20% fewer tokens/s
    base = make_trials(3, tpot_s=0.020, drift=0.015, seed=2)
    (row,) = compare_records(run, base, metrics=["decode_tok_per_s"], threshold=0.95).rows
    assert row["gate"] == "FAIL" and row["verdict"] == "slower"
    assert row["ratio"] == pytest.approx(0.8, abs=0.03)
    assert 0.05 < row["mdr"] < 0.25 and row["mdr_more"].startswith("run trials 3:")


def test_a_large_regression_on_a_noisy_machine_fails_where_the_old_floor_said_too_noisy():
    # 5% between trials, a third fewer tokens/s: the old gate compared its floor (1.96 * sqrt(2) *
    # 5% = 14%) with 1 - T and refused; the means of 4 trials a side are far apart.
    run = make_trials(4, tpot_s=0.030, drift=0.05, seed=3)
    base = make_trials(4, tpot_s=0.020, drift=0.05, seed=4)
    (row,) = compare_records(run, base, metrics=["decode_tok_per_s"], threshold=0.95).rows
    assert row["gate"] == "FAIL" and row["mdr"] < 0.33


def test_one_trial_against_a_repeated_baseline_borrows_its_trial_spread():
    run = [make_record(tpot_s=0.025, spread=0.005, seed=7)]
    base = make_trials(3, tpot_s=0.020, drift=0.015, seed=8)
    (row,) = compare_records(run, base, metrics=["decode_tok_per_s"], threshold=0.95).rows
    assert row["basis"].startswith("1 trial vs 3 trials") and row["gate"] == "FAIL"


def test_a_baseline_of_several_invocations_measures_the_drift_and_uses_it():
    base = (
        make_trials(3, tpot_s=0.020, drift=0.01, seed=1)
        + make_trials(3, tpot_s=0.0205, drift=0.01, seed=2)
        + make_trials(3, tpot_s=0.0198, drift=0.01, seed=3)
    )
    run = make_trials(3, tpot_s=0.020, drift=0.01, seed=4)
    (row,) = compare_records(run, base, metrics=["decode_tok_per_s"], threshold=0.95).rows
    assert row["drift_source"].startswith("measured") and row["base_invocations"] == 3
    assert "9 trials in 3 invocations" in row["basis"] and row["gate"] == "pass"
    alone = compare_records(run, base[:3], metrics=["decode_tok_per_s"], threshold=0.95).rows[0]
    assert alone["drift_source"] == "prior" and alone["mdr"] > row["mdr"]


def test_latency_direction_is_respected():
    run = make_trials(3, tpot_s=0.012, drift=0.005, seed=1)
    base = make_trials(3, tpot_s=0.010, drift=0.005, seed=2)
    (row,) = compare_records(run, base, metrics=["tpot_s"], threshold=0.95).rows
    assert row["verdict"] == "slower" and row["ratio"] == pytest.approx(1 / 1.2, abs=0.02)


def test_the_interval_covers_the_true_ratio_about_95_percent_of_the_time():
    # every trial its own invocation (3% between them): the spread of the invocations is measured
    # on both sides, so the interval is exact, not widened by the prior
    hits = 0
    for seed in range(200):
        sides = []
        for tpot, s in ((0.0111, 2 * seed), (0.0100, 2 * seed + 1)):
            recs = make_trials(4, tpot_s=tpot, drift=0.03, seed=s)
            for i, r in enumerate(recs):
                r["series_id"] = f"{s}-{i}"
            sides.append(case_stat(recs, "decode_tok_per_s"))
        c = compare_stats(*sides)
        hits += c.ci_low <= 0.9009 <= c.ci_high
    assert 0.90 <= hits / 200 <= 0.99


def test_two_devices_in_one_merged_file_are_compared_device_by_device():
    base = make_trials(3, device="H100", tpot_s=0.010, drift=0.01, seed=1) + make_trials(
        3, device="A100", tpot_s=0.020, drift=0.01, seed=2
    )
    run = make_trials(3, device="H100", tpot_s=0.010, drift=0.01, seed=3) + make_trials(
        3, device="A100", tpot_s=0.040, drift=0.01, seed=4
    )  # the A100 runner got 2x slower
    c = compare_records(run, base, metrics=["decode_tok_per_s"], threshold=0.95)
    by_device = {r["device"]: r for r in c.rows}
    assert set(by_device) == {"H100", "A100"} and all(r["base_device"] == r["device"] for r in c.rows)
    assert by_device["A100"]["gate"] == "FAIL" and by_device["H100"]["gate"] != "FAIL"
    assert by_device["H100"]["verdict"] == "no significant difference"


def test_a_run_alone_is_never_compared_with_another_devices_baseline():
    base = make_trials(3, device="H100", tpot_s=0.010, drift=0.01, seed=1)
    run = make_trials(3, device="A100", tpot_s=0.020, drift=0.01, seed=2)
    c = compare_records(run, base, threshold=0.95)
    assert not c.rows and len(c.unmatched_run) == 1 and len(c.unmatched_base) == 1
    assert c.accounts["run"].unmatched == 3 and c.accounts["baseline"].unmatched == 3


def test_across_devices_is_deliberate_and_never_gates():
    base = make_trials(3, device="H100", tpot_s=0.010, drift=0.01, seed=1)
    run = make_trials(3, device="A100", tpot_s=0.020, drift=0.01, seed=2)
    c = compare_records(run, base, metrics=["decode_tok_per_s"], across_devices=True)
    (row,) = c.rows
    assert (row["device"], row["base_device"]) == ("A100", "H100") and row["verdict"] == "slower"
    with pytest.raises(UsageError, match="across different devices is refused"):
        compare_records(run, base, threshold=0.95, across_devices=True)


def test_every_record_is_used_deduplicated_or_listed():
    run = make_trials(3, seed=1)
    base = make_trials(3, seed=2)
    conflicting = dict(base[0], decode_tok_per_s_samples=[1.0, 2.0])  # same record_id, other content
    failed = make_record(status="failed", seed=9, workload="tg16")
    c = compare_records(run + run[:1], base + base + [conflicting, failed], metrics=["decode_tok_per_s"])
    acc_run, acc_base = c.accounts["run"], c.accounts["baseline"]
    assert (acc_run.inputs, acc_run.used, acc_run.duplicates) == (4, 3, 1)
    # the failed baseline record matches no run case: counted once, as failed, not also as unmatched
    assert (acc_base.inputs, acc_base.used, acc_base.duplicates, acc_base.failed, acc_base.unmatched) == (8, 3, 4, 1, 0)
    for acc in (acc_run, acc_base):
        assert acc.inputs == acc.used + acc.unmatched + acc.failed + acc.duplicates + acc.left_out + acc.filtered
    assert acc_base.conflicts == [base[0]["record_id"]]
    assert "CONFLICT" in acc_base.line("baseline")


def test_a_run_is_never_its_own_baseline():
    run, other = make_trials(3, seed=1), make_trials(3, seed=2)
    c = compare_records(run, run + other)
    assert c.accounts["baseline"].duplicates == 3 and all(r["base_trials"] == 3 for r in c.rows)
    with pytest.raises(UsageError, match="every baseline record is one of the run's own"):
        compare_records(run, run)  # the message names the cause, not the cases


def test_a_case_that_failed_in_the_run_fails_the_gate():
    base = make_trials(3, seed=1)
    run = [make_record(status="failed", error="OutOfMemoryError: CUDA out of memory")]
    (row,) = compare_records(run, base, threshold=0.95).rows
    assert row["gate"] == "FAIL" and "every trial failed in the run" in row["verdict"]


def test_a_split_run_is_its_own_case_never_pooled_with_one_device():
    from chipbench.judging.cases import group
    from chipbench.publishing import tables
    from chipbench.publishing.report import summary_rows

    one = make_trials(3, seed=1, device="NVIDIA H100 80GB HBM3")
    split = make_trials(3, seed=2, tpot_s=0.012, device="NVIDIA H100 80GB HBM3", parallel="tp2", env_chips=2)
    assert len(group(one + split)) == 2
    assert sorted(r["path"] for r in summary_rows(one + split)) == ["eager", "eager tp2"]
    assert len(tables.build(one + split).cases) == 2
    assert not compare_records(split, one).rows  # tp2 against one GPU is not a regression check


def test_a_comparison_says_when_the_sides_ran_other_weights():
    base = make_trials(3, seed=1, weights="random(seed=0)")
    dense = compare_records(make_trials(3, seed=2, weights="random(seed=0, u8)"), base).rows
    assert not any("weights_note" in r for r in dense)  # the same work with any weights: no note
    moe = [dict(r, model="qwen3-30b-a3b") for r in base]
    (row,) = [
        r
        for r in compare_records(
            [dict(r, model="qwen3-30b-a3b", weights="real") for r in make_trials(3, seed=3)], moe
        ).rows
        if r["metric"] == "tpot_s"
    ]
    assert row["weights_note"].startswith("other weights (real vs random(seed=0)): an MoE routes by its weights")
    assert (
        "weights_note"
        not in compare_records(
            [dict(r, model="qwen3-30b-a3b") for r in make_trials(3, seed=4)], [dict(r, weights=None) for r in moe]
        ).rows[0]
    )


def test_two_adapters_on_one_device_are_two_cases():
    from chipbench.judging.cases import group

    generic = make_trials(2, seed=1, backend="accelerator", kind_of_device="npu", device="Ascend910B3")
    vendor = make_trials(2, seed=2, backend="ascend-plugin", kind_of_device="npu", device="Ascend910B3")
    assert len(group(generic + vendor)) == 2
    assert not compare_records(vendor, generic).rows  # another adapter is not a regression check


def test_a_fast_but_wrong_run_gets_no_speed_verdict_and_fails_the_gate():
    base = make_trials(3, seed=1)
    run = make_trials(3, seed=2, tpot_s=0.01)  # twice as fast...
    run[1].update(correct=False, correctness_note="greedy tokens differ at step 3")  # ...but one trial is wrong
    (row,) = compare_records(run, base, threshold=0.95).rows
    assert row["gate"] == "FAIL" and row["ratio"] is None and "1 of 3 trial(s) of the run failed" in row["verdict"]
    assert row["gate_note"] == "WRONG: greedy tokens differ at step 3"
    (row,) = compare_records(base, run, threshold=0.95).rows
    assert row["gate"] == "no baseline" and "of the baseline failed the correctness gate" in row["verdict"]
    assert not compare_records(base, run, threshold=0.95).failed


def test_a_serving_level_that_served_part_of_its_load_gets_no_speed_verdict():
    level = dict(kind="serve", serve_requests=8, serve_failed=0, serve_not_sent=0)
    base = [dict(r, **level) for r in make_trials(3, seed=1)]
    run = [dict(r, **level) for r in make_trials(3, seed=2, tpot_s=0.01)]  # twice as fast per request...
    run[0].update(serve_failed=5, serve_errors="EndpointError: 503")  # ...with most requests of one trial failed
    (row,) = compare_records(run, base, threshold=0.95).rows
    assert row["gate"] == "FAIL" and row["ratio"] is None and "served part of the level's requests" in row["verdict"]
    assert row["gate_note"] == "5 failed, 0 unsent of 8: EndpointError: 503"
    (row,) = compare_records(base, run, threshold=0.95).rows
    assert row["gate"] == "no baseline" and "of the baseline served part" in row["verdict"]


def test_the_best_baseline_is_the_same_device_else_across_devices_never_the_run_itself():
    from chipbench.judging.compare import best_baseline

    run = make_trials(2, device="A", seed=1)
    same = make_trials(2, device="A", seed=2)
    other = make_trials(2, device="B", seed=3)
    assert best_baseline(run, same + other + run) == (same, False)
    assert best_baseline(run, other + run) == (other, True)


def test_a_cpu_run_is_judged_against_baselines_of_its_own_matmul_extensions_where_there_are_any():
    """One CPU name, two machines: a run on AVX2 alone is never pooled with baselines from the
    AVX-512 BF16 machine of the same name, nor with ones that did not record their extensions, when
    a baseline on its own extensions exists (the others are counted, never dropped silently);
    without one, every record stays and the rows say so."""
    from chipbench.judging.compare import best_baseline

    cpu = dict(device="AMD EPYC", backend="cpu", kind_of_device="cpu", env_cpu_cores=2)
    run = make_trials(2, seed=1, env_device_isa="avx2 fma", **cpu)
    same = make_trials(3, seed=2, env_device_isa="avx2 fma", **cpu)
    wide = make_trials(2, seed=3, env_device_isa="avx2 fma avx512f avx512_bf16", tpot_s=0.005, **cpu)
    unknown = make_trials(2, seed=4, tpot_s=0.005, **cpu)
    base, across = best_baseline(run, wide + same + unknown)
    assert not across and len(base) == 7  # one device name: the comparison sorts them
    result = compare_records(run, base, metrics=["decode_tok_per_s"], threshold=0.95)
    (row,) = result.rows
    assert row["base_trials"] == 3  # the avx2 trials alone
    assert 0.8 < row["ratio"] < 1.25 and not row.get("cpu_note")  # not 0.25x against the pooled fast ones
    assert result.accounts["baseline"].other_cpu == 4 and result.accounts["baseline"].used == 3
    assert "4 from another CPU of the same name" in result.account_lines()[1]
    rows = compare_records(run, wide + unknown, metrics=["decode_tok_per_s"], threshold=0.95).rows
    assert rows[0]["gate"] == "no baseline" and "another CPU under the same name" in rows[0]["cpu_note"]
    other = make_trials(2, seed=5, model="qwen3-0.6b", env_device_isa="avx2 fma avx512f", **cpu)
    mixed = compare_records(
        run + make_trials(1, seed=6, model="qwen3-0.6b", env_device_isa="avx2 fma", **cpu),
        same + wide + other,
        metrics=["decode_tok_per_s"],
    )
    assert mixed.accounts["baseline"].other_cpu == 2  # per case: 0.6b has none on avx2 alone, and keeps its own
    gpu = make_trials(2, seed=7)  # not a CPU: its records are never sorted by extensions
    assert compare_records(make_trials(2, seed=8), gpu).accounts["baseline"].other_cpu == 0


def test_one_statistic_everywhere_the_geometric_mean_of_trial_medians():
    recs = make_trials(3, tpot_s=0.02, drift=0.05, seed=5)
    stat = case_stat(recs, "decode_tok_per_s")
    medians = [np.median(r["decode_tok_per_s_samples"]) for r in recs]
    assert stat.value == pytest.approx(np.exp(np.mean(np.log(medians))))
    assert stat.trials == 3 and stat.rounds == 15


def test_a_slowdown_the_device_itself_shows_is_said_and_never_fails_the_gate():
    # A 25% slower decode. With the same measured bandwidth on both sides it is the software's and fails;
    # when the device's own measured bandwidth fell as far (a CI runner in a slow spell), the row says
    # so and the gate says too noisy: the evidence cannot tell the software from the machine.
    base = make_trials(3, tpot_s=0.020, seed=1, ceiling_gb_per_s=20.0, ceiling_tflops=1.5)
    same = make_trials(3, tpot_s=0.025, seed=2, ceiling_gb_per_s=19.0, ceiling_tflops=1.5)
    (row,) = compare_records(same, base, metrics=["tpot_s"], threshold=0.95).rows
    assert row["gate"] == "FAIL" and "machine_note" not in row
    slowed = make_trials(3, tpot_s=0.025, seed=2, ceiling_gb_per_s=12.0, ceiling_tflops=1.5)
    (row,) = compare_records(slowed, base, metrics=["tpot_s"], threshold=0.95).rows
    assert row["verdict"] == "machine differs" and row["speed_verdict"] == "slower"
    assert row["machine_ratio"] == pytest.approx(0.6) and "what would decide it" in row["decide"]
    assert (
        row["gate"] == "too noisy"
        and "the device itself measured 0.60x the baseline's memory bandwidth" in row["gate_note"]
    )
    # the matmul rate moved, not the bandwidth: a decode test's rows are not explained by it
    matmul = make_trials(3, tpot_s=0.025, seed=2, ceiling_gb_per_s=20.0, ceiling_tflops=0.6)
    (row,) = compare_records(matmul, base, metrics=["tpot_s"], threshold=0.95).rows
    assert row["gate"] == "FAIL" and "machine_note" not in row
    # a faster machine and a slower run: the regression stands, and the note says the machine went the other way
    faster = make_trials(3, tpot_s=0.025, seed=2, ceiling_gb_per_s=30.0)
    (row,) = compare_records(faster, base, metrics=["tpot_s"], threshold=0.95).rows
    assert row["gate"] == "FAIL" and row["machine_note"].endswith("(30 vs 20 GB/s): the machine moved the other way")
    assert row["verdict"] == "slower"  # slower on a faster machine: the machine does not explain it


def test_across_devices_the_two_ceilings_are_shown_beside_the_ratio_not_as_a_caveat():
    """Two chips: the speed ratio (0.8) reads beside the hardware's own (0.6x the bandwidth), and a
    different ceiling is the point of the comparison, so nothing says it may be the machine's."""
    base = make_trials(3, tpot_s=0.020, seed=1, device="H100", ceiling_gb_per_s=3000.0)
    run = make_trials(3, tpot_s=0.025, seed=2, device="A100", ceiling_gb_per_s=1800.0)
    (row,) = compare_records(run, base, metrics=["tpot_s"], across_devices=True).rows
    assert row["machine_ratio"] == pytest.approx(0.6)
    assert (
        row["machine_note"]
        == "the run's device measured 0.6x the baseline device's memory bandwidth (1800 vs 3000 GB/s)"
    )


def test_which_ceiling_bounds_which_metric():
    from chipbench.judging.compare import bound_by

    assert bound_by("tpot_s", "generate") == "bandwidth" and bound_by("ttft_s", "prefill") == "matmul"
    assert bound_by("ttft_s", "decode") == "bandwidth"  # tgN's prompt is one token: a decode step
    assert bound_by("output_tok_per_s", "generate") is None  # prefill and decode mixed: no one ceiling
    assert bound_by("prefill_tok_per_s", "prefill") == "matmul"


def test_the_comparison_table_shows_the_machine_note():
    from chipbench.publishing.report import render_comparison

    base = make_trials(3, tpot_s=0.020, seed=1, ceiling_gb_per_s=20.0)
    run = make_trials(3, tpot_s=0.025, seed=2, ceiling_gb_per_s=12.0)
    result = compare_records(run, base, metrics=["tpot_s"])
    text = render_comparison(result, "md", None, False)
    assert (
        "machine differs (invocation drift assumed); the device itself measured 0.60x the baseline's memory "
        "bandwidth (12 vs 20 GB/s)" in text
    )
    assert "what would decide it: a run when this machine measures its ceilings within 15%" in text
    # on a terminal: one short line per case, the explanation once below it, numbered
    lines = render_comparison(result, "text", None, False).splitlines()
    assert max(map(len, lines)) <= 120
    (row,) = [line for line in lines if line.startswith("cuda tg32 B1")]
    assert row.endswith("machine differs [1,2,3]")
    assert any(line.startswith("[1] invocation drift assumed: each side is one invocation") for line in lines)
    assert any(line.startswith("[2] the device itself measured 0.60x") for line in lines)
    assert any(line.startswith("[3] what would decide it: a run when") for line in lines)


def test_a_baseline_says_its_floors_and_when_the_machine_moved_across_its_runs(tmp_path, capsys):
    from chipbench.cli import main
    from chipbench.publishing.record import RecordWriter, read_records

    steady = make_trials(3, tpot_s=0.02, seed=1, ceiling_gb_per_s=20.0)
    drifting = make_trials(3, tpot_s=0.02, seed=2, model="qwen3-0.6b")
    for rec, bandwidth in zip(drifting, (20.0, 26.0, 15.5)):  # three runs an hour apart on a shared VM
        rec["ceiling_gb_per_s"] = bandwidth
    steady[0]["correct"] = False
    runs = tmp_path / "runs.jsonl"
    writer = RecordWriter(runs)
    for rec in steady + drifting:
        writer.write(rec)
    assert main(["baseline", str(runs), "--out", str(tmp_path / "base.jsonl")]) == 0
    out, err = capsys.readouterr()
    assert "15.5-26 GB/s" in out and "20-20 GB/s" in out
    assert "1 case(s) whose device measured its own ceiling more than 15% apart" in err
    assert "1 case(s) with a trial that failed the correctness gate" in err
    assert len(list(read_records(tmp_path / "base.jsonl"))) == 6


def test_a_baseline_pooled_from_cpus_with_other_matmul_extensions_says_so(tmp_path, capsys):
    from chipbench.cli import main
    from chipbench.publishing.record import RecordWriter

    cpu = dict(backend="cpu", backend_kind="cpu", device="Intel(R) Xeon(R) Processor")
    recs = make_trials(3, tpot_s=0.02, seed=1, env_device_isa="avx2 amx_bf16", **cpu)
    recs[2]["env_device_isa"] = "avx2"  # the third run landed on a VM without AMX
    writer = RecordWriter(tmp_path / "runs.jsonl")
    for rec in recs:
        writer.write(rec)
    assert main(["baseline", str(tmp_path / "runs.jsonl")]) == 0
    out, err = capsys.readouterr()
    assert "1 case(s) pool trials from CPUs of one name that reported other matmul extensions" in err
    assert out.splitlines()[0].split()[-2:] == ["cpus", "software"] and out.splitlines()[1].split()[-2:] == ["2", "one"]


def test_a_baseline_pooled_from_two_software_versions_says_so(tmp_path, capsys):
    """A baseline is one configuration's noise: trials of two transformers releases pool the releases'
    difference into its noise floor, and the gate against it is looser than it looks."""
    from chipbench.cli import main
    from chipbench.publishing.record import RecordWriter

    recs = make_trials(3, tpot_s=0.02, seed=1, env_transformers="5.24.0")
    recs[2]["env_transformers"] = "5.25.0"
    writer = RecordWriter(tmp_path / "runs.jsonl")
    for rec in recs:
        writer.write(rec)
    assert main(["baseline", str(tmp_path / "runs.jsonl")]) == 0
    out, err = capsys.readouterr()
    assert "1 case(s) pool trials made with other software (software: transformers x2)" in err
    assert out.splitlines()[1].split()[-2:] == ["transformers", "x2"]


def test_a_baseline_reads_the_rate_measured_right_after_each_case(tmp_path, capsys):
    from chipbench.cli import main
    from chipbench.publishing.record import RecordWriter

    recs = make_trials(3, tpot_s=0.02, seed=1, ceiling_gb_per_s=20.0)  # the suite's start looked steady
    for rec, beside in zip(recs, (19.5, 20.0, 14.0)):  # the third trial's case ran in a slow spell
        rec["ceiling_beside_gb_per_s"] = beside
    writer = RecordWriter(tmp_path / "runs.jsonl")
    for rec in recs:
        writer.write(rec)
    assert main(["baseline", str(tmp_path / "runs.jsonl"), "--out", str(tmp_path / "base.jsonl")]) == 0
    out, err = capsys.readouterr()
    assert "14-20 GB/s" in out and "1 case(s) whose device measured its own ceiling more than 15% apart" in err


def test_the_machines_rate_is_the_one_measured_right_after_the_case():
    """A VM that slows in the middle of a suite keeps its start-of-suite ceilings; the rate measured
    right after the case (ceiling_beside_*) shows it. Measured 2026-12-03 on this project's VM: tg128
    at 0.69x its baseline, the suite's bandwidth 0.91x the baseline's, 17.9 GB/s right after the case."""
    base = make_trials(1, tpot_s=0.126, seed=1, ceiling_gb_per_s=25.9)
    run = make_trials(1, tpot_s=0.183, seed=2, ceiling_gb_per_s=23.5, ceiling_beside_gb_per_s=17.9)
    (row,) = compare_records(run, base, metrics=["tpot_s"], threshold=0.95).rows
    assert row["machine_ratio"] == pytest.approx(17.9 / 25.9)
    assert row["machine_note"].startswith(
        "the device itself measured 0.69x the baseline's memory bandwidth "
        "(17.9 vs 25.9 GB/s, the run's right after its case)"
    )
    assert row["gate"] != "FAIL"
    both = make_trials(1, tpot_s=0.126, seed=1, ceiling_gb_per_s=25.9, ceiling_beside_gb_per_s=24.0)
    (row,) = compare_records(run, both, metrics=["tpot_s"]).rows
    assert "(17.9 vs 24 GB/s, each right after its case)" in row["machine_note"]
    steady = make_trials(1, tpot_s=0.183, seed=2, ceiling_gb_per_s=23.5, ceiling_beside_gb_per_s=23.0)
    (row,) = compare_records(steady, base, metrics=["tpot_s"], threshold=0.95).rows
    assert "machine_note" not in row  # the device held its rate: the slowdown is the software's


def test_a_cpu_of_the_same_name_with_other_matmul_extensions_is_no_baseline():
    """Two VMs called "Intel(R) Xeon(R) Processor (2 cores)", one with AMX: the rows say so, and
    the gate treats the other machine as no baseline, whether the run looks slower or not."""
    cpu = dict(backend="cpu", backend_kind="cpu", device="Intel(R) Xeon(R) Processor")
    base = make_trials(3, tpot_s=0.020, seed=1, env_device_isa="avx2 avx512f amx_bf16", **cpu)
    slow = make_trials(3, tpot_s=0.030, seed=2, env_device_isa="avx2", **cpu)
    (row,) = compare_records(slow, base, metrics=["tpot_s"], threshold=0.95).rows
    assert row["verdict"] == "machine differs" and row["speed_verdict"] == "slower" and row["gate"] == "no baseline"
    assert "a baseline made on a CPU with these matmul extensions" in row["decide"]
    assert row["cpu_note"] == (
        "another CPU under the same name: the run's reported avx2, the baseline's "
        "avx2 avx512f amx_bf16 (matmul extensions)"
    )
    same = make_trials(3, tpot_s=0.030, seed=2, env_device_isa="avx2 avx512f amx_bf16", **cpu)
    (row,) = compare_records(same, base, metrics=["tpot_s"], threshold=0.95).rows
    assert row["gate"] == "FAIL" and "cpu_note" not in row
    unknown = make_trials(3, tpot_s=0.030, seed=2, **cpu)  # records from before the field: nothing to say
    (row,) = compare_records(unknown, base, metrics=["tpot_s"], threshold=0.95).rows
    assert row["gate"] == "FAIL" and "cpu_note" not in row


def test_a_comparison_names_the_software_that_differs_and_still_gates():
    """A transformers upgrade that slows decode is what a gate is for: the verdict stands, and the
    row says what changed beside it. A fact one side did not record is not called a difference."""
    run = [
        dict(r, env_transformers="5.25.0", stack="transformers 5.25.0 eager", env_torch_threads=4)
        for r in make_trials(3, tpot_s=0.025, drift=0.015, seed=1)
    ]
    base = [
        dict(r, env_transformers="5.24.0", stack="transformers 5.24.0 eager", env_torch_threads=None)
        for r in make_trials(3, tpot_s=0.020, drift=0.015, seed=2)
    ]
    (row,) = compare_records(run, base, metrics=["decode_tok_per_s"], threshold=0.95).rows
    assert row["gate"] == "FAIL"
    assert row["software_note"] == "other software (run vs baseline): transformers 5.25.0 vs 5.24.0"
    llama = [dict(r, stack="llama.cpp llama-cpp-python 0.3.36 ggml cpu") for r in base]
    (row,) = compare_records(run, llama, metrics=["decode_tok_per_s"]).rows
    assert row["software_note"].endswith(
        "; stack transformers 5.25.0 eager vs llama.cpp llama-cpp-python 0.3.36 ggml cpu"
    )
    same = compare_records(make_trials(3, seed=3), make_trials(3, seed=4), metrics=["decode_tok_per_s"]).rows
    assert same and "software_note" not in same[0]


def test_a_software_difference_every_row_shares_is_said_once_under_the_table():
    from chipbench.publishing.report import render_comparison

    run = [
        dict(r, env_transformers="5.25.0") for r in make_trials(3, seed=5) + make_trials(3, workload="pp512", seed=6)
    ]
    base = [
        dict(r, env_transformers="5.24.0") for r in make_trials(3, seed=7) + make_trials(3, workload="pp512", seed=8)
    ]
    md = render_comparison(compare_records(run, base), "md", None, False)
    assert md.count("transformers 5.25.0 vs 5.24.0") == 1
    assert "Every row: other software (run vs baseline): transformers 5.25.0 vs 5.24.0." in md
    base[0]["env_transformers"] = base[1]["env_transformers"] = base[2]["env_transformers"] = "5.25.0"  # tg32 alike
    md = render_comparison(compare_records(run, base), "md", None, False)
    rows = [line for line in md.splitlines() if line.startswith("| ")][1:]
    assert all(("5.24.0" in line) == ("pp512" in line) for line in rows) and "Every row" not in md


def test_the_json_comparison_is_strict_json_where_a_prior_gave_infinite_degrees_of_freedom():
    import json

    from chipbench.publishing.report import render_comparison

    run, base = [make_record(tpot_s=0.021, seed=1)], [make_record(tpot_s=0.020, seed=2)]
    comparison = compare_records(run, base, metrics=["decode_tok_per_s"], threshold=0.95)
    assert comparison.rows[0]["df"] == float("inf")
    text = render_comparison(comparison, "json", 0.95, False)
    assert "Infinity" not in text and json.loads(text)["rows"][0]["df"] is None
