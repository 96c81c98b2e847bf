"""The roofline of a case: how close a measured number is to the chip's physical limit.

A decode step must read the active weights once plus every sequence's KV cache (and, for the
hybrid models, recurrent state) at that context length, and do about 2 FLOPs per active
parameter per token plus attention. Over the chip's peak bandwidth and FLOP/s, that gives the
fastest TPOT physics allows; the measured TPOT over it is the model bandwidth utilisation
(MBU) and the FLOP utilisation (MFU). Prefill is judged by MFU: its FLOPs over TTFT.

Peaks come from the spec row when the device has one, and from measured ceilings always when
they were measured. A share above 100% is not a result: it is flagged as a measurement error.
"""

from __future__ import annotations

import dataclasses

from chipbench.errors import UsageError
from chipbench.judging.chips import load_chips
from chipbench.measuring.workload import parse_workload
from chipbench.models.counts import DTYPE_BYTES, QUANT_BYTES, decode_step_bytes, facts, flops_per_token, prefill_flops
from chipbench.models.zoo import get_model


def case_work(rec: dict) -> dict:
    """Bytes and FLOPs of a case's decode step (averaged over the generation) and of its prefill."""
    spec = get_model(rec["model"])
    b, p, n, dtype = rec["batch"], rec.get("prompt_tokens"), rec.get("gen_tokens"), rec["dtype"]
    if dtype not in DTYPE_BYTES and dtype not in QUANT_BYTES:
        raise UsageError(
            f"no analytic byte counts for dtype {dtype!r}; known: {', '.join((*DTYPE_BYTES, *QUANT_BYTES))}"
        )
    if p is None or n is None:  # the lengths follow from the workload's name
        w = parse_workload(rec["workload"])
        p, n = w.prompt_tokens, w.gen_tokens
    context = p + n / 2  # decode step i reads the cache of p + i tokens
    f = facts(spec)
    # the record's weight and cache bytes when it has them (an engine's real file bytes, a cache kept
    # in another dtype than the case's), else the analytic ones
    weights = rec.get("weight_bytes") or f.weight_bytes(dtype)
    active = rec.get("active_weight_bytes") or f.active_weight_bytes(dtype)
    kv = rec.get("kv_bytes_per_token") or f.kv_bytes_per_token(dtype)
    return {
        "decode_bytes_per_step": decode_step_bytes(spec, dtype, round(context), b)
        - f.active_weight_bytes(dtype)
        + active
        + b * round(context) * (kv - f.kv_bytes_per_token(dtype)),
        "decode_flops_per_step": b * flops_per_token(spec, round(context)),
        # prefill touches every expert once the batch of tokens is large: all weights are read
        "prefill_bytes": weights + b * p * kv,
        "prefill_flops": prefill_flops(spec, p, b),
    }


def _shares(work: dict, rec: dict, bandwidth: float | None, flops: float | None, tag: str) -> dict:
    """Utilisations and best-case latencies against one set of peaks (bytes/s, FLOP/s)."""
    out = {}
    tpot = rec.get("tpot_s_median")
    ttft = rec.get("ttft_s_median") if rec.get("kind") != "decode" else None  # tgN's prompt is 1 token
    if bandwidth:
        if tpot:
            out[f"{tag}_mbu"] = work["decode_bytes_per_step"] / tpot / bandwidth
        out[f"{tag}_best_tpot_s"] = work["decode_bytes_per_step"] / bandwidth
    if flops:
        if tpot:
            out[f"{tag}_decode_mfu"] = work["decode_flops_per_step"] / tpot / flops
        if ttft:
            out[f"{tag}_prefill_mfu"] = work["prefill_flops"] / ttft / flops
        out[f"{tag}_best_ttft_s"] = max(
            work["prefill_flops"] / flops, work["prefill_bytes"] / bandwidth if bandwidth else 0
        )
        if f"{tag}_best_tpot_s" in out:
            out[f"{tag}_best_tpot_s"] = max(out[f"{tag}_best_tpot_s"], work["decode_flops_per_step"] / flops)
    if f"{tag}_best_tpot_s" in out:
        out[f"{tag}_best_decode_tok_per_s"] = rec["batch"] / out[f"{tag}_best_tpot_s"]
    return out


