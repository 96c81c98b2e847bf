"""Claims as data: physics decides some with no hardware; runs decide the rest by their interval."""

import subprocess
import sys
from pathlib import Path

import pytest

from chipbench.judging.claims import check, load_claims
from chipbench.errors import UsageError
from tests.records import make_record, make_trials

ROOT = Path(__file__).resolve().parent.parent


def one(tmp_path, body: str):
    path = tmp_path / "claims.toml"
    path.write_text('[[claim]]\nid = "c"\nstatement = "s"\nsource = "src"\ndate = "2026"\n' + body)
    return load_claims(path)[0]


H20_8B = 'kind = "metric"\nmetric = "decode_tok_per_s"\nmodel = "qwen3-8b"\ndtype = "bf16"\nworkload = "tg2048"\nchip = "NVIDIA H20"\n'


def test_1000_tok_s_for_qwen3_8b_on_an_h20_is_physically_implausible(tmp_path):
    v = check(one(tmp_path, H20_8B + "value = 1000\n"), [])
    assert v.verdict == "physically implausible" and v.numbers["roofline"] == pytest.approx(262, abs=2)


def test_physics_counts_the_fewest_bytes_a_step_reads(tmp_path):
    """qwen3-8b's input embedding is untied: a decode step gathers one row of it, so the bound a
    claim is judged implausible against leaves the table out (the common MBU counts it: 16.4 GB a
    step against 15.1 at least). 250 tok/s on an H20 is past the common roofline (242) but possible."""
    v = check(one(tmp_path, H20_8B + "value = 250\n"), [])
    assert v.verdict == "inconclusive" and v.reasons[0].startswith("physically possible: 96% of the roofline 261.6")
    assert "15.29 GB per decode step at least" in v.reasons[0]


def test_81_7_tok_s_is_plausible_and_waits_for_runs(tmp_path):
    v = check(one(tmp_path, H20_8B + 'value = 81.7\ncompare = "about"\n'), [])
    assert v.verdict == "inconclusive" and v.numbers["claimed_share_of_roofline"] == pytest.approx(0.31, abs=0.01)


def test_qwen3_next_in_bf16_does_not_fit_one_h200_and_in_fp8_it_does(tmp_path):
    fits = 'kind = "fits"\nmodel = "qwen3-next-80b-a3b"\nchip = "NVIDIA H200 SXM"\n'
    bf16 = check(one(tmp_path, fits + 'dtype = "bf16"\n'), [])
    fp8 = check(one(tmp_path, fits + 'dtype = "fp8"\n'), [])
    assert bf16.verdict == "physically implausible" and bf16.numbers["weights_gb"] == pytest.approx(159.3, abs=0.1)
    assert fp8.verdict == "inconclusive" and fp8.reasons[0].startswith("fits on paper")


def test_a_sheets_gigabytes_of_device_memory_are_binary(tmp_path):
    """An H100 "80GB" showed torch 85.0e9 bytes: Qwen3-Next in fp8 with 32K of cache
    (80.15e9 bytes with its recurrent state) is past 80e9 but within 80 GiB, so it is not called physically implausible."""
    claim = one(
        tmp_path,
        'kind = "fits"\nmodel = "qwen3-next-80b-a3b"\ndtype = "fp8"\nchip = "NVIDIA H100 SXM"\ncontext = 32768\n',
    )
    v = check(claim, [])
    assert v.verdict == "inconclusive" and "against 80 GiB (85.9 GB) on one NVIDIA H100 SXM" in v.reasons[0]
    assert v.numbers["weights_gb"] + v.numbers["kv_gb"] == pytest.approx(80.15, abs=0.01)  # with its recurrent state


def test_a_latency_claim_reads_in_the_unit_it_was_written_in(tmp_path):
    claim = one(
        tmp_path, H20_8B.replace("decode_tok_per_s", "tpot_s") + 'value = 12\nunit = "ms"\ncompare = "at_most"\n'
    )
    v = check(claim, make_trials(3, workload="tg2048", device="NVIDIA H20", tpot_s=0.0125))
    said = "; ".join(v.reasons)
    assert "of the roofline 3.822 ms" in v.reasons[0] and "claimed at most 12 ms" in said
    assert "measured 12.5" in said and "] ms over 3 trials" in said


def h20_runs(tok_per_s, drift=0.01, trials=3, **kw):
    return make_trials(trials, workload="tg2048", device="NVIDIA H20", tpot_s=1 / tok_per_s, drift=drift, **kw)


