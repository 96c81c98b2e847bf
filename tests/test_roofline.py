"""The roofline: physical limits beside every number, and figures above them flagged."""

import os
import time

import pytest

from chipbench.backends.ceilings import Ceilings
from chipbench.judging.roofline import check_spec
from chipbench.judging.chips import find_chip
from chipbench.judging.roofline import decode_ceiling_tok_per_s, roofline_fields
from chipbench.judging.trial import add_roofline
from chipbench.publishing import tables
from tests.records import make_record


def test_qwen3_8b_batch1_decode_on_an_h20_is_bound_near_244_tokens_per_s():
    # 16.38 GB of bf16 weights read per token, 4.0 TB/s: at most ~244 tokens/s
    assert decode_ceiling_tok_per_s("qwen3-8b", "bf16", 1, 1, 4000) == pytest.approx(244, abs=1)


def test_the_published_sglang_figure_is_a_third_of_the_h20_roofline():
    # chips.md: Qwen3-8B on H20, SGLang, 81.7 tok/s, 2048 generated tokens: 33% of the roofline
    rec = make_record(workload="tg2048", tpot_s=1 / 81.7, spread=0.001, rounds=2, device="NVIDIA H20")
    f = roofline_fields(rec, find_chip("NVIDIA H20"))
    assert f["spec_mbu"] == pytest.approx(0.34, abs=0.01) and f["roofline_flag"] is None


def test_a_run_that_beats_its_roofline_is_flagged_as_a_measurement_error():
    rec = make_record(tpot_s=0.001, device="NVIDIA H100 80GB HBM3")  # 16 TB/s from a 3.35 TB/s chip
    add_roofline(rec)
    assert rec["chip"] == "NVIDIA H100 SXM" and rec["spec_mbu"] > 1
    assert rec["roofline_flag"].startswith("MEASUREMENT ERROR: spec_mbu")
    assert "MEASUREMENT ERROR" in tables.to_markdown(tables.build([rec]))


def test_a_plausible_run_shows_its_share_against_spec_and_measured_ceilings():
    rec = make_record(tpot_s=0.031, device="NVIDIA H100 80GB HBM3")
    add_roofline(rec, Ceilings("cuda", "bf16", bandwidth_gb_per_s=3000, tflops=790, copy_bytes=1, matmul_n=8192))
    assert rec["spec_mbu"] == pytest.approx(16.4e9 / 0.031 / 3.35e12, rel=0.02)
    assert rec["measured_mbu"] > rec["spec_mbu"] and rec["roofline_flag"] is None
    assert rec["spec_best_tpot_s"] == pytest.approx(16.4e9 / 3.35e12, rel=0.02)
    assert tables.roofline_text(rec) == "MBU 18% measured / 16% spec"


def test_an_unknown_chip_falls_back_to_measured_ceilings():
    rec = make_record(tpot_s=0.05, device="Brand-new NPU")
    add_roofline(rec, Ceilings("npu", "bf16", 2000, 400, 1, 4096))
    assert rec["chip"] is None and "spec_mbu" not in rec and rec["measured_mbu"] > 0


@pytest.mark.parametrize(
    "bandwidth,expect",
    [(3000, None), (5000, "beats the NVIDIA H100 SXM sheet"), (1000, "under half the NVIDIA H100 SXM sheet")],
)
def test_measured_ceilings_check_the_spec_sheet(bandwidth, expect):
    note = check_spec(Ceilings("cuda", "bf16", bandwidth, 790, 1, 8192), find_chip("NVIDIA H100 SXM"))
    assert note is None if expect is None else expect in note


def test_a_spec_check_gives_a_small_measured_figure_its_digits():
    """A CPU named as an H100 measured 0.41 TFLOP/s: the note says 0.41, not 0."""
    note = check_spec(Ceilings("cpu", "bf16", 15.2, 0.41, 1, 8192), find_chip("NVIDIA H100 SXM"))
    assert "measured memory bandwidth 15 GB/s" in note and "measured bf16 matmul 0.41 TFLOP/s" in note