def roofline_fields(rec: dict, chip=None, ceilings=None, beside=None) -> dict:
    """Roofline fields for an ok record; `chip` is a spec row, `ceilings` the run's measured ones,
    `beside` those measured right after this case (any may be None)."""
    work = case_work(rec)
    out = dict(work)
    tpot = rec.get("tpot_s_median")
    if tpot:
        out["achieved_gb_per_s"] = work["decode_bytes_per_step"] / tpot / 1e9
        out["achieved_decode_tflops"] = work["decode_flops_per_step"] / tpot / 1e12
    if rec.get("ttft_s_median"):
        out["achieved_prefill_tflops"] = work["prefill_flops"] / rec["ttft_s_median"] / 1e12
    out["chip"] = chip.name if chip else None
    out["chip_confidence"] = chip.confidence if chip else None
    chips = (
        rec.get("env_chips") or 1
    )  # a split case reads env_chips chips at once (chipbench.backends.distributed.chips)
    ceilings, beside = _for_chips(ceilings, chips), _for_chips(beside, chips)
    if chip:
        bandwidth, flops = chip.bandwidth_bytes_per_s, chip.peak_flops(rec["dtype"])
        out.update(_shares(work, rec, bandwidth and bandwidth * chips, flops and flops * chips, "spec"))
    if ceilings:
        out["ceiling_gb_per_s"] = ceilings.bandwidth_gb_per_s
        out["ceiling_tflops"] = ceilings.tflops
        out["ceiling_matmul_dtype"] = getattr(ceilings, "matmul_dtype", None)  # a plugin's own kind may not say
        # the case's dtype's own product only: an engine's quantised type is measured as bf16 (torch has no such product)
        out["ceiling_tflops_in_dtype"] = (
            getattr(ceilings, "tflops_in_dtype", None) if getattr(ceilings, "dtype", None) == rec.get("dtype") else None
        )
        out["ceiling_gb_per_s_median"] = ceilings.bandwidth_gb_per_s_median
        out["ceiling_tflops_median"] = ceilings.tflops_median
        out["ceiling_window_s"] = ceilings.window_s
        out["ceiling_kept_from"] = getattr(ceilings, "kept_from", None)
        out["ceiling_revalidation"] = getattr(ceilings, "revalidation", None)
        out.update(_shares(work, rec, ceilings.bandwidth_gb_per_s * 1e9, ceilings.tflops * 1e12, "measured"))
    against_beside = {}
    if beside:
        out["ceiling_beside_gb_per_s"] = beside.bandwidth_gb_per_s
        out["ceiling_beside_tflops"] = beside.tflops
        against_beside = _shares(work, rec, beside.bandwidth_gb_per_s * 1e9, beside.tflops * 1e12, "measured")
    out["roofline_flag"] = _flag(
        out,
        ceilings.unsteady() if ceilings else [],
        against_beside,
        mfu_limit=QUANTISED_MFU_LIMIT if rec.get("dtype") in QUANT_BYTES else 1.0,
    )
    return out


