"""The correctness gate: does the backend compute the model right, or is it fast but wrong?

The same seeded weights and prompt run through a CPU fp32 reference (a depth-reduced copy when
the full model would not fit a quarter of the host's memory; the record says so). The reference
generates greedily; then the backend is fed the reference's tokens (teacher forcing) through its
own prefill and decode path, and the two logits are compared at each generated position.

A correct backend in a low-precision dtype differs from fp32 by what that dtype does to this
model (1-2% in bf16 for a 28-layer model), so the bound is the larger of the dtype's base
tolerance and twice the error the same dtype shows on the CPU. Random weights give near-tied
logits and, in MoE models, near-tied router scores: a greedy token that differs where the
reference's top-1 margin is within twice the logit error (observed, capped by what the tolerance
allows) is a tie; a position where a
router's k-th and (k+1)-th expert scores are within the dtype's reach is a routing tie, held to
a looser bound (ten times) rather than excused. NaN never passes.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

import chipbench

from chipbench.backends import torch_loop
from chipbench.backends.base import capability
from chipbench.measuring import env
from chipbench.models.build import WEIGHTS_SCHEME, build_random, parse_dtype
from chipbench.models.counts import facts
from chipbench.models.zoo import ModelSpec
from chipbench.stash import cache_root, fresh

BASE_TOLERANCE = {
    "fp32": 1e-4,
    "bf16": 1e-2,
    "fp16": 2e-3,  # relative logits error
    # llama.cpp's quantised weights (they also quantise activations for the matmul)
    "q8_0": 2e-2,
    "q6_K": 3e-2,
    "q5_K_M": 5e-2,
    "q4_K_M": 1e-1,
    "q4_0": 1e-1,
    # weight-only compression (NNCF's modes, as OpenVINO runs them: the CPU also quantises the
    # activations of each product on the fly, in groups of 32, as llama.cpp does)
    "int8_sym": 2e-2,
    "int8_asym": 2e-2,
    "int4_sym": 1e-1,
    "int4_asym": 1e-1,
}
PROMPT_TOKENS, CHECKED_TOKENS = 32, 8
HOST_SHARE = 0.25  # of host RAM the fp32 reference may take
TIE_LOOSENING = 10


@dataclass(frozen=True)
class GateResult:
    correct: bool | None  # None: the backend cannot be checked (says why)
    rel_err: float | None  # max relative logits error over non-tie positions
    tolerance: float | None
    token_agreement: float | None  # greedy tokens equal to the reference's, ties counted as equal
    ties: int  # positions excused as logit ties or held to the looser routing-tie bound
    reference: str  # what the reference was
    note: str = ""

    def fields(self) -> dict:
        return {
            "correct": self.correct,
            "correctness_rel_err": self.rel_err,
            "correctness_tolerance": self.tolerance,
            "correctness_token_agreement": self.token_agreement,
            "correctness_ties": self.ties,
            "correctness_reference": self.reference,
            "correctness_note": self.note or None,
        }


def reference_layers(spec: ModelSpec, host_bytes: int) -> int | None:
    """None when the full fp32 model fits the host share, else the depth of the reduced copy."""
    f = facts(spec)
    if f.params_total * 4 <= HOST_SHARE * host_bytes:
        return None
    per_layer = (f.params_total - 2 * f.embedding_params) * 4 / spec.layers
    fixed = 2 * f.embedding_params * 4
    n = int((HOST_SHARE * host_bytes - fixed) // per_layer)
    step = spec.full_attention_interval or 1  # hybrids keep at least one attention layer
    return max(step, n // step * step) if n < spec.layers else None


class RouterMargins:
    """Forward hooks on every MoE router: the smallest k-th vs (k+1)-th logit gap per token."""

    def __init__(self, model):
        self.gaps: list[torch.Tensor] = []
        self.scales: list[torch.Tensor] = []
        self.handles = [
            m.register_forward_hook(self._hook) for m in model.modules() if type(m).__name__.endswith("TopKRouter")
        ]

    def _hook(self, module, args, output):
        logits = output[0].float()  # [tokens, experts]
        top = logits.topk(module.top_k + 1, dim=-1).values
        self.gaps.append((top[:, -2] - top[:, -1]).cpu())
        self.scales.append(logits.abs().amax(dim=-1).cpu())

    def tied_steps(self, reach: float) -> set[int]:
        """Forward calls (call 0 the prefill, then one per fed token) in which some router's
        k-th and (k+1)-th logits are closer than `reach` times its largest logit. Only each
        call's last token counts: it is the one whose logits are checked."""
        layers = max(1, len(self.handles))
        for h in self.handles:
            h.remove()
        return {
            i // layers
            for i, (gap, scale) in enumerate(zip(self.gaps, self.scales))
            if bool(gap[-1] <= reach * scale[-1])
        }


def _cpu_model(spec: ModelSpec, dtype: str, seed: int, layers: int | None):
    return build_random(spec, parse_dtype(dtype), "cpu", seed=seed, layers=layers).module


