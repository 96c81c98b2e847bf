"""A claim against physics, with no hardware: the best a chip's sheet allows for a metric (the
roofline), a case that cannot run at all (its context past the model's maximum, or weights and
KV cache past the chips' memory), and whether a model fits."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chipbench.measuring.metrics import METRICS
from chipbench.measuring.workload import parse_workload
from chipbench.models.counts import facts, flops_per_token, least_decode_step_bytes, prefill_flops
from chipbench.models.zoo import get_model

if TYPE_CHECKING:
    from chipbench.judging.claims import Case, Claim

# metrics a prefill sets: a decode's host-boundness and its bandwidth share say nothing of them
PREFILL_METRICS = ("prefill_tok_per_s", "ttft_s")


def roofline_bound(case: Case, metric: str) -> tuple[float | None, str]:
    """The best value physics allows for `metric` on this case and chip, with how it was derived."""
    chip = case.chip
    if chip is None:
        return None, "no chip named"
    spec = get_model(case.model)
    w = parse_workload(case.workload, batch=case.batch)
    n = case.chips  # a split case reads and computes on every chip at once at best: the peaks add up
    bw, peak = (x * n if x else None for x in (chip.bandwidth_bytes_per_s, chip.peak_flops(case.dtype)))
    context = w.prompt_tokens + w.gen_tokens // 2
    step_bytes = least_decode_step_bytes(spec, case.dtype, context, case.batch)  # physics: the fewest bytes
    step_flops = case.batch * flops_per_token(spec, context)
    times = [t for t in ((step_bytes / bw) if bw else None, (step_flops / peak) if peak else None) if t]
    prefill = prefill_flops(spec, w.prompt_tokens, case.batch)
    if not times and not peak:
        return None, f"the {chip.name} sheet publishes neither memory bandwidth nor FLOP/s"
    conf = " (spec row confidence ?: sources conflict)" if chip.confidence == "?" else ""
    conf += f" ({n} chips' peaks summed)" if n > 1 else ""
    how = (
        f"{step_bytes / 1e9:.2f} GB per decode step at least, over {f'{bw / 1e9:g}' if bw else '?'} GB/s, "
        f"{step_flops / 1e9:.1f} GFLOP over {f'{peak / 1e12:g}' if peak else '?'} TFLOP/s{conf}"
    )
    best_tpot = max(times) if times else None
    if metric == "decode_tok_per_s":
        return (case.batch / best_tpot if best_tpot else None), how
    if metric == "tpot_s":
        return best_tpot, how
    if metric in PREFILL_METRICS:
        if not peak:
            return None, f"the {chip.name} sheet publishes no {case.dtype} FLOP/s"
        best_ttft = prefill / peak
        how = f"{prefill / 1e12:.2f} TFLOP of prefill over {peak / 1e12:g} TFLOP/s{conf}"
        return (case.batch * w.prompt_tokens / best_ttft if metric == "prefill_tok_per_s" else best_ttft), how
    return None, f"no roofline for {metric}"


def breaks(claim_value: float, bound: float, metric: str, compare: str) -> bool:
    higher = METRICS[metric][1]
    if compare == "at_most" and higher or compare == "at_least" and not higher:
        return False  # a claimed ceiling on speed, or floor on latency, cannot break physics
    return claim_value > bound if higher else claim_value < bound


def impossible(case: Case) -> list[str]:
    """Why a metric case cannot run at all, whatever the speed: a context past the model's maximum,
    or weights and KV cache (at the workload's full context, for every sequence of the batch) that
    the claimed number of chips cannot hold. Empty when it can, or when the sheet has no memory."""
    spec = get_model(case.model)
    w = parse_workload(case.workload, batch=case.batch)
    context = w.prompt_tokens + w.gen_tokens
    out = []
    if context > spec.max_pos:
        out.append(f"{case.workload} needs a context of {context} tokens; {case.model}'s maximum is {spec.max_pos}")
    chip = case.chip
    if chip is not None and chip.memory_bytes:
        f = facts(spec)
        weights = f.weight_bytes(case.dtype)
        kv = case.batch * (context * f.kv_bytes_per_token(case.dtype) + f.recurrent_state_bytes)
        have = chip.memory_bytes * case.chips
        if weights + kv > have:
            on = f"one {chip.name}" if case.chips == 1 else f"{case.chips} x {chip.name} together"
            out.append(
                f"does not fit: {case.model} in {case.dtype} needs {weights / 1e9:.1f} GB of weights + "
                f"{kv / 1e9:.2f} GB of KV cache ({case.batch} x {context} tokens) against {have / 2**30:g} GiB "
                f"({have / 1e9:.1f} GB) on {on}"
            )
    return out


def fits(claim: Claim) -> tuple[bool, str, dict]:
    case = claim.case
    f = facts(get_model(case.model))
    weights = f.weight_bytes(case.dtype)
    kv = claim.context * f.kv_bytes_per_token(case.dtype) + (f.recurrent_state_bytes if claim.context else 0)
    need, have = weights + kv, case.chip.memory_bytes * case.chips
    numbers = {"weights_gb": weights / 1e9, "kv_gb": kv / 1e9, "memory_gb": have / 1e9, "memory_gib": have / 2**30}
    on = f"one {case.chip.name}" if case.chips == 1 else f"{case.chips} x {case.chip.name} together"
    text = (
        f"{case.model} in {case.dtype}: {weights / 1e9:.1f} GB of weights"
        + (f" + {kv / 1e9:.2f} GB of cache for {claim.context} tokens" if claim.context else "")
        + f" against {have / 2**30:g} GiB ({have / 1e9:.1f} GB) on {on}"
    )
    return need <= have, text, numbers
