"""`pytest --benchmark`: the suite runs as real pytest sessions (smoke runs on tiny models)."""

import json
import os
from pathlib import Path

import pytest

# what `pytest --benchmark` imports, imported before any pytester fixture: pytester drops the modules
# an in-process run imported, and numpy cannot be imported twice in one process
import chipbench.backends.registry  # noqa: F401
import chipbench.judging.chips  # noqa: F401
import chipbench.measuring.suite  # noqa: F401
import chipbench.publishing.record  # noqa: F401
import chipbench.session  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--bench-backend=cpu", "--bench-model=tiny-qwen3", "--bench-dtype=fp32", "--bench-rounds=2"]


@pytest.fixture
def env_path(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(pytester.path), str(ROOT)]))
    return pytester.path


def test_benchmark_runs_the_suite_writes_records_and_summarises(pytester, env_path):
    out, js = env_path / "runs.jsonl", env_path / "bench.json"
    res = pytester.runpytest_subprocess(
        "--benchmark",
        *TINY,
        "--bench-workload=pp16,tg8,pp8+tg4",
        "--bench-batch=1,2",
        f"--bench-out={out}",
        f"--benchmark-json={js}",
    )
    res.assert_outcomes(passed=6)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert {(r["workload"], r["batch"]) for r in records} == {
        (w, b) for w in ("pp16", "tg8", "pp8+tg4") for b in (1, 2)
    }
    assert all(r["status"] == "ok" and r["rounds"] == 2 and len(r["token_times_s"]) == 2 for r in records)
    res.stdout.fnmatch_lines(
        ["*chipbench results*", "*tiny-qwen3 · fp32*", "cpu*tg8*", "*6 record(s) appended to*", "took *", "next:"]
    )
    summary = res.stdout.str().split("chipbench results")[1].split("record(s) appended")[0].splitlines()[1:-1]
    assert max(map(len, summary)) <= 120  # the summary fits a terminal; --bench-wide has every column
    assert "Name (time in" not in res.stdout.str()  # pytest-benchmark's own table only when asked
    data = json.loads(js.read_text())
    extra = {b["extra_info"]["workload"]: b["extra_info"] for b in data["benchmarks"]}
    assert extra["tg8"]["decode_tok_per_s_median"] > 0 and extra["pp16"]["prefill_tok_per_s_median"] > 0
    assert data["machine_info"]["chipbench"]["backends"]["cpu"] == "available"
    assert all(b["stats"]["rounds"] == 2 for b in data["benchmarks"])
    from chipbench.publishing.record import load_records

    df = load_records(js)  # the reporter reads --benchmark-json files as records
    assert len(df) == 6 and set(df["record_id"]) == {r["record_id"] for r in records}


def test_unavailable_backends_are_skipped_with_their_reason_by_default(pytester, env_path):
    res = pytester.runpytest_subprocess(
        "--benchmark", *TINY[1:], "--bench-workload=tg4", f"--bench-out={env_path / 'r.jsonl'}"
    )
    skipped = res.parseoutcomes().get("skipped", 0)
    res.stdout.fnmatch_lines(["*chipbench results*"])
    from chipbench.backends.registry import discover

    unavailable = [n for n, e in discover().items() if not e.available]
    assert skipped == len(unavailable) and all(f"skipped backend {n}:" in res.stdout.str() for n in unavailable)


def test_a_backend_asked_for_by_name_that_is_unavailable_is_an_error(pytester, env_path):
    from chipbench.backends.registry import discover

    missing = [n for n, e in discover().items() if not e.available]
    if not missing:
        pytest.skip("every backend is available on this machine")
    out = env_path / "r.jsonl"
    res = pytester.runpytest_subprocess(
        "--benchmark", f"--bench-backend=cpu,{missing[0]}", *TINY[1:], "--bench-workload=tg4", f"--bench-out={out}"
    )
    assert res.ret != 0 and not out.exists()  # a misconfigured GPU runner must not pass green with no data
    assert f"backend '{missing[0]}' was asked for but is unavailable here:" in res.stderr.str()
    assert "Traceback" not in res.stderr.str()


