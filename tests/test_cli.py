"""The chipbench command: listings, and one clear line with exit 2 for every kind of bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def chipbench(*args, **kw):
    return subprocess.run(
        [sys.executable, "-m", "chipbench.cli", *args],
        capture_output=True,
        text=True,
        cwd=kw.get("cwd", ROOT),
        timeout=300,
    )


def test_list_shows_models_with_facts_and_backends_with_status():
    out = chipbench("list")
    assert out.returncode == 0
    assert "qwen3-next-80b-a3b" in out.stdout and "79.674B" in out.stdout and "3.875B" in out.stdout
    assert "cpu" in out.stdout and "available" in out.stdout


def test_list_json_is_machine_readable():
    rows = json.loads(chipbench("list", "models", "--json").stdout)
    assert {r["model"] for r in rows} >= {"qwen3-0.6b", "qwen3-8b", "qwen3.5-9b", "tiny-qwen3"}


def test_env_reports_versions_and_devices():
    data = json.loads(chipbench("env").stdout)
    assert data["host"]["env_torch"] and data["devices"]["cpu"]["kind"] == "cpu"
    assert "unavailable" in data["devices"]["cuda"] or data["devices"]["cuda"]["kind"] == "cuda"


def test_run_writes_records_and_prints_a_summary(tmp_path):
    out = tmp_path / "r.jsonl"
    res = chipbench(
        "run",
        "--backend",
        "cpu",
        "--model",
        "tiny-qwen3",
        "--dtype",
        "fp32",
        "--workload",
        "pp16,tg8",
        "--rounds",
        "2",
        "--out",
        str(out),
    )
    assert res.returncode == 0, res.stderr
    assert "tiny-qwen3" in res.stdout and "tg8" in res.stdout
    assert len(out.read_text().splitlines()) == 2
    assert_reruns_plan_the_same_case(out)


def assert_reruns_plan_the_same_case(path):
    """Each record's `rerun` line, read by chipbench's own parser, plans exactly that case again."""
    import json
    import shlex

    from chipbench.backends.registry import discover
    from chipbench.cli import parser
    from chipbench.measuring.suite import SuiteOptions, parse_ints, plan, split_list

    for rec in map(json.loads, path.read_text().splitlines()):
        head, *argv = shlex.split(rec["rerun"])
        args = parser().parse_args(argv)
        assert head == "chipbench" and args.command == "run"
        (p,) = plan(
            SuiteOptions(
                backends=split_list(args.backend),
                models=split_list(args.model),
                dtypes=split_list(args.dtype),
                workloads=split_list(args.workload),
                batches=parse_ints(args.batch, "batch sizes"),
                rounds=args.rounds,
                warmup=args.warmup,
                seed=args.seed,
                modes=split_list(args.mode),
            ),
            discover(),
        )
        case = p.case
        assert (
            case.backend,
            case.model,
            case.dtype,
            case.workload.name,
            case.workload.batch,
            case.mode,
            case.rounds,
            case.workload.seed,
        ) == (
            rec["backend"],
            rec["model"],
            rec["dtype"],
            rec["workload"],
            rec["batch"],
            rec["exec_path"],
            rec["rounds"],
            rec["seed"],
        )


BAD = [
    (["--model", "qwen9"], "unknown model 'qwen9'; valid models:"),
    (["--backend", "tpu9"], "unknown backend 'tpu9'; known backends:"),
    (["--dtype", "fp64"], "unknown dtype 'fp64'; valid dtypes: fp32, bf16, fp16"),
    (["--batch", "0"], "batch size must be >= 1, got 0"),
    (["--batch", "two"], "batch sizes must be whole numbers"),
    (["--rounds", "0"], "rounds must be >= 1, got 0"),
    (["--workload", "pp0"], "prompt tokens must be >= 1"),
    (["--workload", "xx12"], "unknown workload 'xx12'; valid forms:"),
    (["--model", "tiny-qwen3", "--workload", "pp4000+tg200"], "longer than tiny-qwen3's context of 4096"),
    (["--model", "tiny-qwen3", "--weights", "/nonexistent"], "does not exist"),
    (["--repeats", "0"], "repeats must be >= 1, got 0"),
    (["--ceiling-window", "-1"], "the ceilings' window (CHIPBENCH_CEILING_WINDOW_S or --ceiling-window) must be"),
]


def chipbench_here(capsys, *args) -> subprocess.CompletedProcess:
    """`chipbench ARGS` in this process (chipbench.cli.main), as a CompletedProcess: the same code path
    less the interpreter start and imports (~5 s a call on these machines)."""
    from chipbench.cli import main

    try:
        rc = main(list(args))
    except SystemExit as e:  # argparse's own errors
        rc = e.code
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(["chipbench", *args], rc, out, err)


@pytest.mark.parametrize("args,message", BAD, ids=[m.split(";")[0][:30] for _, m in BAD])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    res = chipbench_here(capsys, "run", "--backend", "cpu", "--out", str(tmp_path / "x.jsonl"), *args)
    assert res.returncode == 2, (res.returncode, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in res.stderr
    assert not (tmp_path / "x.jsonl").exists()


def test_bad_input_from_the_installed_command_is_one_line_and_exit_2(tmp_path):
    """The same through a fresh interpreter: what a user's shell sees, import-time errors included."""
    res = chipbench("run", "--backend", "cpu", "--out", str(tmp_path / "x.jsonl"), "--model", "qwen9")
    assert res.returncode == 2, (res.returncode, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown model 'qwen9'; valid models:" in lines[0]


def test_run_with_an_unavailable_backend_named_is_an_error(tmp_path):
    from chipbench.backends.registry import discover

    missing = [n for n, e in discover().items() if not e.available]
    if not missing:
        pytest.skip("every backend is available on this machine")
    out = tmp_path / "x.jsonl"
    res = chipbench("run", "--backend", missing[0], "--model", "tiny-qwen3", "--out", str(out))
    assert res.returncode == 2 and not out.exists()
    assert f"backend '{missing[0]}' was asked for but is unavailable here" in res.stderr


def test_cli_selftest_reports_that_cpu_timing_waits():
    res = chipbench("selftest", "--backend", "cpu", "--model", "tiny-qwen3", "--dtype", "fp32", "--long-prompt", "1024")
    assert res.returncode == 0 and res.stdout.count("cpu: timing waits for the device") == 2


def test_build_reports_the_build_time():
    res = chipbench("build", "tiny-qwen3-next")
    assert res.returncode == 0 and " s (" in res.stdout and "all finite: True" in res.stdout


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_build_says_when_a_weight_is_not_finite(monkeypatch, capsys, bad):
    import chipbench.models.build
    from chipbench.cli import main

    real = chipbench.models.build.build_random

    def spoiled(*args, **kwargs):
        built = real(*args, **kwargs)
        next(built.module.parameters()).data.view(-1)[7] = bad
        return built

    monkeypatch.setattr(chipbench.models.build, "build_random", spoiled)
    assert main(["build", "tiny-qwen3"]) == 1
    assert "all finite: False" in capsys.readouterr().out


def test_ci_runs_exactly_the_readmes_test_command():
    readme = (ROOT / "README.md").read_text()
    command = "python -m pip install -e '.[test]' -e './plugins/chipbench-openvino[compress]' && pytest"
    assert f"{command}   # the harness's own tests" in readme
    assert (ROOT / ".ci" / "run").read_text().rstrip().endswith(command)


def test_the_pytest_plugin_and_the_record_commands_do_not_import_torch():
    """The plugin is loaded by every pytest run where chipbench is installed, and report / merge /
    compare only read records: neither may pay torch's seconds of import."""
    code = (
        "import sys, chipbench.plugin, chipbench.cli, chipbench.options, chipbench.judging.compare, chipbench.publishing.report, "
        "chipbench.publishing.tables, chipbench.publishing.record, chipbench.publishing.html_page; "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "[]"


def test_build_refuses_a_model_the_host_cannot_hold_in_one_line(capsys):
    """qwen3-32b on this 24 GiB machine was OOM-killed mid-build; 438 GiB of qwen3-235b-a22b fits no CI host."""
    res = chipbench_here(capsys, "build", "qwen3-235b-a22b")
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert (
        "qwen3-235b-a22b: `chipbench build` needs its bf16 weights on the host: 437.9 GiB, more than 90%" in res.stderr
    )
