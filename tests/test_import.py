"""Other tools' result files read as records (issue 44): real files made here by the real tools
(tests/fixtures/import/README.md says how)."""

import json
from pathlib import Path

import pytest

from chipbench.cli import main
from chipbench.errors import UsageError
from chipbench.publishing.importing import import_file
from chipbench.publishing.record import read_records

FIXTURES = Path(__file__).parent / "fixtures" / "import"


def test_llama_bench_json_gives_one_record_per_test_with_its_repetitions_as_rounds():
    pp, tg = import_file(FIXTURES / "llama-bench-qwen3-0.6b-bf16.json")
    raw = json.loads((FIXTURES / "llama-bench-qwen3-0.6b-bf16.json").read_text())
    assert (pp["model"], pp["dtype"], pp["workload"], pp["kind"]) == ("qwen3-0.6b", "bf16", "pp512", "prefill")
    assert (tg["workload"], tg["kind"], tg["rounds"]) == ("tg128", "decode", 5)
    assert pp["prefill_tok_per_s_mean"] == pytest.approx(raw[0]["avg_ts"], rel=1e-6)
    assert tg["decode_tok_per_s_mean"] == pytest.approx(raw[1]["avg_ts"], rel=1e-6)
    assert tg["tpot_s_median"] == pytest.approx(128 / tg["decode_tok_per_s_median"] / 128, rel=0.05)
    assert pp["device_name"] == "AMD EPYC" and pp["engine"] == "llama.cpp" and "llama-bench" in pp["stack"]
    assert pp["import_tool"] == "llama-bench" and len(pp["import_sha256"]) == 64
    assert "tpot_s" in pp["import_missing"] and "ttft_s" in tg["import_missing"]  # never guessed
    assert pp["tpot_s_n"] == 0 and tg.get("ttft_s_mean") is None


def test_llama_bench_jsonl_of_a_model_the_zoo_cannot_name_needs_model():
    with pytest.raises(UsageError, match="give --model"):
        import_file(FIXTURES / "llama-bench-tiny-qwen3.jsonl")
    recs = import_file(FIXTURES / "llama-bench-tiny-qwen3.jsonl", model="tiny-qwen3")
    assert [(r["workload"], r["dtype"]) for r in recs] == [("pp64", "fp32"), ("tg16", "fp32")]


def test_vllm_bench_serve_detailed_gives_per_request_statistics():
    (rec,) = import_file(FIXTURES / "vllm-bench-llama-server-c2.json", engine="llama.cpp")
    raw = json.loads((FIXTURES / "vllm-bench-llama-server-c2.json").read_text())
    assert rec["kind"] == "serve" and rec["workload"] == "pp64+tg32 serve@c2" and rec["serve_concurrency"] == 2
    assert rec["serve_ok"] == 8 and rec["ttft_s_n"] == 8
    assert rec["ttft_s_mean"] == pytest.approx(raw["mean_ttft_ms"] / 1e3, rel=1e-6)  # the same requests
    # vLLM's TPOT divides the whole request latency (to the stream's end) less TTFT; chipbench's ends at
    # the last token: slightly less, never more
    assert raw["mean_tpot_ms"] / 1e3 * 0.95 <= rec["tpot_s_mean"] <= raw["mean_tpot_ms"] / 1e3
    assert rec["serve_output_tok_per_s"] == pytest.approx(raw["output_throughput"])
    assert rec["dtype"] == "unknown" and "dtype" in rec["import_missing"] and rec["weight_bytes"] is None
    assert "device_name" in rec["import_missing"] and rec["device_name"] is None


