"""The correctness gate never fails a correct backend on ties, and always fails a wrong one."""

import pytest
import torch

from chipbench.judging.correctness import GateResult, _judge, check, reference_layers
from chipbench.judging.trial import run_case
from chipbench.measuring.runner import Case
from chipbench.measuring.workload import parse_workload
from chipbench.publishing import tables
from chipbench.models.zoo import get_model
from tests.adapters import NoisyLogits

HOST = 24 * 2**30


@pytest.mark.parametrize(
    "model", ["tiny-qwen2.5", "tiny-qwen3", "tiny-qwen3-moe", "tiny-qwen3-next", "tiny-qwen3.5", "tiny-qwen3.5-moe"]
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_correct_bf16_backend_passes_ties_included(cpu, model, seed):
    r = check(cpu, get_model(model), "bf16", seed, HOST)
    assert r.correct, r
    assert r.rel_err <= r.tolerance and r.token_agreement == 1.0


def test_fp32_agrees_with_the_fp32_reference_to_rounding(cpu):
    r = check(cpu, get_model("tiny-qwen3-moe"), "fp32", 0, HOST)
    assert r.correct and r.rel_err < 1e-5


@pytest.mark.parametrize("model", ["tiny-qwen3", "tiny-qwen3-moe", "tiny-qwen3-next"])
def test_a_backend_that_adds_noise_to_its_logits_fails(model):
    r = check(NoisyLogits(0.05), get_model(model), "bf16", 0, HOST)
    assert r.correct is False and "relative logits error" in r.note


def test_even_small_noise_beyond_the_dtypes_own_error_fails():
    r = check(NoisyLogits(0.03), get_model("tiny-qwen3"), "bf16", 1, HOST)
    assert r.correct is False


def test_nan_never_passes():
    r = check(NoisyLogits(0.0, nan=True), get_model("tiny-qwen3"), "fp32", 0, HOST)
    assert r.correct is False and r.note == "non-finite logits"


def _swap_top2(ref):
    out = ref.clone()
    out[:, [0, 1]] = ref[:, [1, 0]]
    return out


def test_a_flipped_token_is_a_tie_only_where_the_reference_margin_is_within_the_allowed_error():
    ref = torch.randn(1, 1000, generator=torch.Generator().manual_seed(0))
    ref[0, 0], ref[0, 1] = 6.0, 5.99  # a near-tie at the top: swapping the two is an error of 0.01
    ok = _judge(_swap_top2(ref), ref, tolerance=0.05, router_ties=set(), where="t")
    assert ok.correct and ok.ties == 1 and ok.token_agreement == 1.0
    ref[0, 1] = 5.5  # a clear choice: the swap is still within the 5% relative error...
    bad = _judge(_swap_top2(ref), ref, tolerance=0.05, router_ties=set(), where="t")
    assert bad.rel_err < 0.05  # ...but flips a margin larger than any single logit may move
    assert bad.correct is False and "greedy token" in bad.note


def test_a_routing_tie_is_held_to_a_looser_bound_not_excused():
    ref = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    off = ref + torch.tensor([[0.0, 0.0], [0.05, 0.0]])  # 5% error at position 1
    assert _judge(off, ref, 0.01, router_ties={1}, where="t").correct
    worse = ref + torch.tensor([[0.0, 0.0], [0.5, 0.0]])
    assert _judge(worse, ref, 0.01, router_ties={1}, where="t").correct is False


def test_large_models_get_a_depth_reduced_reference_on_small_hosts():
    assert reference_layers(get_model("qwen3-0.6b"), HOST) is None
    n = reference_layers(get_model("qwen3-8b"), HOST)
    assert 1 <= n < 36
    hybrid = reference_layers(get_model("qwen3-next-80b-a3b"), HOST)
    assert hybrid % 4 == 0 and hybrid >= 4  # keeps whole DeltaNet + attention groups


def test_the_record_and_the_table_mark_a_fast_but_wrong_backend():
    rec = run_case(NoisyLogits(0.05), Case("noisy", "tiny-qwen3", "bf16", parse_workload("tg8"), rounds=2))
    assert rec["status"] == "ok" and rec["correct"] is False and rec["correctness_rel_err"] > 0.02
    assert "WRONG:" in tables.to_markdown(tables.build([rec]))


def test_a_correct_run_records_its_gate(cpu):
    rec = run_case(cpu, Case("cpu", "tiny-qwen3-moe", "bf16", parse_workload("pp16+tg4"), rounds=1))
    assert rec["correct"] is True and rec["correctness_reference"] == "cpu fp32, 2 of 2 layers"
    assert isinstance(GateResult(True, 0, 0, 1, 0, "x").fields()["correct"], bool)


def test_the_reference_is_computed_once_for_every_path_of_a_model(cpu, monkeypatch):
    """Gating eager and compiled (or several batch sizes) of one model reuses the fp32 reference:
    it depends on the model, dtype and seed, not on the backend's path; a wrong path still fails."""
    from chipbench.judging import correctness

    calls = []
    compute = correctness._compute_reference
    monkeypatch.setattr(correctness, "_REFERENCES", {})
    monkeypatch.setattr(correctness, "_compute_reference", lambda *a: calls.append(a[1:]) or compute(*a))
    first = check(cpu, get_model("tiny-qwen3"), "bf16", 4, HOST)
    again = check(cpu, get_model("tiny-qwen3"), "bf16", 4, HOST)
    noisy = check(NoisyLogits(0.05), get_model("tiny-qwen3"), "bf16", 4, HOST)
    other = check(cpu, get_model("tiny-qwen3"), "bf16", 5, HOST)
    assert len(calls) == 2 and [c[2] for c in calls] == [4, 5]  # seeds 4 and 5, once each
    assert first == again and first.correct and noisy.correct is False and other.correct


def test_every_dtype_a_case_may_run_has_a_tolerance_and_a_byte_count():
    from chipbench.judging.correctness import BASE_TOLERANCE
    from chipbench.models.counts import RUN_DTYPES, facts

    f = facts(get_model("qwen3-0.6b"))
    assert set(RUN_DTYPES) <= set(BASE_TOLERANCE)
    for d in RUN_DTYPES:
        assert 0.4 * f.params_total < f.weight_bytes(d) <= 4 * f.params_total and f.kv_bytes_per_token(d) > 0