def _dtype_model(backend, spec: ModelSpec, dtype: str, seed: int, layers: int | None):
    """A CPU model carrying what `dtype` does to the weights: the backend's own when it has one
    (llama.cpp: its quantised file's weights, dequantised), else torch's model in that dtype."""
    own = capability(backend, "reference_model")
    model = own(spec, dtype, seed, layers) if own is not None else None
    return model if model is not None else _cpu_model(spec, dtype, seed, layers)


def _backend_logits(backend, spec, dtype, seed, layers, handle, seq) -> torch.Tensor | str:
    """The backend's teacher-forced logits: on the loaded model when it is the full one, else on
    a depth-reduced copy it loads for the purpose (a string says why it could not)."""
    if layers is None and handle is not None:
        return backend.teacher_forced_logits(handle, seq, PROMPT_TOKENS)
    mode = capability(handle, "exec_path") or "eager"
    try:
        own = backend.load(
            spec,
            dtype,
            seed=seed,
            **({"layers": layers} if layers is not None else {}),
            **({"mode": mode} if mode != "eager" else {}),
        )
    except TypeError:
        return "the backend cannot load a depth-reduced copy (its load() takes no layers)"
    try:
        return backend.teacher_forced_logits(own, seq, PROMPT_TOKENS)
    finally:
        backend.close(own)


def check(backend, spec: ModelSpec, dtype: str, seed: int, host_bytes: int, handle=None) -> GateResult:
    try:
        return _check(backend, spec, dtype, seed, host_bytes, handle)
    finally:
        env.release_host_memory()


# The reference side of a gate (the fp32 run, its tokens and router ties, the dtype's own error
# on the CPU) depends only on the model, dtype, seed, depth and the backend's reference weights,
# not on the backend's path: a run that gates eager and compiled, or several batch sizes, of one
# model computes it once. Small (a few MB of logits each), so a few are kept.
_REFERENCES: dict[tuple, tuple] = {}
_KEPT_REFERENCES = 4


def _reference(backend, spec: ModelSpec, dtype: str, seed: int, layers: int | None) -> tuple:
    """(seq, l_ref, router ties, the dtype's own error floor), computed once per process, and kept
    on disk for the next run of the same software (_kept_reference)."""
    own = capability(backend, "reference_model")
    key = (spec.name, dtype, seed, layers, type(backend).__qualname__ if own is not None else None)
    if key not in _REFERENCES:
        if len(_REFERENCES) >= _KEPT_REFERENCES:
            _REFERENCES.pop(next(iter(_REFERENCES)))
        facts = _reference_facts(spec, key)
        kept = _kept_reference(facts)
        if kept is None:
            kept = _compute_reference(backend, spec, dtype, seed, layers)
            _keep_reference(facts, kept)
        _REFERENCES[key] = kept
    return _REFERENCES[key]


# A reference is a function of the model's architecture, dtype, seed, depth and reference backend,
# and of the software that builds and runs it (torch, transformers, chipbench's own weights and
# loop): kept on disk under exactly those facts for REFERENCE_KEPT_S, so a run on the same software
# does not build the fp32 model again. --fresh (or $CHIPBENCH_FRESH) computes it again.
REFERENCE_KEPT_S = 30 * 86400


def _reference_facts(spec: ModelSpec, key: tuple) -> dict:
    import transformers

    return {
        "spec": repr(spec),
        "key": list(key),
        "prompt": PROMPT_TOKENS,
        "checked": CHECKED_TOKENS,
        "tolerances": BASE_TOLERANCE,
        "weights": WEIGHTS_SCHEME,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "harness": env.provenance(0)["git_commit"] or chipbench.__version__,
    }


def _reference_path(facts: dict) -> Path:
    digest = hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()[:24]
    return cache_root() / "reference" / f"{digest}.safetensors"


def _kept_reference(facts: dict) -> tuple | None:
    """A kept reference for exactly these facts, young enough; None otherwise (or unreadable)."""
    if fresh():
        return None
    path = _reference_path(facts)
    try:
        if not 0 <= time.time() - path.stat().st_mtime < REFERENCE_KEPT_S:
            return None
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if json.loads(meta.get("facts", "null")) != json.loads(json.dumps(facts, sort_keys=True, default=str)):
                return None
            seq, l_ref = f.get_tensor("seq"), f.get_tensor("l_ref")
        ties = {int(i) for i in json.loads(meta["ties"])}
        return seq, l_ref, ties, float(meta["floor"])
    except Exception:  # absent, another version's, or damaged: computed again
        return None


def _keep_reference(facts: dict, ref: tuple) -> None:
    from safetensors.torch import save_file

    seq, l_ref, ties, floor = ref
    path = _reference_path(facts)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.part")
        meta = {
            "facts": json.dumps(facts, sort_keys=True, default=str),
            "ties": json.dumps(sorted(ties)),
            "floor": repr(float(floor)),
        }
        save_file({"seq": seq.contiguous(), "l_ref": l_ref.contiguous()}, str(tmp), metadata=meta)
        tmp.replace(path)
    except Exception:  # a cache that cannot be written costs the reuse, never the gate
        pass


