"""MLPerf LoadGen scenarios with a chipbench backend as the system under test (issue 44, item 3):
LoadGen issues the queries, the backend answers them token by token, LoadGen's verdicts and logs
land in the record beside chipbench's own statistics of the same queries."""

import pytest

from chipbench.cli import main
from chipbench.errors import UsageError
from chipbench.measuring.loadgen import LoadGenCase, read_summary
from chipbench.publishing.record import read_records

pytest.importorskip("mlperf_loadgen", reason="mlcommons-loadgen is not installed (pip install chipbench[loadgen])")

ARGS = ["loadgen", "--backend", "cpu", "--model", "tiny-qwen3", "--dtype", "fp32", "--prompt", "16", "--gen", "8"]


def test_single_stream_on_the_cpu_backend_records_loadgens_verdict_and_keeps_its_logs(tmp_path):
    out = tmp_path / "r.jsonl"
    # 64 queries: the fewest LoadGen's early stopping takes for a 90th percentile; on a busy host the
    # verdict may still be INVALID (its estimate), and the exit status follows it
    rc = main([*ARGS, "--scenario", "SingleStream", "--min-duration", "1", "--min-queries", "64", "--out", str(out)])
    (rec,) = read_records(out)
    assert rec["status"] == "ok" and rec["kind"] == "serve" and rec["workload"] == "pp16+tg8 loadgen-singlestream"
    assert rec["loadgen_valid"] in (True, False) and rc == (0 if rec["loadgen_valid"] else 1)
    assert rec["loadgen_early_stopping"].split(";")[0] in ("Yes", "NO")
    assert rec["loadgen_result"].startswith("90.0th percentile latency (ns): ")
    assert "Min queries satisfied: Yes" in rec["loadgen_checks"]
    summary = read_summary(tmp_path / "r" / "loadgen-singlestream" / "mlperf_log_summary.txt")
    assert summary["Result is"] in ("VALID", "INVALID") and rec["loadgen_log_dir"].endswith("loadgen-singlestream")
    # chipbench's own statistics of the same queries: as many as LoadGen completed, each 8 tokens
    assert rec["serve_ok"] >= 64 and rec["ttft_s_n"] == rec["serve_ok"] and rec["serve_failed"] == 0
    p90_ns = float(rec["loadgen_result"].split(": ")[1])
    assert rec["e2e_s_p90"] == pytest.approx(p90_ns / 1e9, rel=0.5)  # LoadGen's clock and the harness's agree


def test_server_scenario_records_loadgens_verdict_whatever_it_is(tmp_path):
    out = tmp_path / "r.jsonl"
    rc = main(
        [*ARGS, "--scenario", "Server", "--qps", "20", "--min-duration", "1", "--min-queries", "8", "--out", str(out)]
    )
    (rec,) = read_records(out)
    assert rec["status"] == "ok" and rec["workload"] == "pp16+tg8 loadgen-server@q20" and rec["serve_rate_per_s"] == 20
    assert rec["loadgen_valid"] in (True, False) and rc == (0 if rec["loadgen_valid"] else 1)
    assert rec["loadgen_result"].startswith("Completed samples per second: ") and rec["slo_ttft_s"] == 2.0
    assert rec["loadgen_early_stopping"] and rec["loadgen_checks"]  # the early-stopping and other checks, named


def test_bad_scenarios_are_one_line():
    with pytest.raises(UsageError, match="Server scenario needs a target rate"):
        LoadGenCase("Server", 16, 8).validate()
    with pytest.raises(UsageError, match="unknown LoadGen scenario 'MultiStream'"):
        LoadGenCase("MultiStream", 16, 8).validate()
    with pytest.raises(UsageError, match=">= 2 generated tokens"):
        LoadGenCase("Offline", 16, 1).validate()


def test_an_endpoint_backend_is_a_system_under_test_too(tmp_path):
    from chipbench.measuring.mockserver import MockServer

    out = tmp_path / "r.jsonl"
    with MockServer(tok_per_s=500) as mock:
        args = ["loadgen", "--backend", "openai:" + mock.url, "--model", "qwen3-0.6b", "--scenario", "SingleStream"]
        main([*args, "--min-duration", "1", "--min-queries", "8", "--prompt", "16", "--gen", "8", "--out", str(out)])
        served = mock.requests
    (rec,) = read_records(out)
    assert rec["status"] == "ok" and rec["loadgen_result"].startswith("90.0th percentile latency (ns): ")
    assert rec["serve_ok"] >= 8 and served >= rec["serve_ok"]  # every query went to the server
    assert 0.0015 < rec["tpot_s_median"] < 0.02  # the mock paces 500 tokens/s per request: 2 ms a token


def test_a_run_past_its_bound_answers_the_waiting_queries_unrun_and_ends(tmp_path):
    """Offline issues every query at once; a system under test that needs 0.8 s a query would take
    about 50 s for 64 of them. Past the 2 s bound the queries still waiting are answered unrun and
    counted as failed, and the run ends with the one in flight."""
    from chipbench.measuring.mockserver import MockServer

    out = tmp_path / "r.jsonl"
    with MockServer(tok_per_s=20) as mock:
        args = ["loadgen", "--backend", "openai:" + mock.url, "--model", "qwen3-0.6b", "--scenario", "Offline"]
        args += ["--min-duration", "1", "--max-duration", "2", "--min-queries", "64", "--prompt", "16", "--gen", "16"]
        rc = main([*args, "--out", str(out)])
    (rec,) = read_records(out)
    assert rc == 1 and rec["serve_requests"] == 64 and 1 <= rec["serve_ok"] < 10
    assert rec["serve_failed"] == 64 - rec["serve_ok"] and "the run's bound of 2 s had passed" in rec["serve_errors"]
    assert rec["serve_duration_s"] < 20  # the bound and the query in flight, far from the 50 s unbounded
    # LoadGen itself called the run VALID, counting the empty answers as completed queries
    assert rec["loadgen_valid"] is False and "which LoadGen counted as completed: its VALID" in rec["loadgen_checks"]
    with pytest.raises(UsageError, match="maximum duration must be at least the minimum"):
        LoadGenCase("Offline", 16, 8, min_duration_s=10, max_duration_s=5).validate()


