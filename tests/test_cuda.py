"""The CUDA adapter for real; skipped cleanly on machines without a CUDA device (CI has none)."""

import pytest
import torch

from chipbench.backends import torch_loop
from chipbench.backends.base import Generation
from chipbench.judging.trial import run_case
from chipbench.measuring.runner import Case
from chipbench.measuring.selftest import check_all, check_timing_waits
from chipbench.measuring.workload import parse_workload
from chipbench.models.build import build_random
from chipbench.models.zoo import get_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def cuda():
    from chipbench.backends.cuda import create

    return create()


class NoHostCopy:
    """A CUDA loop that hands the clock tokens without waiting for them: the classic bug."""

    def __init__(self, inner):
        self.inner, self.name = inner, "cuda-nowait"

    def __getattr__(self, attr):
        return getattr(self.inner, attr)

    @torch.inference_mode()
    def generate(self, handle, prompt, new_tokens, on_token):
        token, cache = torch_loop.prefill(handle.module, prompt)
        on_token([0] * prompt.shape[0])
        for _ in range(new_tokens - 1):
            token = torch_loop.decode_one_token(handle.module, token, cache)
            on_token([0] * prompt.shape[0])
        return Generation([[0] * prompt.shape[0]] * new_tokens, None)


# One step after a long prompt: the device, not the host's kernel launches, is the bottleneck.
HEAVY = dict(model="qwen3-0.6b", dtype="bf16", prompt_tokens=8192, new_tokens=1)


def test_cuda_timing_waits_for_the_device(cuda):
    for check in check_all(cuda, long_prompt=8192):
        assert check.passed, check.describe()


def test_a_cuda_loop_without_the_host_copy_fails_the_self_test(cuda):
    check = check_timing_waits(NoHostCopy(cuda), **HEAVY)
    assert not check.passed, check.describe()


def test_the_compiled_run_ahead_loop_waits_for_the_device(cuda):
    for check in check_all(cuda, mode="compiled", long_prompt=8192):
        assert check.passed, check.describe()


def test_a_run_ahead_loop_that_skips_its_fence_fails_the_self_test(cuda, monkeypatch):
    # tokens read from pinned memory without waiting for the copy: the host races ahead of the
    # device by every queued step (a replay takes the host well under qwen3-8b's ~4 ms step)
    monkeypatch.setattr(torch_loop, "_wait", lambda pending: pending[0].tolist())
    check = check_timing_waits(cuda, model="qwen3-8b", dtype="bf16", new_tokens=32, prompt_tokens=32, mode="compiled")
    assert not check.passed, check.describe()


def test_a_cuda_case_records_device_facts_and_memory(cuda):
    rec = run_case(cuda, Case("cuda", "tiny-qwen3-moe", "bf16", parse_workload("pp64+tg8"), rounds=2))
    assert rec["status"] == "ok", rec.get("error")
    assert rec["backend_kind"] == "cuda" and rec["device_name"] == torch.cuda.get_device_name()
    assert rec["peak_mem_kind"] == "device_allocated_peak" and rec["peak_mem_bytes"] > 0
    assert rec["env_runtime"].startswith(("cuda", "rocm"))
    # CUDA events time the tokens, and agree with the host stamps
    assert rec["timing_method"].startswith("device events"), rec["timing_method"]
    assert rec["clock_disagreement_s"] < 1e-3
    # the device runs asynchronously to the host: the host's own share of each step is measured
    assert rec["host_step_s"] > 0 and 0 < rec["host_busy_frac"] <= 1 and rec["host_bound"] is not None


@pytest.mark.parametrize("model", ["tiny-qwen3", "tiny-qwen3-moe", "tiny-qwen3-next"])
def test_cuda_compiled_decode_gives_the_eager_tokens_and_a_compile_time(cuda, model):
    rec = run_case(cuda, Case("cuda", model, "bf16", parse_workload("pp32+tg16", batch=2), rounds=2, mode="compiled"))
    assert rec["status"] == "ok", rec.get("error")
    assert rec["exec_path"] == "compiled" and rec["compile_time_s"] > 0 and rec["correct"] is True
    # one graph, replayed as a captured CUDA graph: otherwise the host's launches are measured again
    assert (rec["compiled_graphs"], rec["graph_breaks"], rec["cuda_graphs"]) == (1, 0, "captured"), rec["exec_note"]
    # the host ran a step ahead, and the device's events still agree with its stamps
    assert rec["timing_method"].startswith("device events") and "queued each step" in rec["timing_method"]