def _compute_reference(backend, spec: ModelSpec, dtype: str, seed: int, layers: int | None) -> tuple:
    ref = _cpu_model(spec, "fp32", seed, layers)
    prompt = torch.randint(0, spec.vocab, (1, PROMPT_TOKENS), generator=torch.Generator().manual_seed(seed))
    steps = torch_loop.generate(ref, prompt, CHECKED_TOKENS, lambda t: None)
    seq = torch.cat([prompt, torch.tensor(steps).T], dim=1)  # [1, P + K]
    hooks = RouterMargins(ref)
    l_ref = torch_loop.teacher_forced_logits(ref, seq, PROMPT_TOKENS)
    ref_router_ties = hooks.tied_steps(2 * BASE_TOLERANCE[dtype])
    # ^ forward call 0 is the prefill (the first checked position); call i, position i
    del ref
    floor = 0.0
    strict = [i for i in range(len(l_ref)) if i not in ref_router_ties]
    if dtype != "fp32" and strict:  # what this dtype alone does to this model, on the CPU
        same = _dtype_model(backend, spec, dtype, seed, layers)
        err = _rel_err(torch_loop.teacher_forced_logits(same, seq, PROMPT_TOKENS), l_ref)
        floor = float(err[strict].max())  # routing ties are judged apart, so left out here too
        del same
    return seq, l_ref, ref_router_ties, floor


def _check(backend, spec: ModelSpec, dtype: str, seed: int, host_bytes: int, handle=None) -> GateResult:
    if capability(backend, "teacher_forced_logits") is None:
        return GateResult(None, None, None, None, 0, "-", "the backend offers no teacher_forced_logits()")
    layers = reference_layers(spec, host_bytes)
    where = f"cpu fp32, {layers or spec.layers} of {spec.layers} layers"
    seq, l_ref, ref_router_ties, floor = _reference(backend, spec, dtype, seed, layers)
    tolerance = max(BASE_TOLERANCE[dtype], 2 * floor)
    l_b = _backend_logits(backend, spec, dtype, seed, layers, handle, seq)
    if isinstance(l_b, str):
        return GateResult(None, None, tolerance, None, 0, where, l_b)
    if capability(backend, "teacher_forced_kind") == "logprobs":  # vLLM: log-softmax, not logits
        l_b, l_ref = _centred(l_b), _centred(l_ref)
    return _judge(l_b, l_ref, tolerance, ref_router_ties, where)


def _centred(logits: torch.Tensor) -> torch.Tensor:
    """Logits or log-probabilities with each row's mean removed: the two differ by a constant per
    row (the log-sum-exp), so centred they compare as logits do."""
    return logits - logits.mean(dim=-1, keepdim=True)


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).norm(dim=-1) / b.norm(dim=-1)


def _judge(l_b, l_ref, tolerance, router_ties: set[int], where: str) -> GateResult:
    if not torch.isfinite(l_b).all():
        return GateResult(False, float("inf"), tolerance, None, 0, where, "non-finite logits")
    rel = _rel_err(l_b, l_ref)
    abs_err = (l_b - l_ref).abs().amax(dim=-1)
    # The largest single-logit error the tolerance allows: its rms share, times ~4 sigma (the max
    # of a vocabulary's worth of errors). A flip needs an error of half the margin, so a flip is a
    # tie only when the margin is within twice the error that was both observed and allowed.
    allowed = 4 * tolerance * l_ref.norm(dim=-1) / l_ref.shape[-1] ** 0.5
    top2 = l_ref.topk(2, dim=-1).values
    margin = top2[:, 0] - top2[:, 1]
    mismatch = l_b.argmax(-1) != l_ref.argmax(-1)
    logit_tie = mismatch & (margin <= 2 * torch.minimum(abs_err, allowed))
    routing = torch.tensor([i in router_ties for i in range(len(rel))])
    strict = ~routing
    bad_err = bool((rel[strict] > tolerance).any()) or bool((rel[routing] > TIE_LOOSENING * tolerance).any())
    bad_tokens = mismatch & ~logit_tie & ~routing
    agreement = 1.0 - float(bad_tokens.float().mean())
    worst = float(rel[strict].max()) if strict.any() else float(rel.max())
    ties = int((logit_tie | routing).sum())
    correct = not bad_err and not bool(bad_tokens.any())
    note = (
        ""
        if correct
        else (
            f"relative logits error {float(rel.max()):.3g} over the bound {tolerance:.3g}"
            if bad_err
            else f"{int(bad_tokens.sum())} greedy token(s) differ beyond ties"
        )
    )
    return GateResult(correct, worst, tolerance, agreement, ties, where, note)