def test_runs_confirm_or_refute_by_their_interval_over_trials(tmp_path):
    claim = one(tmp_path, H20_8B + 'value = 81.7\ncompare = "about"\ntolerance = 0.05\nstack = "transformers"\n')
    assert check(claim, h20_runs(82)).verdict == "confirmed"
    refuted = check(claim, h20_runs(60))
    assert refuted.verdict == "refuted" and "refuted with the claimed stack" in refuted.reasons
    assert check(claim, h20_runs(78, drift=0.2)).verdict == "inconclusive"
    other_chip = [make_record(workload="tg2048", device="NVIDIA H100 80GB HBM3", tpot_s=1 / 82)]
    assert check(claim, other_chip).verdict == "inconclusive"  # runs on another chip decide nothing


def test_an_about_claim_beaten_by_another_stack_is_not_refuted(tmp_path):
    """81.7 tok/s with SGLang is not shown wrong by a faster run of another stack; with the claimed
    stack, a figure well past the claim's is not reproduced: refuted."""
    sglang = one(tmp_path, H20_8B + 'value = 81.7\ncompare = "about"\ntolerance = 0.05\nstack = "sglang"\n')
    v = check(sglang, h20_runs(120))
    assert (
        v.verdict == "inconclusive"
        and "beat the claimed figure with another stack than the claim's (sglang)" in v.reasons[-1]
    )
    assert check(sglang, h20_runs(120, stack="sglang 0.4")).verdict == "refuted"
    no_stack = check(one(tmp_path, H20_8B + 'value = 81.7\ncompare = "about"\ntolerance = 0.05\n'), h20_runs(120))
    assert no_stack.verdict == "inconclusive" and "the claim names no stack" in no_stack.reasons[-1]
    at_most = one(tmp_path, H20_8B + 'value = 81.7\ncompare = "at_most"\n')  # a bound that any stack may break
    assert check(at_most, h20_runs(120)).verdict == "refuted"


def test_a_claim_on_no_chip_says_which_way_one_device_missed_it(tmp_path):
    claim = one(
        tmp_path, H20_8B.replace('chip = "NVIDIA H20"\n', "") + 'value = 81.7\ncompare = "about"\ntolerance = 0.05\n'
    )
    faster, slower = check(claim, h20_runs(120)), check(claim, h20_runs(40))
    assert faster.verdict == slower.verdict == "inconclusive"
    assert "a result better than claimed on NVIDIA H20" in faster.reasons[-1]
    assert "a shortfall on NVIDIA H20" in slower.reasons[-1]


def test_a_ratio_claim_whose_sides_are_one_case_is_refused(tmp_path):
    """Sides that name the same model and chip match the same runs: the ratio would be 1x by
    construction, whatever stacks they name."""
    with pytest.raises(UsageError) as e:
        one(
            tmp_path,
            'kind = "ratio"\nmetric = "decode_tok_per_s"\nvalue = 2\nmodel = "qwen3-0.6b"\n'
            'workload = "tg128"\nnumerator = { stack = "llama.cpp" }\ndenominator = { stack = "torch" }\n',
        )
    assert "field 'denominator': names the same model, chip and chip count as the numerator" in str(e.value)
    assert "`chipbench ab`" in str(e.value)


def test_a_ratio_whose_sides_ran_different_workloads_is_not_like_for_like(tmp_path):
    claim = one(
        tmp_path,
        RATIO.replace(
            'denominator = { chip = "NVIDIA H20" }', 'denominator = { chip = "NVIDIA H20", workload = "tg64" }'
        ),
    )
    near = dict(measured_mbu=0.85)
    h100 = make_trials(3, device="NVIDIA H100 80GB HBM3", tpot_s=0.010, seed=1, **near)
    h20 = make_trials(3, device="NVIDIA H20", workload="tg64", tpot_s=0.0102, seed=2, **near)
    v = check(claim, h100 + h20)
    assert v.verdict == "inconclusive" and any("workload (tg32 vs tg64)" in r for r in v.reasons)


def test_a_claim_with_no_date_shows_its_source_alone(tmp_path):
    from chipbench.publishing.claims_view import render

    path = tmp_path / "claims.toml"
    path.write_text('[[claim]]\nid = "c"\nstatement = "s"\nsource = "src"\n' + H20_8B + "value = 81.7\n")
    assert "| s (src) |" in render([check(load_claims(path)[0], [])])