def test_a_split_case_is_judged_against_every_chip_it_ran_on():
    """tp2 over two H100s: the whole model's bytes per step move through two chips' HBM at once, so
    the spec roofline is twice one sheet (on one sheet a 16 TB/s run would read as 120% MBU)."""
    one = make_record(tpot_s=0.004, device="NVIDIA H100 80GB HBM3")
    two = make_record(tpot_s=0.004, device="NVIDIA H100 80GB HBM3", env_chips=2)
    add_roofline(one)
    add_roofline(two)
    assert one["spec_mbu"] > 1 and one["roofline_flag"].startswith("MEASUREMENT ERROR")
    assert two["spec_mbu"] == pytest.approx(one["spec_mbu"] / 2) and two["roofline_flag"] is None
    assert two["spec_best_tpot_s"] == pytest.approx(one["spec_best_tpot_s"] / 2)


def test_an_engines_own_split_is_judged_against_its_tensor_parallel_chips(monkeypatch):
    """vLLM's tensor_parallel_size=2 on two H100s: two chips read at once (pipeline stages take
    turns, so tp2pp2 is two); the one GPU's ceilings the run measured stand for both."""
    from chipbench.backends.distributed import chips

    for name in ("WORLD_SIZE", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert (chips("cuda", "tp2"), chips("cuda", "tp2pp2"), chips("cuda", "none"), chips("cpu", "tp2")) == (2, 2, 1, 1)
    one_gpu = Ceilings("cuda", "bf16", 3000, 790, 1, 8192)
    alone = add_roofline(make_record(tpot_s=0.004, device="NVIDIA H100 80GB HBM3"), one_gpu)
    split = add_roofline(
        make_record(tpot_s=0.004, device="NVIDIA H100 80GB HBM3", parallel="tp2", env_chips=2), one_gpu
    )
    assert alone["measured_mbu"] > 1 and split["measured_mbu"] == pytest.approx(alone["measured_mbu"] / 2)
    assert split["ceiling_gb_per_s"] == 6000 and split["roofline_flag"] is None
    assert split["spec_check"] is None  # one GPU's measured 3000 GB/s is checked against one sheet


def test_summed_ceilings_are_checked_against_as_many_sheets_as_chips():
    h100 = find_chip("NVIDIA H100 SXM")
    parts = [
        Ceilings("cuda", "bf16", 3000, 790, 1, 8192, 2900, 780, 1.0, 9),
        Ceilings("cuda", "bf16", 3100, 800, 1, 8192, 3000, 790, 1.2, 8),
    ]
    both = Ceilings.summed(parts)
    assert (both.bandwidth_gb_per_s, both.tflops, both.bandwidth_gb_per_s_median) == (6100, 1590, 5900)
    assert (both.ranks, both.rounds, both.window_s) == (2, 8, 1.2)
    assert "beats the NVIDIA H100 SXM sheet" in check_spec(both, h100)  # two chips' worth on one sheet
    assert check_spec(both, h100, chips=2) is None
    assert "under half 2 x the NVIDIA H100 SXM sheet's 3350" in check_spec(parts[0], h100, chips=2)


def test_cpu_ceilings_are_measured_in_the_benchmark_dtype(cpu):
    c = cpu.ceilings("fp32")
    assert c.bandwidth_gb_per_s > 0.5 and c.tflops > 0.001 and c.dtype == "fp32"


def test_a_real_run_records_its_roofline(cpu):
    from chipbench.judging.trial import run_case
    from chipbench.measuring.runner import Case
    from chipbench.measuring.workload import parse_workload

    rec = run_case(
        cpu, Case("cpu", "tiny-qwen3", "fp32", parse_workload("pp32+tg8"), rounds=2), ceilings=cpu.ceilings("fp32")
    )
    assert rec["status"] == "ok" and 0 < rec["measured_mbu"] and rec["chip"] is None
    assert rec["decode_bytes_per_step"] > rec["active_weight_bytes"]  # weights plus the KV cache


def test_user_given_peaks_replace_the_spec_row():
    from chipbench.judging.chips import user_chip

    rec = make_record(tpot_s=0.05, device="Brand-new NPU")
    add_roofline(rec, chip=user_chip(1000, 200))
    assert rec["chip"] == "user-given peaks" and rec["chip_confidence"] == "user"
    assert rec["spec_mbu"] == pytest.approx(rec["decode_bytes_per_step"] / 0.05 / 1e12, rel=0.02)


def test_a_named_chip_without_a_row_is_said_and_falls_back_to_measured_ceilings():
    from chipbench.judging.chips import resolve_chip

    said = []
    chip = resolve_chip("TPU v9", None, None, warn=said.append)
    rec = make_record(tpot_s=0.05, device="TPU v9")
    add_roofline(rec, Ceilings("tpu", "bf16", 1000, 100, 1, 4096), chip)
    assert "no chip named 'TPU v9'" in said[0] and "measured ceilings only" in said[0]
    assert "spec_mbu" not in rec and rec["measured_mbu"] > 0


def test_the_ceilings_command_reports_the_measured_roofline():
    import subprocess
    import sys
    from pathlib import Path

    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "chipbench.cli",
            "ceilings",
            "--backend",
            "cpu",
            "--dtype",
            "fp32",
            "--ceiling-window",
            "0.5",
        ],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        timeout=120,
    )
    assert res.returncode == 0 and "memory" in res.stdout and "GB/s (best of copy and read; median round" in res.stdout
    from chipbench.backends.cpu import create

    assert res.stdout.startswith(f"cpu ({create().info().device_name}): memory")  # the device's name, not its kind
    rounds = int(res.stdout.split("best of ")[-1].split(" rounds")[0])
    seconds = float(res.stdout.split(" rounds in ")[1].split(" s")[0])
    assert rounds >= 5 and seconds >= 0.5  # rounds for the window's half second, and at least five