def recount_prefill(rec: dict) -> bool:
    """Brings a record made before 2026-12-03 to today's prefill count; True when it changed it.

    Those records counted the output head's product for every prompt token, where a prefill
    computes it once per sequence (chipbench.models.counts.prefill_flops): qwen3-0.6b's pp512 FLOPs, and so
    its prefill MFU, read a third high, enough to flag a prefill at 77% of the ceiling as a
    MEASUREMENT ERROR (103%). Such a record is recognised by its own prefill_flops, which equals
    the old count exactly; its roofline is recomputed from what it stored (the run's ceilings, the
    ones measured beside the case, the spec row it named), so every reader (report, compare,
    claims, baseline, merge) judges it as a record made today. The measurements are untouched."""
    if rec.get("status") != "ok" or not rec.get("prefill_flops"):
        return False
    try:
        spec = get_model(rec["model"])
        p = rec.get("prompt_tokens") or parse_workload(rec["workload"]).prompt_tokens
    except (UsageError, KeyError):
        return False
    old = rec["batch"] * p * flops_per_token(spec, p // 2)
    if rec["prefill_flops"] != old or prefill_flops(spec, p, rec["batch"]) == old:
        return False
    chip = next((c for c in load_chips() if c.name == rec.get("chip")), None) if rec.get("chip") else None
    k = prefill_flops(spec, p, rec["batch"]) / old
    try:
        fresh = stored_roofline(rec, chip)
    except UsageError:  # a dtype with no analytic byte counts: it has no roofline to recount
        return False
    lost_row = bool(rec.get("chip")) and chip is None
    keep = {"chip", "chip_confidence"} | ({f for f in fresh if f.startswith("spec_")} if lost_row else set())
    if lost_row:  # a spec row this chipbench does not have (peaks given by hand): its prefill share scales
        fresh.update({f: rec[f] * k for f in ("spec_prefill_mfu",) if isinstance(rec.get(f), (int, float))})
        keep.discard("spec_prefill_mfu")
    rec.update({f: v for f, v in fresh.items() if f not in keep})
    return True


def stored_roofline(rec: dict, chip) -> dict:
    """The roofline fields recomputed from what a record stored: its counts and times, the run's
    ceilings and those measured beside it, against `chip` (the spec row it named, or None)."""
    from chipbench.backends.ceilings import Ceilings

    chips = rec.get("env_chips") or 1  # stored ceilings already span the case's chips: ranks=chips keeps them so

    def stored(gbps, tflops, gbps_median=None, tflops_median=None, shared=False):
        if not rec.get(gbps) or not rec.get(tflops):
            return None
        return Ceilings(
            rec.get("device_name") or "",
            rec["dtype"],
            rec[gbps],
            rec[tflops],
            0,
            0,
            rec.get(gbps_median) if gbps_median else None,
            rec.get(tflops_median) if tflops_median else None,
            rec.get("ceiling_window_s"),
            None,
            ranks=chips,
            matmul_dtype=rec.get("ceiling_matmul_dtype") if shared else None,
            tflops_in_dtype=rec.get("ceiling_tflops_in_dtype") if shared else None,
            kept_from=rec.get("ceiling_kept_from") if shared else None,
            revalidation=rec.get("ceiling_revalidation") if shared else None,
        )

    return roofline_fields(
        rec,
        chip,
        stored("ceiling_gb_per_s", "ceiling_tflops", "ceiling_gb_per_s_median", "ceiling_tflops_median", shared=True),
        stored("ceiling_beside_gb_per_s", "ceiling_beside_tflops"),
    )


def _for_chips(ceilings, chips: int):
    """Ceilings measured on fewer chips than the case read at once (an engine's own tensor-parallel
    split, judged by the one device's ceilings its run measured) scaled to all of them, as identical
    chips; ceilings summed over torchrun ranks already span them."""
    ranks = getattr(ceilings, "ranks", None)
    if ranks is None or chips <= ranks or not dataclasses.is_dataclass(ceilings):  # a plugin's own kind: as given
        return ceilings
    k = chips / ranks
    scaled = {
        name: getattr(ceilings, name) * k
        for name in ("bandwidth_gb_per_s", "tflops", "bandwidth_gb_per_s_median", "tflops_median", "tflops_in_dtype")
        if getattr(ceilings, name) is not None
    }
    return dataclasses.replace(ceilings, ranks=chips, **scaled)


# A quantised type's MFU is against its float's yardstick (ceiling_dtype: bf16), but where the
# runtime quantises activations too (llama.cpp's q8 dot products, OpenVINO's on-the-fly groups), its
# products can run as int8, whose peak is twice bf16's (x86 VNNI against AVX-512 BF16, AMX-INT8
# against AMX-BF16, NVIDIA tensor cores): past 100% of the bf16 yardstick is then not an error,
# past 200% is.
QUANTISED_MFU_LIMIT = 2.0


def _flag(out: dict, unsteady: list[str], beside: dict, mfu_limit: float = 1.0) -> str | None:
    """MEASUREMENT ERROR when a share exceeds 100% (an MFU `mfu_limit`), with the causes that fit: above the spec sheet,
    the number or the sheet is wrong; above a measured ceiling alone, the ceiling may be what came
    out low (measured a minute apart on a loaded host, or by kernels slower than this engine's),
    `unsteady` says when the ceilings' own rounds showed the device's rate moving, and `beside`
    (the shares against the ceilings measured right after this case) which of those fits."""
    shares = {k: v for k, v in out.items() if k.endswith(("_mbu", "_mfu"))}
    limit = {k: mfu_limit if k.endswith("_mfu") else 1.0 for k in shares}
    over = [k for k, v in shares.items() if v > limit[k]]
    if not over:
        return None
    said = "MEASUREMENT ERROR: " + ", ".join(f"{k} {shares[k]:.0%}" for k in over)
    said += (
        " exceeds 100% of the roofline "
        if all(limit[k] == 1.0 for k in over)
        else f" exceeds {mfu_limit:.0%} of the bf16 roofline, the most a quantised type's int8 products reach "
    )
    if any(k.startswith("spec_") for k in over):
        return said + "(timing that did not wait, miscounted tokens, or a wrong spec row)"
    said += (
        "(timing that did not wait, miscounted tokens, or a measured ceiling that came out low: a loaded "
        "host while it was measured, or torch's copy and sum slower than this engine's reads)"
    )
    if unsteady:
        said += f"; the device's rate moved while the ceilings were measured ({'; '.join(unsteady)})"
    again = {k: beside[k] for k in over if k in beside}
    if again:
        shares_text = ", ".join(f"{k.removeprefix('measured_')} {v:.0%}" for k, v in again.items())
        said += f"; against the ceilings measured right after this case it is {shares_text}: " + (
            "the run's ceilings came out low"
            if all(v <= limit[k] for k, v in again.items())
            else "exceeded there too: the timing, the token count, or torch's kernels slower than this engine's"
        )
    within = [f"{k} {v:.0%}" for k, v in shares.items() if k.startswith("spec_")]
    return said + (
        f"; against the spec sheet it is within physics ({', '.join(within)}): most likely the ceiling"
        if within
        else ""
    )


def decode_ceiling_tok_per_s(model: str, dtype: str, context: int, batch: int, bandwidth_gb_per_s: float) -> float:
    """The most decode tokens/s physics allows at this bandwidth: batch / (bytes per step / bandwidth)."""
    spec = get_model(model)
    if dtype not in DTYPE_BYTES:
        raise KeyError(dtype)
    return batch * bandwidth_gb_per_s * 1e9 / decode_step_bytes(spec, dtype, context, batch)


SHEET_BEATEN = 1.05  # a measured ceiling above 105% of the sheet: wrong row, or a wrong sheet
SHEET_MISSED = 0.5  # below 50%: the sheet is not what this device delivers


def check_spec(ceilings, chip, chips: int = 1) -> str | None:
    """A sentence when the measured ceilings contradict the spec row (times `chips`, the chips a
    split case's summed ceilings span), else None."""
    notes = []
    sheet = f"{chips} x the {chip.name} sheet's" if chips > 1 else f"the {chip.name} sheet's"
    pairs = (
        ("memory bandwidth", ceilings.bandwidth_gb_per_s, chip.bandwidth_gb_per_s, "GB/s"),
        (f"{ceilings.dtype} matmul", ceilings.tflops, (chip.peak_flops(ceilings.dtype) or 0) / 1e12 or None, "TFLOP/s"),
    )

    def figure(x: float) -> str:  # a CPU's 0.4 TFLOP/s is not "0"
        return f"{x:.0f}" if x >= 10 else f"{x:.2g}"

    for what, measured, spec, unit in pairs:
        if not spec:
            continue
        if measured > SHEET_BEATEN * spec * chips:
            notes.append(
                f"measured {what} {figure(measured)} {unit} beats {sheet} {spec:g}: wrong spec row or a wrong sheet"
            )
        elif measured < SHEET_MISSED * spec * chips:
            notes.append(f"measured {what} {figure(measured)} {unit} is under half {sheet} {spec:g}")
    return "; ".join(notes) or None