def test_a_fast_but_wrong_run_never_confirms_and_refutes_with_the_claimed_stack(tmp_path):
    wrong = h20_runs(200, correct=False)
    v = check(one(tmp_path, H20_8B + 'value = 81.7\nstack = "transformers"\n'), wrong)
    assert v.verdict == "refuted" and v.reasons[-1].endswith("failed the correctness gate: fast but wrong")
    v = check(one(tmp_path, H20_8B + 'value = 81.7\nstack = "sglang"\n'), wrong)  # another stack is wrong
    assert v.verdict == "inconclusive" and "left out (transformers 5.23 eager)" in v.reasons[-1]
    assert "a run with the claimed stack would decide it" in v.reasons[-1]
    right = h20_runs(90, seed=7, stack="sglang 0.4")
    assert check(one(tmp_path, H20_8B + 'value = 81.7\nstack = "sglang"\n'), wrong + right).verdict == "confirmed"


RATIO = (
    'kind = "ratio"\nmetric = "decode_tok_per_s"\nvalue = 1.0\ncompare = "about"\ntolerance = 0.2\n'
    'model = "qwen3-8b"\nworkload = "tg32"\nnumerator = { chip = "NVIDIA H100 SXM" }\n'
    'denominator = { chip = "NVIDIA H20" }\n'
)


def test_a_ratio_claim_is_decided_by_the_interval_between_trials(tmp_path):
    claim = one(tmp_path, RATIO)
    near = dict(measured_mbu=0.85)  # both sides near their chips' limits: the ratio is the chips'
    h100 = make_trials(3, device="NVIDIA H100 80GB HBM3", tpot_s=0.010, seed=1, **near)
    assert (
        check(claim, h100 + make_trials(3, device="NVIDIA H20", tpot_s=0.0102, seed=2, **near)).verdict == "confirmed"
    )
    assert check(claim, h100 + make_trials(3, device="NVIDIA H20", tpot_s=0.02, seed=2, **near)).verdict == "refuted"


def test_a_ratio_of_runs_far_below_their_rooflines_does_not_decide_a_chip_claim(tmp_path):
    """Eager decode bound by the host's kernel launches runs an H100 and an H20 at the same speed:
    "comparable" would be confirmed by the host, so it is not, unless the claim names that stack."""
    slow = dict(tpot_s=0.031, measured_mbu=0.15)
    runs = make_trials(3, device="NVIDIA H100 80GB HBM3", seed=1, **slow) + make_trials(
        3, device="NVIDIA H20", seed=2, **slow
    )
    v = check(one(tmp_path, RATIO), runs)
    assert v.verdict == "inconclusive" and v.numbers["numerator_roofline_share"] == pytest.approx(0.15)
    assert "would be confirmed, but the runs reached 15% and 15% of their measured roofline" in v.reasons[-1]
    assert v.reasons[-1].endswith(
        "deciding it takes both sides at 80% or more of their measured roofline (the claim names no stack)"
    )
    unmeasured = [{k: x for k, x in r.items() if k != "measured_mbu"} for r in runs]
    assert "an unmeasured share" in check(one(tmp_path, RATIO), unmeasured).reasons[-1]
    with_stack = check(one(tmp_path, RATIO + 'stack = "transformers 5.23"\n'), runs)
    assert with_stack.verdict == "confirmed"  # the claim is about that stack, which ran both sides


def test_a_ratio_whose_sides_ran_different_stacks_is_not_like_for_like(tmp_path):
    claim = one(tmp_path, RATIO)
    h100 = make_trials(3, device="NVIDIA H100 80GB HBM3", tpot_s=0.010, seed=1, stack="transformers 5.23 compiled")
    h20 = make_trials(3, device="NVIDIA H20", tpot_s=0.02, seed=2)  # eager
    v = check(claim, h100 + h20)
    assert v.verdict == "inconclusive" and any("would be refuted" in r and "stack" in r for r in v.reasons)


def test_a_typo_inside_numerator_is_refused(tmp_path):
    with pytest.raises(UsageError) as e:
        one(tmp_path, RATIO.replace("numerator = { chip =", "numerator = { chp ="))
    assert "claim 'c': field 'numerator.chp': unknown field" in str(e.value) and "chip" in str(e.value)


def test_a_duplicated_file_does_not_change_a_verdict(tmp_path):
    from chipbench.judging.cases import Account
    from chipbench.judging.claims import check_all

    claim = one(tmp_path, H20_8B + 'value = 81.7\ncompare = "about"\ntolerance = 0.05\n')
    runs = h20_runs(80, trials=1)  # one trial: between-run variance unknown, so inconclusive...
    (alone,) = check_all([claim], runs)
    acc = Account()
    (twice,) = check_all([claim], runs + [dict(r) for r in runs], acc)  # ...and a second copy is not a second trial
    assert alone.verdict == twice.verdict == "inconclusive" and alone.numbers == twice.numbers
    assert (acc.inputs, acc.duplicates, acc.used) == (2, 1, 1)