def test_ceilings_are_the_best_of_rounds_over_a_window_with_the_median_kept():
    from chipbench.backends.ceilings import measure

    quick = measure("cpu", "fp32", lambda: None, copy_mib=8, matmul_n=64, repeats=3, window=0)
    assert quick.rounds == 3 and quick.window_s < 0.5  # no window: the minimum rounds only
    slow = measure("cpu", "fp32", lambda: None, copy_mib=8, matmul_n=64, repeats=3, window=0.3)
    assert slow.window_s >= 0.3 and slow.rounds > 3
    assert slow.bandwidth_gb_per_s >= slow.bandwidth_gb_per_s_median > 0 and slow.tflops >= slow.tflops_median > 0


def test_the_matmul_grows_only_while_its_call_stays_short():
    """A dtype without a fast path (a row-major bf16 product on an AVX2-only CPU: 58 s at 2048) stops at a
    size whose call is short; a fast one reaches the largest size."""
    import torch

    from chipbench.backends.ceilings import MATMUL_SMALLEST, matmul_size, measure

    assert matmul_size("cpu", torch.float32, lambda: None, 1024, call_s=1e-9) == MATMUL_SMALLEST
    assert matmul_size("cpu", torch.float32, lambda: None, 1024, call_s=1e9) == 1024
    assert matmul_size("cpu", torch.float32, lambda: None, 128) == 128  # never past the largest
    picked = measure("cpu", "fp32", lambda: None, copy_mib=8, repeats=1, window=0)
    assert picked.matmul_n in (256, 512, 1024, 2048)


