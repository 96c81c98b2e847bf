"""Intel OpenVINO through the plugin door (issue 46): a vendor runtime that is not PyTorch, shipped
as its own distribution (plugins/chipbench-openvino, installed by the test command), runs the
harness's seeded weights under `pytest --benchmark`, and passes the timing self-test and the
correctness gate against the CPU fp32 reference."""

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

pytest.importorskip(
    "chipbench_openvino", reason="the OpenVINO plugin is not installed: pip install -e ./plugins/chipbench-openvino"
)

ROOT = Path(__file__).resolve().parent.parent


def test_chipbench_lists_the_plugin_with_its_distribution():
    res = subprocess.run(
        [sys.executable, "-m", "chipbench.cli", "list", "backends", "--json"], capture_output=True, text=True, cwd=ROOT
    )
    assert res.returncode == 0, res.stderr
    (entry,) = [b for b in json.loads(res.stdout) if b["backend"] == "openvino"]
    assert entry["status"] == "available" and entry["source"] == "chipbench-openvino" and entry["version"] == "0.1.0"
    table = subprocess.run(
        [sys.executable, "-m", "chipbench.cli", "list", "backends"], capture_output=True, text=True, cwd=ROOT
    ).stdout
    (line,) = [x for x in table.splitlines() if x.startswith("openvino ")]
    assert line.split()[:4] == ["openvino", "chipbench-openvino", "0.1.0", "available"]


def test_pytest_benchmark_runs_openvino_with_the_gate_and_the_self_test(tmp_path):
    out = tmp_path / "r.jsonl"
    res = subprocess.run(
        [
            sys.executable, "-m", "pytest", "--benchmark", "-p", "no:cacheprovider", "--bench-backend=openvino",
            "--bench-model=tiny-qwen3", "--bench-dtype=fp32,bf16", "--bench-workload=pp16,tg8", "--bench-rounds=2",
            "--bench-batch=1,2",
            f"--bench-out={out}",
        ],
        capture_output=True, text=True, cwd=tmp_path, timeout=600, env={**os.environ, "CHIPBENCH_CACHE": str(tmp_path / "cache")},
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    cases = {(r["dtype"], r["workload"], r["batch"]) for r in records}
    assert len(records) == 8 and cases == {(d, w, b) for d in ("fp32", "bf16") for w in ("pp16", "tg8") for b in (1, 2)}
    for r in records:
        assert r["status"] == "ok" and r["backend"] == "openvino" and r["backend_dist"] == "chipbench-openvino"
        assert r["correct"] is True, r["correctness_note"]  # the gate: the same weights as the CPU fp32 reference
        assert r["timing_selftest"].startswith("passed")
        assert r["engine"] == "openvino" and r["engine_version"] == metadata.version("openvino")
        assert (
            f"inference precision {'f32' if r['dtype'] == 'fp32' else 'bf16'}" in r["exec_path"] or r["dtype"] == "bf16"
        )
        assert (
            r["weights_digest"].startswith("blake2b-256:")
            and r["measured_mbu" if r["workload"] == "tg8" else "measured_prefill_mfu"]
        )
    fp32 = {r["weights_digest"] for r in records if r["dtype"] == "fp32"}
    assert len(fp32) == 1  # one export, cached by content, for every case of those weights