class _Handle:
    class spec:  # noqa: N801 - the one field run() reads of a model
        vocab = 512


class _Backend:
    """A system under test whose generate blocks until released, or fails at once."""

    def __init__(self, fail: bool = False):
        import threading

        self.fail, self.release, self.entered, self.calls = fail, threading.Event(), threading.Event(), 0

    def prompt(self, handle, ids):
        return ids

    def generate(self, handle, prompt, new_tokens, on_token):
        self.calls += 1
        self.entered.set()
        if self.fail:
            raise RuntimeError("Unsupported attention configuration")
        self.release.wait(120)
        raise RuntimeError("released")


def _timed_run(backend, case, tmp_path):
    import time

    from chipbench.measuring import loadgen

    t0 = time.monotonic()
    try:
        return loadgen.run(backend, _Handle(), case, tmp_path / "logs"), time.monotonic() - t0
    finally:
        backend.release.set()


def test_a_generate_call_that_never_returns_is_answered_at_the_hard_end(tmp_path):
    """vLLM's CPU engine, after a failed step, once spun in its generate call for ever and the run never
    ended: past its bound and the grace for the query in flight, every open query is answered."""
    from chipbench.measuring.loadgen import record_fields

    case = LoadGenCase("SingleStream", 16, 8, min_duration_s=0.5, max_duration_s=1, grace_s=1).validate()
    assert case.hard_end_s == 2 and LoadGenCase("Offline", 16, 8).hard_end_s == 600 + 150
    backend = _Backend()
    run, took = _timed_run(backend, case, tmp_path)
    assert 2 <= took < 10 and backend.calls == 1  # the one query in flight, stuck
    # the stuck query, and the one LoadGen issued on its answer before seeing its own bound had passed
    assert 1 <= len(run.results) <= 2
    for res in run.results:
        assert "unanswered at the run's hard end, 2 s" in res.error and "generate did not return" in res.error
    fields = record_fields(run, case)
    assert fields["serve_ok"] == 0 and fields["serve_failed"] == len(run.results)
    assert fields["loadgen_valid"] is not True


def test_a_backend_whose_every_query_fails_ends_with_its_minimum_duration(tmp_path):
    from chipbench.measuring.loadgen import record_fields

    case = LoadGenCase("SingleStream", 16, 8, min_duration_s=1, max_duration_s=5, grace_s=1).validate()
    backend = _Backend(fail=True)
    run, took = _timed_run(backend, case, tmp_path)
    assert took < 5 and len(run.results) == backend.calls >= 8  # each failure answered, LoadGen went on
    fields = record_fields(run, case)
    assert fields["serve_ok"] == 0 and fields["loadgen_valid"] is False
    assert fields["serve_errors"] == "RuntimeError: Unsupported attention configuration"


def test_an_interrupt_ends_a_run_whose_query_is_stuck(tmp_path):
    """Ctrl-C or SIGTERM (the command's handler raises in the main thread) reaches a run waiting on a
    stuck backend: LoadGen runs in a thread of its own; from the interrupt on every query is answered
    at once, and SingleStream's LoadGen, its queries answered, ends well before its minimum duration."""
    import _thread
    import threading
    import time

    case = LoadGenCase("SingleStream", 16, 8, min_duration_s=60, max_duration_s=120).validate()
    backend = _Backend()

    def interrupt() -> None:
        if backend.entered.wait(60):  # the query is in the backend, stuck
            time.sleep(0.5)
            _thread.interrupt_main()

    threading.Thread(target=interrupt, daemon=True).start()
    with pytest.raises(KeyboardInterrupt) as stopped:
        _timed_run(backend, case, tmp_path)
    assert backend.calls == 1 and (tmp_path / "logs" / "mlperf_log_summary.txt").is_file()  # LoadGen ended
    assert not hasattr(stopped.value, "leaves_threads")


HANGS = """
from tests.adapters import Hangs

def create():
    return Hangs()
"""


def test_sigterm_ends_the_command_when_loadgen_cannot_end_soon(tmp_path):
    """The Server scenario issues on a schedule, a minute of it here: an interrupted run cannot wait for
    it. The command says so and the process ends at once with SIGTERM's status, not in LoadGen's
    teardown."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    (tmp_path / "hangs_plugin.py").write_text(HANGS)
    info = tmp_path / "hangs-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: hangs\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[chipbench.backends]\nhangs = hangs_plugin:create\n")
    cmd = [sys.executable, "-m", "chipbench.cli", *ARGS[:1], "--backend", "hangs", *ARGS[3:]]
    cmd += ["--scenario", "Server", "--qps", "1", "--min-duration", "60", "--max-duration", "120"]
    cmd += ["--out", str(tmp_path / "r.jsonl")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(root)])}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "r" / "loadgen-server").is_dir():  # LoadGen has started
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.2)
        time.sleep(1)
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert time.monotonic() - t0 < 15 and proc.returncode == 143, err
    assert "stopped by SIGTERM" in err and "LoadGen's test (its minimum duration had not passed) was still" in err
    assert "terminate called" not in err