@pytest.mark.parametrize("slowed, winner", [("bf16", "fp32"), ("fp32", "bf16")])
def test_a_16_bit_ceiling_is_the_better_of_its_own_product_and_fp32s(monkeypatch, slowed, winner):
    """A bf16 product can be computed exactly as an fp32 one, so on a chip without a native bf16
    product (an AVX2 CPU: 21 GFLOP/s against fp32's 156-183) the fp32 product is its bf16 ceiling; where
    bf16 runs natively, bf16's own product sets it. Either way the record says which, beside the
    dtype's own rate, and a roofline judged against it keeps both."""
    import time

    import torch

    from chipbench.judging.roofline import roofline_fields
    from chipbench.backends import ceilings

    fast = ceilings.linear

    def linear(a, b):  # the slowed dtype's product pays 20 ms a call
        if a.dtype == {"bf16": torch.bfloat16, "fp32": torch.float32}[slowed]:
            time.sleep(0.02)
        return fast(a, b)

    monkeypatch.setattr(ceilings, "linear", linear)
    c = ceilings.measure("cpu", "bf16", lambda: None, copy_mib=8, matmul_n=64, repeats=3, window=0)
    assert c.matmul_dtype == winner and c.dtype == "bf16"
    assert c.tflops >= c.tflops_median > 0
    if winner == "fp32":
        assert c.tflops > 5 * c.tflops_in_dtype  # 2 * 64^3 FLOP in 20 ms: about 26 MFLOP/s for bf16's own
    else:
        assert c.tflops == c.tflops_in_dtype
    assert (
        ceilings.measure("cpu", "fp32", lambda: None, copy_mib=8, matmul_n=64, repeats=1, window=0).matmul_dtype
        == "fp32"
    )  # nothing wider to try
    rec = {
        "model": "qwen3-0.6b",
        "dtype": "bf16",
        "workload": "tg128",
        "batch": 1,
        "status": "ok",
        "prompt_tokens": 512,
        "gen_tokens": 128,
        "tpot_s_median": 0.05,
        "ttft_s_median": 0.5,
    }
    out = roofline_fields(rec, None, c)
    assert out["ceiling_matmul_dtype"] == winner and out["ceiling_tflops_in_dtype"] == c.tflops_in_dtype
    assert out["ceiling_tflops"] == c.tflops
    quantised = roofline_fields({**rec, "dtype": "q8_0"}, None, c)  # an engine's type, its ceiling measured as bf16
    assert quantised["ceiling_matmul_dtype"] == winner and quantised["ceiling_tflops_in_dtype"] is None


def test_the_window_comes_from_the_option_else_the_environment_else_the_device(monkeypatch):
    from chipbench.errors import UsageError
    from chipbench.backends.ceilings import CPU_WINDOW_S, DEVICE_WINDOW_S, WINDOW_ENV, use_window, window_s

    monkeypatch.delenv(WINDOW_ENV, raising=False)
    assert window_s("cpu") == CPU_WINDOW_S and window_s("cuda") == DEVICE_WINDOW_S
    monkeypatch.setenv(WINDOW_ENV, "0.25")
    assert window_s("cuda") == 0.25 and window_s("cuda", 2) == 2
    use_window(1.5)  # an option's value, for this process and its children
    assert window_s("cpu") == 1.5
    for bad in ("-1", "nan", "soon"):
        monkeypatch.setenv(WINDOW_ENV, bad)
        with pytest.raises(UsageError, match=f"must be seconds >= 0, got '{bad}'"):
            use_window(None)  # refused when the run starts, never swallowed with the ceilings mid-run


def test_the_tests_short_window_never_reaches_the_main_command(monkeypatch):
    """pytest loads tests/conftest.py for `pytest --benchmark` run in the project root as well: its
    zero window for the tests must stay out of that run."""
    from types import SimpleNamespace

    from chipbench.backends.ceilings import WINDOW_ENV
    from tests import conftest

    for benchmark, expected in ((True, None), (False, "0")):
        monkeypatch.delenv(WINDOW_ENV, raising=False)
        conftest.pytest_configure(SimpleNamespace(getoption=lambda name, default=None: benchmark))
        assert os.environ.get(WINDOW_ENV) == expected


