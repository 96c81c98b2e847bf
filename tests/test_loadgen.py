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