def test_repeats_run_independent_trials_in_worker_processes(pytester, env_path):
    out, js = env_path / "r.jsonl", env_path / "bench.json"
    res = pytester.runpytest_subprocess(
        "--benchmark",
        *TINY,
        "--bench-workload=tg4",
        "--bench-repeats=2",
        f"--bench-out={out}",
        f"--benchmark-json={js}",
    )
    res.assert_outcomes(passed=1)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["trial_index"] for r in records] == [0, 1] and len({r["series_id"] for r in records}) == 1
    assert all(r["trial_process"] == "worker" and r["trials_planned"] == 2 and r["status"] == "ok" for r in records)
    assert records[0]["env_hostname"] and records[0]["host_other_cpu_frac"] is not None  # read, if not judged
    assert records[1]["correct"] is records[0]["correct"] is True  # checked once, in trial 0
    (bench,) = json.loads(js.read_text())["benchmarks"]
    assert bench["stats"]["rounds"] == 2 and len(bench["extra_info"]["chipbench_records"]) == 2
    res.stdout.fnmatch_lines(["*chipbench results*", "*2 record(s) appended to*"])


@pytest.mark.parametrize(
    "option,message",
    [
        ("--bench-model=qwen9", "unknown model 'qwen9'; valid models:"),
        ("--bench-batch=0", "batch size must be >= 1, got 0"),
        ("--bench-rounds=0", "rounds must be >= 1, got 0"),
        ("--bench-dtype=int4", "unknown dtype 'int4'"),
        ("--bench-backend=tpu9", "unknown backend 'tpu9'"),
        ("--bench-workload=pp40000+tg8000", "longer than tiny-qwen3's context"),
        ("--bench-ceiling-window=-2", "must be seconds >= 0, got -2.0"),
    ],
)
def test_bad_options_fail_with_one_line(pytester, env_path, option, message):
    # in this process: the options are refused in pytest_configure, before any case would run, and a
    # fresh interpreter would cost ~5 s of imports each (one run below goes through one)
    res = pytester.runpytest_inprocess("--benchmark", *TINY, option)
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    assert message in res.stderr.str() and "Traceback" not in res.stderr.str()


def test_a_bad_option_fails_with_one_line_in_a_fresh_pytest(pytester, env_path):
    res = pytester.runpytest_subprocess("--benchmark", *TINY, "--bench-model=qwen9")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    assert [line for line in res.stderr.lines if line.strip()] == [
        line for line in res.stderr.lines if "unknown model 'qwen9'; valid models:" in line
    ]


def test_plain_pytest_does_not_run_the_suite(pytester, env_path):
    pytester.makepyfile(test_one="def test_one():\n    assert True\n")
    res = pytester.runpytest_subprocess()
    res.assert_outcomes(passed=1)
    assert "chipbench results" not in res.stdout.str()


CRASHY = """
from tests.adapters import CrashesOn

def create():
    return CrashesOn("tiny-qwen3-moe")
"""


def test_a_failing_case_is_recorded_and_the_suite_goes_on(pytester, env_path):
    (env_path / "crashy_plugin.py").write_text(CRASHY)
    info = env_path / "crashy-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: crashy\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[chipbench.backends]\ncrashy = crashy_plugin:create\n")
    out = env_path / "r.jsonl"
    res = pytester.runpytest_subprocess(
        "--benchmark",
        "--bench-backend=crashy",
        "--bench-dtype=fp32",
        "--bench-model=tiny-qwen3-moe,tiny-qwen3",
        "--bench-workload=tg4",
        "--bench-rounds=1",
        f"--bench-out={out}",
    )
    res.assert_outcomes(passed=1, failed=1)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["model"], r["status"]) for r in records] == [("tiny-qwen3-moe", "failed"), ("tiny-qwen3", "ok")]
    assert "OutOfMemoryError: simulated" in records[0]["error"]
    res.stdout.fnmatch_lines(["*tiny-qwen3-moe*FAILED*"])