def test_a_ceiling_measured_while_the_device_rate_moved_says_so_in_the_flag():
    # the Xeon VM of 2026-12-03: a prefill at 0.50 TFLOP/s against a matmul ceiling of 0.49 whose rounds
    # had ranged to 1.56: the flag names the unsteady rounds
    steady = Ceilings("cpu", "bf16", 20.0, 0.49, 1, 2048, 19.0, 0.47, 3.0, 25)
    unsteady = Ceilings("cpu", "bf16", 20.0, 0.49, 1, 2048, 19.0, 0.30, 3.0, 25)
    assert steady.unsteady() == []
    assert unsteady.unsteady() == ["bf16 matmul best 0.49, median 0.3 TFLOP/s over 25 rounds in 3.0 s"]
    for c, said in ((steady, False), (unsteady, True)):
        rec = make_record(model="qwen3-0.6b", workload="pp512", ttft_s=0.6, device="Some CPU", dtype="bf16")
        add_roofline(rec, c)
        assert rec["measured_prefill_mfu"] > 1 and rec["roofline_flag"].startswith("MEASUREMENT ERROR")
        assert ("the device's rate moved while the ceilings were measured" in rec["roofline_flag"]) is said
        assert rec["ceiling_tflops_median"] == c.tflops_median and rec["ceiling_window_s"] == 3.0


@pytest.mark.parametrize(
    "dtype, ttft_s, flagged", [("bf16", 0.6, True), ("q8_0", 0.6, False), ("int4_sym", 0.6, False), ("q8_0", 0.2, True)]
)
def test_a_quantised_prefill_may_pass_the_bf16_matmul_rate_but_not_twice_it(dtype, ttft_s, flagged):
    """Where activations are quantised too, a quantised type's products can run as int8, at up to
    twice the bf16 rate its MFU is measured against: 1.1x is no measurement error, 3x is."""
    ceilings = Ceilings("cpu", "bf16", 20.0, 0.49, 1, 2048, 19.0, 0.47, 3.0, 25)
    rec = make_record(model="qwen3-0.6b", workload="pp512", ttft_s=ttft_s, device="Some CPU", dtype=dtype)
    add_roofline(rec, ceilings)
    assert rec["measured_prefill_mfu"] > 1
    assert bool(rec["roofline_flag"]) is flagged, rec["roofline_flag"]
    if flagged and dtype != "bf16":
        assert "exceeds 200% of the bf16 roofline" in rec["roofline_flag"]


def test_ceilings_spread_each_synchronisation_over_enough_calls():
    from chipbench.backends.ceilings import MAX_CALLS, _Probe

    log = []
    # a call that returns at once (a kernel launch), and a wait: one wait per timed stretch, however fast
    # the call, so the wait's fixed cost is not counted as the device's time once per call
    probe = _Probe(lambda: log.append("call"), lambda: log.append("sync"))
    for _ in range(3):
        probe.time()
    stretches = "".join("|" if x == "sync" else "." for x in log).split("|")[2:-1]  # after warmup and sizing
    assert len(stretches) == 3 and all(len(s) == MAX_CALLS for s in stretches), [len(s) for s in stretches]
    log.clear()
    probe = _Probe(lambda: (log.append("call"), time.sleep(0.05)), lambda: log.append("sync"))
    probe.time(), probe.time()
    assert log == ["call", "sync"] * 4  # a call longer than a stretch: one call per synchronisation


