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


def test_a_device_openvino_does_not_have_leaves_the_backend_unavailable_with_the_devices_it_has():
    env = {**os.environ, "CHIPBENCH_OPENVINO_DEVICE": "NPU.7"}
    res = subprocess.run(
        [sys.executable, "-m", "chipbench.cli", "list", "backends", "--json"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    (entry,) = [b for b in json.loads(res.stdout) if b["backend"] == "openvino"]
    assert entry["status"].startswith("unavailable: OpenVINO has no NPU.7 device here (it has: CPU")
    assert "$CHIPBENCH_OPENVINO_DEVICE picks one" in entry["status"]


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
    for r in records:
        assert_cache_counted_as_kept(r)


def assert_cache_counted_as_kept(r):
    """The caches are declared fp32 at the graph's boundary, but OpenVINO keeps them in its inference
    precision: exec_path says which, and the record's cache bytes count that."""
    from chipbench.models.counts import DTYPE_BYTES, facts
    from chipbench.models.zoo import get_model

    kept = {"f32": "fp32", "bf16": "bf16"}[r["exec_path"].split("inference precision ")[1].split(",")[0]]
    assert f"key/value caches kept as {kept} OpenVINO state" in r["exec_path"]
    per_byte = facts(get_model(r["model"])).kv_bytes_per_token_per_dtype_byte
    assert r["kv_bytes_per_token"] == per_byte * DTYPE_BYTES[kept]


COMPRESSED_AS = {
    "int8_sym": "i8 per row",
    "int8_asym": "u8 per row",
    "int4_sym": "i4 groups of",
    "int4_asym": "u4 groups of",
}


def test_pytest_benchmark_runs_every_weight_compression_with_its_real_bytes_and_the_gate(tmp_path):
    """NNCF's four modes, beside fp32, through `pytest --benchmark`: each is gated against the CPU
    fp32 reference with its own floor, says in exec_path what the compressed model holds, and
    counts the compressed IR's real bytes, from the one fp32 export of the harness's weights."""
    pytest.importorskip(
        "nncf", reason="weight compression needs NNCF: pip install './plugins/chipbench-openvino[compress]'"
    )
    out = tmp_path / "r.jsonl"
    res = subprocess.run(
        [
            sys.executable, "-m", "pytest", "--benchmark", "-p", "no:cacheprovider", "--bench-backend=openvino",
            "--bench-model=tiny-qwen3", f"--bench-dtype=fp32,{','.join(COMPRESSED_AS)}", "--bench-workload=tg8",
            "--bench-rounds=2", f"--bench-out={out}",
        ],
        capture_output=True, text=True, cwd=tmp_path, timeout=600, env={**os.environ, "CHIPBENCH_CACHE": str(tmp_path / "cache")},
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "Weight Compression" not in res.stdout + res.stderr  # NNCF's progress bar is not the run's output
    records = {r["dtype"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(records) == {"fp32", *COMPRESSED_AS}
    for dtype, r in records.items():
        assert r["status"] == "ok" and r["correct"] is True, r.get("correctness_note") or r.get("error")
        assert r["timing_selftest"].startswith("passed") and r["measured_mbu"]
        if dtype != "fp32":
            assert f"{dtype} weights by NNCF {metadata.version('nncf')} ({COMPRESSED_AS[dtype]}" in r["exec_path"]
            assert r["correctness_tolerance"] >= {"int8": 0.02, "int4": 0.1}[dtype[:4]]
    assert len({r["weights_digest"] for r in records.values()}) == 1  # every mode compresses the same export
    for r in records.values():
        assert_cache_counted_as_kept(r)
    fp32 = records["fp32"]["weight_bytes"]
    assert (
        records["int4_sym"]["weight_bytes"]
        < records["int4_asym"]["weight_bytes"]
        < records["int8_asym"]["weight_bytes"]
    )
    assert records["int8_sym"]["weight_bytes"] < 0.3 * fp32  # a quarter, plus the scales and small fp32 tensors


def test_a_compressed_model_computes_with_its_decompressed_weights(tmp_path, monkeypatch):
    """The gate's floor for a compressed dtype is the model carrying the weights OpenVINO reads back
    from the compressed IR: what ran. OpenVINO's logits lie far closer to that model's than to the
    fp32 model's, so a decompression read wrongly (or weights compressed other than the ones run)
    would show."""
    pytest.importorskip("nncf", reason="weight compression needs NNCF")
    import torch

    from chipbench.backends import torch_loop
    from chipbench.models.build import build_random
    from chipbench.models.zoo import get_model
    from chipbench_openvino import create

    monkeypatch.setenv("CHIPBENCH_CACHE", str(tmp_path))
    backend, spec = create(), get_model("tiny-qwen3")
    ids = torch.randint(0, spec.vocab, (1, 24), generator=torch.Generator().manual_seed(3))
    handle = backend.load(spec, "int4_sym", seed=0)
    try:
        ran = backend.teacher_forced_logits(handle, ids, 16)
    finally:
        backend.close(handle)
    own = torch_loop.teacher_forced_logits(backend.reference_model(spec, "int4_sym", 0, None), ids, 16)
    fp32 = torch_loop.teacher_forced_logits(build_random(spec, torch.float32, "cpu", seed=0).module, ids, 16)

    def err(a, b):
        return float(((a - b).norm(dim=-1) / b.norm(dim=-1)).max())

    assert err(ran, own) < err(ran, fp32) / 3, (err(ran, own), err(ran, fp32))
    assert err(own, fp32) > 0.01  # int4 really changed the weights
    assert backend.reference_model(spec, "bf16", 0, None) is None  # an uncompressed dtype: torch's own model