def test_benchmark_disable_writes_no_empty_records(pytester, env_path):
    out = env_path / "r.jsonl"
    res = pytester.runpytest_subprocess(
        "--benchmark", *TINY, "--bench-workload=tg4", "--benchmark-disable", f"--bench-out={out}"
    )
    res.assert_outcomes(skipped=1)
    assert not out.exists() or out.read_text() == ""


def test_the_run_ends_compared_with_the_best_matching_baseline_and_says_a_device_has_no_spec_row(pytester, env_path):
    """Two sessions: the baseline's, judged against peaks the user gave (this CPU has no spec row),
    then the run's, judged against its measured ceilings only (said), ending with the comparison."""
    base = env_path / "base.jsonl"
    args = ["--benchmark", *TINY, "--bench-workload=tg8"]
    pytester.runpytest_subprocess(*args, "--bench-peak-gbps=40", f"--bench-out={base}").assert_outcomes(passed=1)
    rec = json.loads(base.read_text().splitlines()[-1])
    assert rec["chip"] == "user-given peaks" and rec["spec_mbu"] > 0 and rec["correct"] is True
    res = pytester.runpytest_subprocess(*args, f"--bench-out={env_path / 'run.jsonl'}", f"--bench-baseline={base}")
    res.assert_outcomes(passed=1)
    res.stdout.fnmatch_lines(
        [
            "*no spec row matches*measured ceilings only; the table has no",  # wrapped at 120 columns
            "server CPUs: give its sheet's --bench-peak-gbps / --bench-peak-tflops",
            "*chipbench vs baseline*",
            "cpu tg8 B1*eager*decode t/s*",
            "*invocation drift assumed: each side is one invocation*",
            "run: 1 record(s): 1 used",
            "baseline: 1 record(s): 1 used",
        ]
    )


def test_the_run_says_where_a_16_bit_ceiling_is_fp32s_product():
    from chipbench.session import widened_ceilings as _widened_ceilings

    rec = dict(
        status="ok",
        device_name="AMD EPYC",
        dtype="bf16",
        ceiling_matmul_dtype="fp32",
        ceiling_tflops=0.183,
        ceiling_tflops_in_dtype=0.0208,
    )
    (line,) = _widened_ceilings([rec, {**rec, "backend": "llamacpp"}, {**rec, "status": "error"}])
    assert line.startswith("'AMD EPYC': the bf16 matmul ceiling is fp32's product, 0.183 TFLOP/s")
    assert "(0.0208)" in line and "every bf16 MFU above is against fp32's rate" in line
    assert _widened_ceilings([{**rec, "ceiling_matmul_dtype": "bf16"}, {**rec, "ceiling_matmul_dtype": None}]) == []
    assert _widened_ceilings([{**rec, "dtype": "q8_0", "ceiling_tflops_in_dtype": None}]) == []  # no torch q8_0 product


LAZY = """
from tests.adapters import LazyClock

def create():
    return LazyClock()
"""


def test_a_backend_whose_timing_does_not_wait_reports_no_numbers(pytester, env_path):
    (env_path / "lazy_plugin.py").write_text(LAZY)
    info = env_path / "lazy-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lazy\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[chipbench.backends]\nlazy = lazy_plugin:create\n")
    out = env_path / "r.jsonl"
    res = pytester.runpytest_subprocess(
        "--benchmark",
        "--bench-backend=lazy",
        "--bench-dtype=fp32",
        "--bench-model=tiny-qwen3",
        "--bench-workload=tg4,pp8",
        "--bench-rounds=1",
        f"--bench-out={out}",
    )
    res.assert_outcomes(failed=2)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 2 and all(r["status"] == "failed" for r in records)
    assert all("timing self-test failed" in r["error"] and "DOES NOT wait" in r["timing_selftest"] for r in records)
    assert all(r.get("decode_tok_per_s_median") is None for r in records)  # no number reported