def test_beating_only_a_measured_ceiling_names_the_ceiling_among_the_causes():
    # an H100 decode at 2.9 TB/s: within the 3.35 TB/s sheet, above a ceiling measured at 2.5 TB/s
    rec = make_record(tpot_s=16.4e9 / 2.9e12, device="NVIDIA H100 80GB HBM3")
    add_roofline(rec, Ceilings("cuda", "bf16", bandwidth_gb_per_s=2500, tflops=790, copy_bytes=1, matmul_n=8192))
    flag = rec["roofline_flag"]
    assert flag.startswith("MEASUREMENT ERROR: measured_mbu 11") and "spec_mbu" not in flag.split(" exceeds")[0]
    assert "a measured ceiling that came out low" in flag and "within physics (spec_mbu 8" in flag
    # above the sheet itself: the number (or the sheet) is wrong, whatever was measured
    rec = make_record(tpot_s=16.4e9 / 4e12, device="NVIDIA H100 80GB HBM3")
    add_roofline(rec, Ceilings("cuda", "bf16", bandwidth_gb_per_s=2500, tflops=790, copy_bytes=1, matmul_n=8192))
    assert "spec_mbu 1" in rec["roofline_flag"] and "wrong spec row" in rec["roofline_flag"]
    assert "within physics" not in rec["roofline_flag"]


def test_the_summary_shows_each_case_beside_its_roofline_share_and_correctness():
    from chipbench.publishing.report import summary_rows, summary_table

    ok = make_record(
        tpot_s=0.031,
        device="NVIDIA H100 80GB HBM3",
        correct=True,
        correctness_rel_err=0.004,
        correctness_tolerance=0.01,
    )
    add_roofline(ok, Ceilings("cuda", "bf16", bandwidth_gb_per_s=3000, tflops=790, copy_bytes=1, matmul_n=8192))
    over = make_record(
        model="qwen3-0.6b",
        tpot_s=0.0001,
        device="NVIDIA H100 80GB HBM3",
        correct=False,
        correctness_note="token agreement 12%",
    )
    add_roofline(over)
    rows = {r["model"]: r for r in summary_rows([ok, over])}
    assert rows["qwen3-8b"]["roofline"] == "MBU 18% measured / 16% spec"
    assert rows["qwen3-8b"]["correct"] == "ok (0.40% ≤ 1.00%)"
    assert rows["qwen3-0.6b"]["roofline"] == "MEASUREMENT ERROR (>100%)"
    assert rows["qwen3-0.6b"]["correct"] == "WRONG: token agreement 12%"
    assert "MEASUREMENT ERROR" in summary_table([ok, over]) and "WRONG" in summary_table([ok, over])


class _OnDevice:
    """A backend on a named device whose ceilings count how often they are measured."""

    def __init__(self, name, device, measured):
        self.name, self.device, self.measured = name, device, measured

    def info(self):
        from chipbench.backends.base import DeviceInfo

        return DeviceInfo(backend=self.name, kind="cpu", device_name=self.device, device_count=1, memory_bytes=1)

    def ceilings(self, dtype):
        self.measured.append(self.name)
        return Ceilings(
            "cpu", dtype, bandwidth_gb_per_s=20.0 + len(self.measured), tflops=1.0, copy_bytes=1, matmul_n=8
        )


def test_backends_on_one_device_are_judged_against_one_measured_ceiling():
    from chipbench.measuring.runner import shared_ceilings

    measured, cache = [], {}
    torch_cpu, llama = _OnDevice("cpu", "Xeon", measured), _OnDevice("llamacpp", "Xeon", measured)
    other = _OnDevice("cpu", "EPYC", measured)
    first = shared_ceilings(cache, torch_cpu, "bf16")
    assert shared_ceilings(cache, llama, "bf16") is first  # the same cores and memory: measured once
    assert shared_ceilings(cache, torch_cpu, "fp32") is not first  # another dtype's matmul rate
    assert shared_ceilings(cache, other, "bf16").bandwidth_gb_per_s != first.bandwidth_gb_per_s
    assert measured == ["cpu", "cpu", "cpu"]
    engine = _OnDevice("vllm", "Xeon", measured)
    engine.ceilings = None  # an engine with no way to measure: the device's, measured by another backend
    assert shared_ceilings(cache, engine, "bf16") is first and shared_ceilings(cache, engine, "fp16") is None
    assert measured == ["cpu", "cpu", "cpu"]