def test_cuda_compiled_run_ahead_gives_the_eager_tokens(cuda):
    from chipbench.measuring.workload import prompt_ids

    w, spec = parse_workload("pp16+tg24", batch=2), get_model("tiny-qwen3")
    tokens = {}
    for mode in ("eager", "compiled"):
        handle = cuda.load(spec, "fp32", seed=3, mode=mode)
        try:
            gen = cuda.generate(handle, cuda.prompt(handle, prompt_ids(w, spec.vocab)), w.gen_tokens, lambda t: None)
            tokens[mode] = gen.tokens
            assert gen.ran_ahead == (mode == "compiled") and len(gen.device_times_s) == w.gen_tokens
        finally:
            cuda.close(handle)
    assert tokens["compiled"] == tokens["eager"]


def test_nvml_telemetry_meters_the_gpu(cuda):
    pytest.importorskip("pynvml")
    rec = run_case(cuda, Case("cuda", "tiny-qwen3", "bf16", parse_workload("tg256"), rounds=3))
    assert rec["telemetry_sources"].startswith("nvml") and rec["tele_clock_mhz"] > 0 and rec["tele_power_w"] > 0
    assert rec["energy_j"] is None or rec["energy_per_token_j"] > 0
    # the method: Volta and later boards have NVML's energy counter, checked before it is trusted
    assert rec["energy_meter"] in ("nvml-energy-counter", "nvml-power-integration") and rec["energy_domain"] == "device"
    assert rec["energy_check"].startswith(("passed", "failed")) and rec["host_energy_meter"] in ("rapl", "none")
    if rec["energy_j"] is not None:
        assert 0 < rec["energy_counter_period_s"] < 0.5 and rec["energy_scope"] in ("rounds", "span")
        assert (
            rec["energy_check"].startswith("passed")
            and rec["energy_per_total_token_j"] < rec["energy_per_output_token_j"]
        )
    if rec["energy_scope"] == "rounds" and rec.get("env_device_power_limit_w"):
        # energy is the counter's rise over the rounds alone: the power it implies over the rounds'
        # own time is a board's, above idle and within its limit (gaps counted in would inflate it)
        watts = rec["energy_j"] / sum(rec["e2e_s_samples"])
        assert 20 < watts <= 1.1 * rec["env_device_power_limit_w"], (watts, rec["env_device_power_limit_w"])


def test_nvml_finds_the_card_by_the_uuid_torch_gives():
    pynvml = pytest.importorskip("pynvml")
    from chipbench.measuring.telemetry import nvml_handle

    index = torch.cuda.current_device()
    uuid = str(torch.cuda.get_device_properties(index).uuid)
    pynvml.nvmlInit()
    try:
        found = pynvml.nvmlDeviceGetUUID(nvml_handle(pynvml, index, uuid))
        found = found.decode() if isinstance(found, bytes) else found
        assert found.split("-", 1)[1] == uuid, (found, uuid)  # NVML's GPU-<uuid>: the very card torch runs
    finally:
        pynvml.nvmlShutdown()


def test_the_same_seed_gives_the_same_weights_on_cpu_and_cuda():
    spec = get_model("tiny-qwen3-next")
    a = build_random(spec, torch.float32, "cpu", seed=4).module.state_dict()
    b = build_random(spec, torch.float32, "cuda", seed=4).module.state_dict()
    assert all(torch.equal(a[k], b[k].cpu()) for k in a)


@pytest.mark.parametrize(
    "model,dtype",
    [
        ("tiny-qwen3", "bf16"),
        ("tiny-qwen3-moe", "bf16"),
        ("tiny-qwen3-next", "bf16"),
        ("tiny-qwen3.5-moe", "bf16"),
        ("qwen3-0.6b", "bf16"),
        ("tiny-qwen3", "fp16"),
    ],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_the_cuda_backend_passes_the_correctness_gate(cuda, model, dtype, seed):
    from chipbench.judging.correctness import check

    r = check(cuda, get_model(model), dtype, seed, 64 * 2**30)
    assert r.correct, r