def test_records_that_no_claim_is_about_are_counted_unmatched_not_used(tmp_path):
    from chipbench.judging.cases import Account
    from chipbench.judging.claims import check_all

    claim = one(tmp_path, H20_8B + 'value = 81.7\ncompare = "about"\n')
    other = [dict(r, record_id=f"other-{i}", model="qwen3-0.6b") for i, r in enumerate(h20_runs(80, trials=2))]
    acc = Account()
    check_all([claim], h20_runs(80, trials=3) + other, acc)
    assert (acc.inputs, acc.used, acc.unmatched, acc.failed) == (5, 3, 2, 0)
    assert acc.line("records") == "records: 5 record(s): 3 used, 2 unmatched"


H100_150 = (
    'kind = "metric"\nmetric = "decode_tok_per_s"\nvalue = 150\nmodel = "qwen3-8b"\ndtype = "bf16"\n'
    'workload = "tg128"\nchip = "NVIDIA H100 SXM"\nstack = "vllm"\n'
)


def test_an_eager_run_at_15_percent_of_the_roofline_does_not_refute_a_claim_at_68_percent(tmp_path):
    claim = one(tmp_path, H100_150)
    eager = make_trials(
        3, model="qwen3-8b", workload="tg128", device="NVIDIA H100 80GB HBM3", tpot_s=1 / 32, measured_mbu=0.15
    )
    v = check(claim, eager)
    assert v.numbers["claimed_share_of_roofline"] == pytest.approx(0.68, abs=0.01)
    assert v.verdict == "not reproduced with transformers 5.23 eager (15% of the measured roofline)"
    assert v.category == "inconclusive" and "a run with the claimed stack (vllm)" in v.reasons[-1]


def test_a_shortfall_refutes_with_the_claimed_stack_or_near_the_roofline(tmp_path):
    claim = one(tmp_path, H100_150)
    common = dict(model="qwen3-8b", workload="tg128", device="NVIDIA H100 80GB HBM3", tpot_s=1 / 100)
    assert check(claim, make_trials(3, **common, stack="vllm 0.9.1 compiled")).verdict == "refuted"
    assert check(claim, make_trials(3, **common, measured_mbu=0.85)).verdict == "refuted"


def test_one_trial_decides_a_claim_only_beyond_the_unreplicated_allowance(tmp_path):
    claim = one(tmp_path, H20_8B + 'value = 81.7\ncompare = "at_least"\nstack = "transformers"\n')
    near = check(claim, h20_runs(75, trials=1))  # 8% short: inside x1.25
    far = check(claim, h20_runs(40, trials=1))
    assert near.verdict == "inconclusive" and "between-run variance unknown" in near.reasons[-1]
    assert far.verdict == "refuted"


def test_the_10x_decode_claim_exceeds_the_byte_ratio_at_32k(tmp_path):
    (c,) = [c for c in load_claims(ROOT / "results" / "claims.toml") if c.id == "qwen3-next-10x-decode-32k"]
    v = check(c, [])
    assert v.numbers["roofline_ratio"] == pytest.approx(9.06, abs=0.05) and "holds only if" in v.reasons[0]
    # and as the file states it (bf16, one H200), the 80B model's 159 GB of weights cannot sit in 141 GiB
    assert v.verdict == "physically implausible" and v.reasons[1].startswith("numerator: does not fit")


@pytest.mark.parametrize(
    "body,field,message",
    [
        (
            'kind = "metric"\nmetric = "decode_tok_per_s"\nvalue = 5\nmodel = "qwen9"\nworkload = "tg8"\n',
            "model",
            "unknown model 'qwen9'; valid: qwen2.5-0.5b",
        ),
        (
            H20_8B.replace("NVIDIA H20", "H30") + "value = 5\n",
            "chip",
            "no chip 'H30' in the spec table (a chip it lacks is a new row of results/chips.toml",
        ),
        (H20_8B.replace("decode_tok_per_s", "speed") + "value = 5\n", "metric", "'speed'; valid: ttft_s"),
        (
            H20_8B + 'value = 5\nunit = "GB/s"\n',
            "unit",
            "Input should be 'tokens/s', 's', 'ms', 'x', '$/M tokens' or 'tokens/J' (got 'GB/s')",
        ),
        (H20_8B + 'value = 5\nunit = "x"\n', "unit", "'x' does not fit decode_tok_per_s"),
        ('kind = "fits"\nmodel = "qwen3-8b"\nchip = "NVIDIA H20"\nmetric = "ttft_s"\n', "metric", "a fits claim names"),
        (H20_8B + "value = -3\n", "value", "Input should be greater than 0 (got -3)"),
        (H20_8B + 'value = 5\ncompare = "roughly"\n', "compare", "Input should be 'at_least', 'at_most' or 'about'"),
        (H20_8B + "value = 5\nspeedup = 2\n", "speedup", "unknown field; valid fields here:"),
        (H20_8B + "value = 5\nbatch = 1.0\n", "batch", "Input should be a valid integer"),
        (H20_8B + "value = nan\n", "value", "Input should be a finite number"),
    ],
)
def test_bad_claims_name_the_file_the_claim_and_the_field(tmp_path, body, field, message):
    with pytest.raises(UsageError) as e:
        one(tmp_path, body)
    assert f"claims.toml: claim 'c': field '{field}': " in str(e.value) and message in str(e.value)