def test_quantised_cases_share_the_yardstick_of_the_float_their_products_run_in():
    """llama.cpp's q4_0 and OpenVINO's int4_asym compute in bf16 on the CPU: their MBU rests on the
    bf16 ceilings the run measured once, not on a measurement of their own minutes apart (on
    2026-12-07 this VM's copy bandwidth read 37 GB/s for one dtype's and 67 for another's)."""
    from chipbench.measuring.runner import ceiling_dtype, shared_ceilings

    measured, cache = [], {}
    torch_cpu, llama = _OnDevice("cpu", "Xeon", measured), _OnDevice("llamacpp", "Xeon", measured)
    llama.ceiling_dtype = lambda d: d if d in ("fp32", "bf16", "fp16") else "bf16"
    first = shared_ceilings(cache, torch_cpu, "bf16")
    assert shared_ceilings(cache, llama, "q4_0") is first and shared_ceilings(cache, llama, "q8_0") is first
    assert shared_ceilings(cache, llama, "fp32") is not first and measured == ["cpu", "llamacpp"]
    broken = _OnDevice("plugin", "Xeon", measured)
    broken.ceiling_dtype = lambda d: 1 / 0
    assert ceiling_dtype(broken, "int4_sym") == "int4_sym" and ceiling_dtype(torch_cpu, "q4_0") == "q4_0"


def test_the_ceilings_measured_right_after_a_case_say_which_cause_of_a_flag_fits():
    # a prefill at 0.50 TFLOP/s against the run's matmul ceiling of 0.49, measured minutes earlier
    run_ceilings = Ceilings("cpu", "bf16", 20.0, 0.49, 1, 2048, 19.0, 0.47, 3.0, 25)
    for beside_tflops, said in ((1.3, "the run's ceilings came out low"), (0.45, "exceeded there too")):
        rec = make_record(model="qwen3-0.6b", workload="pp512", ttft_s=0.6, device="Some CPU", dtype="bf16")
        add_roofline(rec, run_ceilings, None, Ceilings("cpu", "bf16", 20.0, beside_tflops, 1, 2048))
        assert rec["measured_prefill_mfu"] > 1 and rec["ceiling_beside_tflops"] == beside_tflops
        assert "against the ceilings measured right after this case it is prefill_mfu" in rec["roofline_flag"]
        assert said in rec["roofline_flag"]


def test_the_ceilings_beside_each_case_are_a_few_rounds_and_none_with_a_zero_window(cpu, monkeypatch):
    from chipbench.backends.ceilings import BESIDE_ROUNDS, WINDOW_ENV
    from chipbench.measuring.runner import beside_ceilings

    assert beside_ceilings(cpu, "fp32") is None  # the tests' zero window: no rounds beside cases
    monkeypatch.delenv(WINDOW_ENV)
    c = beside_ceilings(cpu, "fp32")
    assert c.rounds == BESIDE_ROUNDS and c.bandwidth_gb_per_s > 0 and c.tflops > 0

    class Plugin:  # a third-party backend whose ceilings() takes the dtype only
        def ceilings(self, dtype):
            return Ceilings("cpu", dtype, 1.0, 1.0, 1, 8)

    assert beside_ceilings(Plugin(), "fp32") is None