def test_sustained_mode_under_pytest_benchmark(pytester, env_path):
    out = env_path / "r.jsonl"
    res = pytester.runpytest_subprocess(
        "--benchmark", *TINY, "--bench-workload=tg8", "--bench-soak=1.5", "--bench-no-check", f"--bench-out={out}"
    )
    res.assert_outcomes(passed=1)
    rec = json.loads(out.read_text())
    assert rec["rounds"] == len(rec["token_times_s"]) > 2 and rec["soak_first_tok_per_s"] > 0


def test_results_and_baselines_are_found_when_an_option_value_made_pytest_pick_another_rootdir(tmp_path):
    """`--bench-out /elsewhere/x.jsonl` makes pytest take /elsewhere as its rootdir (it picks one
    before it knows plugin options), where no configuration is: the run then compared with no
    baseline at all. Records still default to where pytest ran, and baselines to this checkout's."""
    from types import SimpleNamespace

    from chipbench import PROJECT_ROOT
    from chipbench.plugin import baselines_dir, results_dir

    here, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    stray = SimpleNamespace(rootpath=elsewhere, inipath=None, invocation_params=SimpleNamespace(dir=here))
    assert results_dir(stray) == here / "results"
    assert baselines_dir(stray) == PROJECT_ROOT / "results" / "baselines"
    (here / "results" / "baselines").mkdir(parents=True)
    assert baselines_dir(stray) == here / "results" / "baselines"
    found = SimpleNamespace(
        rootpath=here, inipath=here / "pyproject.toml", invocation_params=SimpleNamespace(dir=here / "tests")
    )
    assert results_dir(found) == here / "results"


# What a record holds whatever the run measured: its case, its verdicts' kinds, its provenance's
# shape. Timings, memory, ceilings, load and ids differ from run to run and are compared by key only.
IDENTITY = (
    "backend",
    "backend_kind",
    "model",
    "dtype",
    "workload",
    "batch",
    "kind",
    "prompt_tokens",
    "gen_tokens",
    "status",
    "error",
    "rounds",
    "warmup",
    "mode",
    "exec_path",
    "weights",
    "correct",
    "chip",
    "params_total",
    "weight_bytes",
    "expected_mem_bytes",
    "flops_per_token",
    "decode_bytes_per_step",
    "prefill_flops",
    "trials_planned",
    "trial_process",
    "schema_version",
    "device_name",
    "stack",
    "rerun",
)


def test_pytest_benchmark_and_chipbench_run_write_the_same_records(pytester, env_path):
    """One suite session behind both entry points: the same cases give records with the same
    fields, the same case identity and the same verdict kinds, whichever command ran them."""
    from chipbench.cli import main

    via_run = env_path / "run.jsonl"
    case = ["--backend=cpu", "--model=tiny-qwen3", "--dtype=fp32", "--rounds=2", "--workload=pp16,tg8"]
    assert main(["run", *case, f"--out={via_run}"]) == 0
    via_pytest = env_path / "pytest.jsonl"
    pytester.runpytest_subprocess(
        "--benchmark", *(a.replace("--", "--bench-", 1) for a in case), f"--bench-out={via_pytest}"
    ).assert_outcomes(passed=2)
    one = {r["workload"]: r for r in map(json.loads, via_run.read_text().splitlines())}
    two = {r["workload"]: r for r in map(json.loads, via_pytest.read_text().splitlines())}
    assert set(one) == set(two) == {"pp16", "tg8"}
    for workload, a in one.items():
        b = two[workload]
        assert set(a) == set(b), set(a) ^ set(b)
        assert {k: a.get(k) for k in IDENTITY} == {k: b.get(k) for k in IDENTITY}
        assert a["correct"] is True and a["timing_selftest"].startswith("passed")
        assert a["correctness_note"] == b["correctness_note"]