def test_toml_syntax_errors_name_the_file(tmp_path):
    path = tmp_path / "claims.toml"
    path.write_text("[[claim]\n")
    with pytest.raises(UsageError, match="claims.toml: not valid TOML"):
        load_claims(path)


def test_the_shipped_claims_file_runs_through_the_cli():
    res = subprocess.run(
        [sys.executable, "-m", "chipbench.cli", "claims", "results/claims.toml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "| qwen3-next-single-h200-bf16 |" in res.stdout and "**physically implausible**" in res.stdout
    assert res.stdout.count("**inconclusive**") >= 8


def test_a_bad_claims_file_exits_2_with_one_line(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[[claim]]\nid = "x"\nstatement = "s"\nsource = "s"\nkind = "vibes"\n')
    res = subprocess.run(
        [sys.executable, "-m", "chipbench.cli", "claims", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert (
        "claim 'x': field 'kind': Input should be 'metric', 'ratio', 'fits', 'cost' or 'energy' (got 'vibes')"
        in res.stderr
    )


FITS_8B_H20 = 'kind = "fits"\nmodel = "qwen3-8b"\ndtype = "bf16"\nchip = "NVIDIA H20"\ncontext = 4096\n'


def h20(workload, batch=1, **kw):
    return make_record(workload=workload, device="NVIDIA H20", batch=batch, **kw)


OOM = dict(status="failed", error="OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB")


@pytest.mark.parametrize(
    "runs, verdict, reason",
    [
        ([h20("tg128@d4096")], "confirmed", "the longest 4224 tokens at batch 1 (tg128@d4096)"),
        ([h20("tg128")], "inconclusive", "longest holding 129 tokens per sequence: fewer than the claimed 4096"),
        ([h20("pp512", **OOM)], "refuted", "pp512 (513 tokens): OutOfMemoryError: CUDA out of memory"),
        (
            [h20("pp32768", **OOM)],
            "inconclusive",
            "each holding more than the claimed 4096 tokens or at a batch above 1",
        ),
        ([h20("pp512", batch=64, **OOM)], "inconclusive", "or at a batch above 1"),
        (
            [h20("pp512", status="failed", error="NotImplementedError: aten::foo")],
            "inconclusive",
            "a reason other than memory, which decides nothing: NotImplementedError: aten::foo",
        ),
        (
            [h20("tg128@d4096", parallel="tp2", env_chips=2)],
            "inconclusive",
            "1 run(s) on another number of NVIDIA H20 than 1",
        ),
        ([h20("tg128@d4096", correct=False)], "inconclusive", "failed the correctness gate and confirm nothing"),
        ([], "inconclusive", "no runs of qwen3-8b in bf16 on NVIDIA H20"),
    ],
)
def test_runs_decide_a_fits_claim_by_memory_alone(tmp_path, runs, verdict, reason):
    v = check(one(tmp_path, FITS_8B_H20), runs)
    assert v.verdict == verdict and reason in "; ".join(v.reasons), v.reasons


def test_a_claim_on_two_chips_sums_their_peaks_and_takes_only_runs_split_over_two(tmp_path):
    one_chip = one(tmp_path, H20_8B + 'value = 300\nstack = "transformers"\n')
    two_chips = one(tmp_path, H20_8B + 'value = 300\nstack = "transformers"\nchips = 2\n')
    assert check(one_chip, []).verdict == "physically implausible"  # 300 tok/s is past one H20's 262
    assert check(two_chips, []).numbers["roofline"] == pytest.approx(2 * 262, abs=4)
    split = h20_runs(320, parallel="tp2", env_chips=2)
    assert check(two_chips, split).verdict == "confirmed"
    assert check(one(tmp_path, H20_8B + "value = 200\n"), split).reasons[-1].startswith("no matching runs")
    fits_two = check(one(tmp_path, FITS_8B_H20 + "chips = 2\n"), [h20("tg128@d4096", parallel="tp2", env_chips=2)])
    assert fits_two.verdict == "confirmed" and fits_two.numbers["memory_gib"] == pytest.approx(192)


def test_a_claim_naming_no_chip_never_pools_devices_and_a_shortfall_does_not_refute_it(tmp_path):
    no_chip = H20_8B.replace('chip = "NVIDIA H20"\n', "")
    cpu = make_trials(3, workload="tg2048", device="Intel Xeon", tpot_s=1 / 5, seed=1)
    gpu = make_trials(3, workload="tg2048", device="NVIDIA H100 80GB HBM3", tpot_s=1 / 90, seed=2)
    fast = check(one(tmp_path, no_chip + "value = 80\n"), cpu + gpu)
    assert fast.verdict == "confirmed" and "judged on transformers 5.23 eager on NVIDIA H100" in fast.reasons[-2]
    slow = check(one(tmp_path, no_chip + "value = 80\n"), cpu)
    assert slow.verdict == "inconclusive" and "the claim names no chip" in slow.reasons[-1]
    models = (
        'kind = "ratio"\nmetric = "decode_tok_per_s"\nvalue = 2\nworkload = "tg32"\nstack = "transformers"\n'
        'numerator = { model = "qwen3-0.6b" }\ndenominator = { model = "qwen3-8b" }\n'
    )
    small = make_trials(3, model="qwen3-0.6b", device="Intel Xeon", tpot_s=0.01, seed=3)
    big_cpu = make_trials(3, device="Intel Xeon", tpot_s=0.1, seed=4)
    big_gpu = make_trials(3, device="NVIDIA H100 80GB HBM3", tpot_s=0.005, seed=5)
    v = check(one(tmp_path, models), small + big_cpu + big_gpu)  # 10x on the Xeon; the H100's runs are not pooled
    assert v.verdict == "confirmed" and v.numbers["measured_ratio"] == pytest.approx(10, rel=0.05)
    with pytest.raises(UsageError, match="field 'denominator.chip': is missing while the other side names one"):
        one(tmp_path, models.replace('model = "qwen3-0.6b" }', 'model = "qwen3-0.6b", chip = "NVIDIA H20" }'))


def test_a_wrong_numerator_with_the_claimed_stack_refutes_a_ratio_and_a_wrong_denominator_never_does(tmp_path):
    claim = one(tmp_path, RATIO + 'stack = "transformers"\n')
    near = dict(measured_mbu=0.85)
    h100 = make_trials(3, device="NVIDIA H100 80GB HBM3", tpot_s=0.010, seed=1, **near)
    h20 = make_trials(3, device="NVIDIA H20", tpot_s=0.0102, seed=2, **near)
    assert check(claim, [dict(r, correct=False) for r in h100] + h20).verdict == "refuted"
    v = check(claim, h100 + [dict(r, correct=False) for r in h20])
    assert v.verdict == "inconclusive" and "of the denominator with the claimed stack" in v.reasons[-2]
    assert v.reasons[-1] == "no correct run of the denominator: no valid baseline, so inconclusive"
    one_bad = check(claim, [dict(h100[0], correct=False)] + h100[1:] + h20)  # left out: two good trials decide
    assert one_bad.verdict == "confirmed" and one_bad.numbers["numerator_trials"] == 2
    assert any("1 run(s) of the numerator failed the correctness gate and are left out" in r for r in one_bad.reasons)


def test_trials_on_a_loaded_host_refute_nothing_and_decide_no_ratio(tmp_path):
    claim = one(tmp_path, H20_8B + 'value = 81.7\nstack = "transformers"\n')
    slow = h20_runs(60)
    assert check(claim, slow).verdict == "refuted"
    slow[1]["host_loaded"] = True
    v = check(claim, slow)
    assert v.verdict == "inconclusive" and "1 of 3 trial(s) ran on a loaded host" in v.reasons[-1]
    assert check(claim, [dict(r, host_loaded=True) for r in h20_runs(90)]).verdict == "confirmed"  # load only slows
    about = one(tmp_path, H20_8B + 'value = 81.7\ncompare = "about"\ntolerance = 0.05\nstack = "transformers"\n')
    assert check(about, h20_runs(82)).verdict == "confirmed"
    assert check(about, [dict(r, host_loaded=True) for r in h20_runs(82)]).verdict == "inconclusive"
    near = dict(measured_mbu=0.85)
    h100 = make_trials(3, device="NVIDIA H100 80GB HBM3", tpot_s=0.010, seed=1, **near)
    h20 = make_trials(3, device="NVIDIA H20", tpot_s=0.0102, seed=2, host_loaded=True, **near)
    v = check(one(tmp_path, RATIO), h100 + h20)
    assert v.verdict == "inconclusive" and "0 of 3 numerator and 3 of 3 denominator" in v.reasons[-1]


def test_host_bound_trials_refute_no_chip_and_decide_no_ratio(tmp_path):
    """A decode whose device waited for the host times the host: it may show a chip beats a claim,
    never that it falls short, and decides no ratio, even with the claimed stack near the roofline."""
    bound = dict(host_bound=True, host_busy_frac=0.99, host_step_s=0.0166)
    claim = one(tmp_path, H20_8B + 'value = 81.7\nstack = "transformers"\n')
    slow = h20_runs(60)
    assert check(claim, slow).verdict == "refuted"
    slow[2].update(bound)
    v = check(claim, slow)
    assert v.verdict == "inconclusive" and "1 of 3 trial(s) were host-bound" in v.reasons[-1]
    assert check(claim, [dict(r, **bound) for r in h20_runs(90)]).verdict == "confirmed"  # the host only slows
    assert check(claim, [dict(r, host_bound=False) for r in h20_runs(60)]).verdict == "refuted"
    about = one(tmp_path, H20_8B + 'value = 81.7\ncompare = "about"\ntolerance = 0.05\nstack = "transformers"\n')
    assert check(about, h20_runs(82)).verdict == "confirmed"
    assert check(about, [dict(r, **bound) for r in h20_runs(82)]).verdict == "inconclusive"
    near = dict(measured_mbu=0.85)
    h100 = make_trials(3, device="NVIDIA H100 80GB HBM3", tpot_s=0.010, seed=1, **near)
    h20 = make_trials(3, device="NVIDIA H20", tpot_s=0.0102, seed=2, **near)
    ratio = one(tmp_path, RATIO + 'stack = "transformers"\n')
    assert check(ratio, h100 + h20).verdict == "confirmed"
    v = check(ratio, [dict(r, **bound) for r in h100] + h20)
    assert (
        v.verdict == "inconclusive"
        and "3 of 3 numerator and 0 of 3 denominator trial(s) were host-bound" in v.reasons[-1]
    )


def test_a_prefill_claim_ignores_its_runs_decode_host_bound(tmp_path):
    claim = one(
        tmp_path,
        'kind = "metric"\nmodel = "qwen3-8b"\nworkload = "pp512"\nchip = "NVIDIA H20"\nmetric = "prefill_tok_per_s"\n'
        'value = 3000\nstack = "transformers"\n',
    )
    runs = make_trials(3, workload="pp512", device="NVIDIA H20", ttft_s=0.256, seed=4, host_bound=True)
    v = check(claim, runs)  # 2000 tokens/s against 3000 claimed: the decode's host says nothing of a prefill
    assert v.verdict == "refuted" and not any("host-bound" in r for r in v.reasons), v.reasons


def test_throttled_rounds_count_and_are_said(tmp_path):
    claim = one(tmp_path, H20_8B + 'value = 81.7\nstack = "transformers"\n')
    runs = h20_runs(60)
    runs[0].update(throttled_rounds=2, throttle_reasons="sw power cap")
    v = check(claim, runs)
    assert v.verdict == "refuted"
    assert "2 timed round(s) ran while the device reported throttling (sw power cap): counted" in "; ".join(v.reasons)


def test_a_case_whose_runs_all_failed_says_why(tmp_path):
    claim = one(tmp_path, H20_8B + "value = 81.7\n")
    failed = [make_record(workload="tg2048", device="NVIDIA H20", status="failed", error="RuntimeError: boom\nmore")]
    v = check(claim, failed)
    assert (
        v.verdict == "inconclusive" and v.reasons[-1] == "no completed run of this case: 1 failed (RuntimeError: boom)"
    )


def test_a_ratio_of_two_chips_against_one_compares_their_layouts_by_design(tmp_path):
    claim = one(
        tmp_path,
        'kind = "ratio"\nmetric = "decode_tok_per_s"\nvalue = 1.0\ncompare = "about"\n'
        'tolerance = 0.2\nmodel = "qwen3-8b"\nworkload = "tg32"\nstack = "transformers"\n'
        'numerator = { chip = "NVIDIA H20", chips = 2 }\ndenominator = { chip = "NVIDIA H100 SXM" }\n',
    )
    near = dict(measured_mbu=0.85)
    two_h20 = make_trials(
        3,
        device="NVIDIA H20",
        tpot_s=0.010,
        seed=1,
        parallel="tp2",
        env_chips=2,
        stack="transformers 5.23 eager tp2",
        **near,
    )
    h100 = make_trials(3, device="NVIDIA H100 80GB HBM3", tpot_s=0.0102, seed=2, **near)
    v = check(claim, two_h20 + h100)
    assert v.verdict == "confirmed", v.reasons
    assert not any("differ" in r for r in v.reasons)


def test_a_metric_claim_checks_capacity_and_the_models_context_before_speed(tmp_path):
    """Bandwidth alone calls 10 tok/s of qwen3-32b on an RTX 4090 possible; 65 GB of weights do not
    sit in 24 GB. A decode past the model's maximum context cannot run on any chip."""
    rtx = check(
        one(
            tmp_path,
            'kind = "metric"\nmetric = "decode_tok_per_s"\nmodel = "qwen3-32b"\ndtype = "bf16"\n'
            'workload = "tg128"\nchip = "NVIDIA GeForce RTX 4090"\nvalue = 10\n',
        ),
        [],
    )
    assert rtx.verdict == "physically implausible" and rtx.reasons[0].startswith(
        "does not fit: qwen3-32b in bf16 needs 65"
    )
    two = check(
        one(
            tmp_path,
            'kind = "metric"\nmetric = "decode_tok_per_s"\nmodel = "qwen3-32b"\ndtype = "bf16"\n'
            'workload = "tg128"\nchip = "NVIDIA GeForce RTX 4090"\nchips = 4\nvalue = 10\n',
        ),
        [],
    )
    assert two.verdict == "inconclusive"  # four of them hold it
    batch = check(one(tmp_path, H20_8B.replace("tg2048", "tg128@d32000") + "batch = 64\nvalue = 10\n"), [])
    assert batch.verdict == "physically implausible" and "KV cache (64 x 32128 tokens)" in batch.reasons[0]
    long = check(one(tmp_path, H20_8B.replace("tg2048", "tg128@d983040") + "value = 1\n"), [])
    assert long.verdict == "physically implausible" and "qwen3-8b's maximum is 40960" in long.reasons[0]


@pytest.mark.parametrize(
    "claimed,run,matches",
    [
        ("sglang 0.4.1", "sglang 0.4.10", False),
        ("sglang 0.4.1", "sglang 0.4.1 eager", True),
        ("vllm 0.6", "vllm 0.6.3 compiled", True),
        ("vllm 0.6.3", "vllm 0.6.30", False),
        ("vllm 0.6", "vllm 0.60.1", False),
        ("vllm 0.11rc1", "vllm 0.11.0", False),
        ("vllm 0.11", "vllm 0.11.0rc1", True),
        ("transformers", "transformers 5.23 eager", True),
        ("sglang", "vllm 0.6.3", False),
    ],
)
def test_stack_versions_compare_as_versions(claimed, run, matches):
    from chipbench.judging.claim_runs import stack_matches

    assert stack_matches(claimed, run) is matches


def test_a_record_stands_for_a_chip_by_its_whole_name_or_alias_and_a_fitting_kind(tmp_path):
    claim = one(tmp_path, H20_8B + "value = 81.7\n")
    fast = dict(tpot_s=1 / 90, workload="tg2048", model="qwen3-8b")
    cpu = make_trials(3, device="Intel Xeon H20 Edition", backend="cpu", kind_of_device="cpu", seed=1, **fast)
    h20_3e = make_trials(3, device="NVIDIA H20-3e", seed=2, **fast)  # another sheet: 141 GB HBM3e
    cpu_named = make_trials(3, device="NVIDIA H20", backend="cpu", kind_of_device="cpu", seed=3, **fast)
    for runs in (cpu, h20_3e, cpu_named):
        v = check(claim, runs)
        assert v.verdict == "inconclusive" and "no matching runs" in v.reasons[-1], v.reasons
    assert check(claim, make_trials(3, device="nvidia  h20", seed=4, **fast)).verdict == "confirmed"
    h100 = one(tmp_path, H20_8B.replace('"NVIDIA H20"', '"NVIDIA H100 SXM"') + "value = 81.7\n")
    assert check(h100, make_trials(3, device="NVIDIA H100 80GB HBM3", seed=5, **fast)).verdict == "confirmed"  # alias


def test_an_about_claim_is_confirmed_only_with_the_claimed_stack(tmp_path):
    about = one(tmp_path, H20_8B + 'value = 90\ncompare = "about"\ntolerance = 0.1\nstack = "vllm"\n')
    v = check(about, h20_runs(90))  # transformers runs at the claimed figure
    assert v.verdict == "inconclusive" and "plausible on this chip, not confirmed" in v.reasons[-1]
    assert check(about, h20_runs(90, stack="vllm 0.9.1 compiled")).verdict == "confirmed"
