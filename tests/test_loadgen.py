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


def test_single_stream_on_the_cpu_backend_is_valid_and_keeps_loadgens_logs(tmp_path):
    out = tmp_path / "r.jsonl"
    assert (
        main([*ARGS, "--scenario", "SingleStream", "--min-duration", "1", "--min-queries", "16", "--out", str(out)])
        == 0
    )
    (rec,) = read_records(out)
    assert rec["status"] == "ok" and rec["kind"] == "serve" and rec["workload"] == "pp16+tg8 loadgen-singlestream"
    assert rec["loadgen_valid"] is True and rec["loadgen_early_stopping"].startswith("Yes")
    assert rec["loadgen_result"].startswith("90.0th percentile latency (ns): ")
    summary = read_summary(tmp_path / "r" / "loadgen-singlestream" / "mlperf_log_summary.txt")
    assert summary["Result is"] == "VALID" and rec["loadgen_log_dir"].endswith("loadgen-singlestream")
    # chipbench's own statistics of the same queries: as many as LoadGen completed, each 8 tokens
    assert rec["serve_ok"] >= 16 and rec["ttft_s_n"] == rec["serve_ok"] and rec["serve_failed"] == 0
    p90_ns = float(rec["loadgen_result"].split(": ")[1])
    assert rec["e2e_s_p90"] == pytest.approx(p90_ns / 1e9, rel=0.5)  # LoadGen's clock and the harness's agree roughly


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