def test_the_cpu_bandwidth_probe_outsizes_the_last_level_cache(tmp_path):
    """A buffer the caches hold measures the cache: an EPYC 9684X has 12 core complexes of 96 MB L3
    each, and a sum spread over them reads each share from its own L3."""
    from chipbench.backends.ceilings import cpu_copy_mib, last_level_cache_bytes

    for cpu in range(4):  # two L3 instances of 96 MB, each shared by two CPUs; per-CPU L1 and L2
        for index, (level, kind, size, shared) in enumerate(
            [
                (1, "Data", "48K", str(cpu)),
                (1, "Instruction", "32K", str(cpu)),
                (2, "Unified", "1024K", str(cpu)),
                (3, "Unified", "98304K", "0-1" if cpu < 2 else "2-3"),
            ]
        ):
            d = tmp_path / f"cpu{cpu}" / "cache" / f"index{index}"
            d.mkdir(parents=True)
            for name, value in (("level", level), ("type", kind), ("size", size), ("shared_cpu_list", shared)):
                (d / name).write_text(f"{value}\n")
    assert last_level_cache_bytes(str(tmp_path)) == 2 * 96 * 2**20
    assert last_level_cache_bytes(str(tmp_path / "none")) is None
    assert cpu_copy_mib(2 * 96 * 2**20, 64 * 2**30) == 768  # four times the L3, above the 512 MiB floor
    assert cpu_copy_mib(105 * 2**20, 24 * 2**30) == 512  # this project's VM: the floor
    assert cpu_copy_mib(24 * 1152 * 2**20, 64 * 2**30) == 8192  # within an eighth of the memory
    assert cpu_copy_mib(None, None) == 512


def test_a_record_made_with_the_old_prefill_count_is_read_as_one_made_today(tmp_path, monkeypatch):
    """Records made before 2026-12-03 counted the output head for every prompt token (qwen3-0.6b's
    prefill a third high); readers recount them from what they stored, so a prefill at 90% of the
    ceiling is no longer flagged as a MEASUREMENT ERROR at 120%."""
    import json

    from chipbench.judging import roofline
    from chipbench.publishing.record import read_records
    from chipbench.models.counts import flops_per_token, prefill_flops
    from chipbench.models.zoo import get_model

    spec = get_model("qwen3-0.6b")
    ceil = Ceilings(
        "cuda",
        "bf16",
        bandwidth_gb_per_s=3000,
        tflops=700,
        copy_bytes=1,
        matmul_n=8192,
        bandwidth_gb_per_s_median=2900,
        tflops_median=500,
        window_s=1.0,
        rounds=9,
    )
    beside = Ceilings("cuda", "bf16", bandwidth_gb_per_s=2800, tflops=600, copy_bytes=1, matmul_n=8192)
    ttft = prefill_flops(spec, 512) / (0.9 * 700e12)

    def made():
        rec = make_record(model="qwen3-0.6b", workload="pp512", device="NVIDIA H100 80GB HBM3", ttft_s=ttft, spread=0)
        return add_roofline(rec, ceil, beside=beside)

    today = made()
    monkeypatch.setattr(roofline, "prefill_flops", lambda s, p, b=1: b * p * flops_per_token(s, p // 2))
    old = made()
    monkeypatch.undo()
    assert old["measured_prefill_mfu"] == pytest.approx(1.2, rel=0.01) and old["roofline_flag"].startswith(
        "MEASUREMENT"
    )
    assert today["measured_prefill_mfu"] == pytest.approx(0.9) and today["roofline_flag"] is None
    path = tmp_path / "old.jsonl"
    path.write_text(json.dumps(old) + "\n" + json.dumps(today) + "\n")
    read_old, read_today = read_records(path)
    fields = [f for f in today if f in roofline.roofline_fields(today, None, ceil) or f.startswith("spec_")]
    assert {f: read_old[f] for f in fields} == pytest.approx({f: today[f] for f in fields})
    assert read_old["roofline_flag"] is None and read_old["chip"] == "NVIDIA H100 SXM"
    assert {f: read_today[f] for f in today} == {f: today[f] for f in today}  # today's records are left alone
    assert roofline.recount_prefill(dict(read_old)) is False  # and a recounted one is not recounted again