def test_chipbench_import_writes_valid_records_and_refuses_what_it_cannot_read(tmp_path, capsys):
    out = tmp_path / "imported.jsonl"
    args = [
        "import",
        str(FIXTURES / "llama-bench-qwen3-0.6b-bf16.json"),
        str(FIXTURES / "vllm-bench-llama-server-c2.json"),
    ]
    assert main([*args, "--device", "AMD EPYC", "--dtype", "bf16", "--peak-gbps", "50", "--out", str(out)]) == 0
    recs = read_records(out)
    assert len(recs) == 3 and recs[1].get("measured_mbu") is None  # no measured ceilings: the given peak's share
    assert 0 < recs[1]["spec_mbu"] < 1  # against the given 50 GB/s
    assert "left null" in capsys.readouterr().err
    bad = tmp_path / "other.json"
    bad.write_text('{"hello": 1}')
    assert main(["import", str(bad), "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "not a result file chipbench reads" in capsys.readouterr().err


def test_guidellm_json_gives_one_serving_record_per_benchmark_from_each_requests_timings():
    (rec,) = import_file(FIXTURES / "guidellm-llama-server-c2.json")
    raw = json.loads((FIXTURES / "guidellm-llama-server-c2.json").read_text())["benchmarks"][0]
    assert rec["import_tool"] == "guidellm" and rec["import_tool_version"] == "0.8.1"
    assert rec["workload"] == "pp64+tg32 serve@c2" and rec["serve_ok"] == 8 and rec["serve_failed"] == 0
    assert rec["ttft_s_mean"] == pytest.approx(
        raw["metrics"]["time_to_first_token_ms"]["successful"]["mean"] / 1e3, rel=1e-3
    )
    assert rec["serve_output_tok_per_s"] == pytest.approx(8 * 32 / raw["duration"])
    # chipbench's TPOT (after the first token) is below GuideLLM's (the whole latency over every token)
    assert rec["tpot_s_mean"] < raw["metrics"]["time_per_output_token_ms"]["successful"]["mean"] / 1e3
    assert {"itl_s", "dtype", "device_name", "engine"} <= set(rec["import_missing"])


def test_one_unreadable_file_costs_the_others_nothing(tmp_path, capsys):
    out = tmp_path / "imported.jsonl"
    files = [FIXTURES / "guidellm-scenario.json", FIXTURES / "llama-bench-qwen3-0.6b-bf16.json"]
    assert main(["import", *map(str, files), "--out", str(out)]) == 2  # the scenario is no result file
    assert "guidellm-scenario.json: not a result file" in capsys.readouterr().err
    assert [r["workload"] for r in read_records(out)] == ["pp512", "tg128"]


def test_aiperf_uses_the_servers_token_counts_and_each_requests_chunks():
    (rec,) = import_file(FIXTURES / "aiperf-llama-server-c2" / "profile_export_aiperf.json")
    raw = json.loads((FIXTURES / "aiperf-llama-server-c2" / "profile_export_aiperf.json").read_text())
    assert rec["import_tool"] == "aiperf" and rec["import_tool_version"] == "0.13.0"
    assert rec["workload"] == "pp64+tg32 serve@c2" and rec["serve_ok"] == 8 and rec["ttft_s_n"] == 8
    assert rec["ttft_s_mean"] == pytest.approx(raw["time_to_first_token"]["avg"] / 1e3, rel=1e-6)
    # AIPerf's tokenizer counted 269 output tokens over the 8 requests; the server generated 256
    assert raw["total_osl"]["avg"] != 256 and rec["serve_output_tok_per_s"] == pytest.approx(
        256 / raw["benchmark_duration"]["avg"]
    )
    assert (
        "the server's counts are used" in rec["import_note"] and "profile_export.jsonl (sha256 " in rec["import_note"]
    )


def test_aiperf_without_its_per_request_file_takes_its_summary_and_says_so(tmp_path):
    lone = tmp_path / "profile_export_aiperf.json"
    lone.write_text((FIXTURES / "aiperf-llama-server-c2" / "profile_export_aiperf.json").read_text())
    (rec,) = import_file(lone)
    assert rec["ttft_s_median"] == pytest.approx(json.loads(lone.read_text())["time_to_first_token"]["p50"] / 1e3)
    assert rec.get("ttft_s_ci95_low") is None and "tpot_s" in rec["import_missing"]
    assert any("profile_export.jsonl" in m for m in rec["import_missing"])


def test_an_mlperf_loadgen_summary_needs_the_model_and_lengths_and_keeps_loadgens_verdict():
    summary = FIXTURES / "mlperf-loadgen-llamacpp-server" / "mlperf_log_summary.txt"
    with pytest.raises(UsageError, match="give --model and --workload ppP\\+tgN"):
        import_file(summary)
    (rec,) = import_file(summary, model="qwen3-0.6b", workload="pp64+tg32", dtype="bf16")
    assert rec["import_tool"] == "mlperf" and rec["import_tool_version"].startswith("6.0.17")
    assert rec["workload"] == "pp64+tg32 loadgen-server@q0.5" and rec["loadgen_valid"] is False
    assert rec["loadgen_recommendations"] == "TTFT constrain not met: Reduce target QPS to improve latency."
    assert rec["ttft_s_p99"] == pytest.approx(4.318422437) and rec["tpot_s_median"] == pytest.approx(0.042830291)
    assert rec["serve_output_tok_per_s"] == pytest.approx(15.49) and "per-query times" in rec["import_missing"]


def test_imported_records_compare_like_any_others(tmp_path, capsys):
    files = [str(FIXTURES / "llama-bench-qwen3-0.6b-bf16.json"), str(FIXTURES / "vllm-bench-llama-server-c2.json")]
    for name in ("run", "base"):
        assert (
            main(
                ["import", *files, "--dtype", "bf16", "--device", "AMD EPYC", "--out", str(tmp_path / f"{name}.jsonl")]
            )
            == 0
        )
    capsys.readouterr()
    assert (
        main(["compare", str(tmp_path / "run.jsonl"), "--baseline", str(tmp_path / "base.jsonl"), "--format", "md"])
        == 0
    )
    table = capsys.readouterr().out
    assert "pp64+tg32 serve@c2" in table and "tg128" in table and "no significant difference" in table


CLAIM = """
[[claim]]
id = "{id}"
statement = "llama.cpp decodes qwen3-0.6b at {value} tokens/s or more on AMD EPYC"
source = "a test"
date = "2026-12"
kind = "metric"
metric = "decode_tok_per_s"
model = "qwen3-0.6b"
dtype = "bf16"
workload = "tg128"
value = {value}
compare = "at_least"
stack = "llama.cpp"
"""


def test_claims_judge_imported_records_by_the_engine_that_ran_them(tmp_path, capsys):
    """A llama-bench file's tg128 (27.5 tokens/s over its 5 repetitions) confirms a claim of 20 tokens/s
    with llama.cpp; a claim of 60 is short of it, which on a device the claim does not name decides
    nothing. The imported stack names the engine (what claims match on), then the tool."""
    out = tmp_path / "imp.jsonl"
    assert main(["import", str(FIXTURES / "llama-bench-qwen3-0.6b-bf16.json"), "--out", str(out)]) == 0
    assert read_records(out)[1]["stack"] == "llama.cpp 0c1e570 (measured by llama-bench build 1 (0c1e570))"
    claims = tmp_path / "claims.toml"
    claims.write_text(CLAIM.format(id="twenty", value=20) + CLAIM.format(id="sixty", value=60))
    capsys.readouterr()
    assert main(["claims", str(claims), str(out), "--format", "json"]) == 0
    verdicts = {v["id"]: v for v in json.loads(capsys.readouterr().out)["claims"]}
    twenty, sixty = verdicts["twenty"], verdicts["sixty"]
    assert twenty["verdict"] == "confirmed" and twenty["numbers"]["measured"] == pytest.approx(27.511, abs=1e-3)
    assert twenty["numbers"]["rounds"] == 5 and "stack: llama.cpp 0c1e570" in twenty["reasons"][-1]
    assert sixty["verdict"] == "inconclusive" and "the claim names no chip" in sixty["reasons"][-1]
