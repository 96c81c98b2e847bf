"""Claims as data: a vendor's or a paper's statement, checked against physics and measurements.

A claims file is TOML with one [[claim]] table per claim (format in the README). Kinds:
  metric  a metric of one case (model, dtype, workload, batch) on one chip: "81.7 tok/s on an H20"
  ratio   a metric of one case over another's (two chips, or two models): "10x faster", "comparable"
  fits    a model's weights (and optionally a context's KV cache) fit on one chip in a dtype

Verdicts, in the order they are decided:
  physically implausible  it breaks the roofline (more tokens/s than the chip's memory bandwidth
                          or FLOP/s allow) or the memory capacity: decided with no hardware
  confirmed / refuted     measured runs of the claimed case decide it, by their 95% interval
  inconclusive            no matching runs, or the interval straddles the claimed value
A run whose backend failed the correctness gate (its record's `correct` is false) never
confirms a claim: a fast but wrong chip is marked so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from bench.judging.chips import Chip, load_chips, match_chip, read_toml
from bench.judging.compare import compare_samples
from bench.errors import UsageError
from bench.measuring.metrics import METRICS
from bench.measuring.stats import summarize
from bench.measuring.workload import parse_workload
from models.counts import DTYPE_BYTES, decode_step_bytes, facts, flops_per_token
from models.zoo import MODELS, get_model

KINDS = ("metric", "ratio", "fits")
COMPARES = ("at_least", "at_most", "about")
UNITS = {"tokens/s": 1.0, "s": 1.0, "ms": 1e-3, "x": 1.0}
CASE_FIELDS = ("model", "dtype", "workload", "batch", "chip")
FIELDS = {"id", "statement", "source", "date", "kind", "metric", "value", "unit", "compare", "tolerance",
          "context", "numerator", "denominator", "notes", *CASE_FIELDS}


@dataclass(frozen=True)
class Case:
    model: str
    dtype: str
    workload: str
    batch: int
    chip: Chip | None


@dataclass(frozen=True)
class Claim:
    id: str
    kind: str
    statement: str
    source: str
    date: str
    metric: str | None = None
    value: float | None = None  # in the metric's own unit (tokens/s or s), or a ratio
    compare: str = "at_least"
    tolerance: float = 0.1
    case: Case | None = None  # metric and fits claims
    numerator: Case | None = None  # ratio claims
    denominator: Case | None = None
    context: int = 0  # fits claims: tokens of KV cache to hold for one sequence


@dataclass
class Verdict:
    claim: Claim
    verdict: str
    reasons: list[str] = field(default_factory=list)
    numbers: dict = field(default_factory=dict)


# --- reading and validating -----------------------------------------------------------------

def _err(path, claim_id, field_, message) -> UsageError:
    return UsageError(f"{path}: claim {claim_id!r}: field {field_!r}: {message}")


def _case(raw: dict, path, cid, chips: list[Chip], needs_workload: bool, prefix: str = "") -> Case:
    def get(name, default=None):
        return raw.get(name, default)

    model = get("model")
    if model not in MODELS:
        raise _err(path, cid, prefix + "model", f"unknown model {model!r}; valid: {', '.join(MODELS)}")
    dtype = get("dtype", "bf16")
    if dtype not in DTYPE_BYTES:
        raise _err(path, cid, prefix + "dtype", f"unknown dtype {dtype!r}; valid: {', '.join(DTYPE_BYTES)}")
    workload = get("workload")
    if needs_workload:
        try:
            parse_workload(str(workload))
        except UsageError as e:
            raise _err(path, cid, prefix + "workload", str(e)) from None
    batch = get("batch", 1)
    if not isinstance(batch, int) or batch < 1:
        raise _err(path, cid, prefix + "batch", f"must be a whole number >= 1, got {batch!r}")
    chip = None
    if get("chip") is not None:
        chip = next((c for c in chips if c.name.lower() == str(get("chip")).lower()), None) or match_chip(get("chip"), chips)
        if chip is None:
            raise _err(path, cid, prefix + "chip", f"no chip {get('chip')!r} in the spec table; valid: "
                       + ", ".join(c.name for c in chips))
    return Case(model, dtype, workload, batch, chip)


def load_claims(path: str | Path, chips: list[Chip] | None = None) -> list[Claim]:
    path = Path(path)
    chips = chips if chips is not None else load_chips()
    data = read_toml(path, "claims file")
    claims, seen = [], set()
    for i, raw in enumerate(data.get("claim", []), 1):
        cid = raw.get("id") or f"#{i}"
        unknown = sorted(set(raw) - FIELDS)
        if unknown:
            raise _err(path, cid, unknown[0], f"unknown field; valid fields: {', '.join(sorted(FIELDS))}")
        if cid in seen:
            raise _err(path, cid, "id", "used by an earlier claim; ids must be unique")
        seen.add(cid)
        for need in ("statement", "source", "kind"):
            if not raw.get(need):
                raise _err(path, cid, need, "is required")
        kind = raw["kind"]
        if kind not in KINDS:
            raise _err(path, cid, "kind", f"{kind!r}; valid: {', '.join(KINDS)}")
        compare = raw.get("compare", "at_least")
        if compare not in COMPARES:
            raise _err(path, cid, "compare", f"{compare!r}; valid: {', '.join(COMPARES)}")
        tolerance = raw.get("tolerance", 0.1)
        if not (isinstance(tolerance, (int, float)) and 0 < tolerance < 1):
            raise _err(path, cid, "tolerance", f"must be a fraction in (0, 1), got {tolerance!r}")
        common = dict(id=cid, kind=kind, statement=raw["statement"], source=raw["source"],
                      date=str(raw.get("date", "")), compare=compare, tolerance=float(tolerance))
        if kind == "fits":
            for bad in ("metric", "value", "numerator", "denominator", "workload"):
                if bad in raw:
                    raise _err(path, cid, bad, "a fits claim names a model, dtype, chip and optional context only")
            case = _case(raw, path, cid, chips, needs_workload=False)
            if case.chip is None:
                raise _err(path, cid, "chip", "a fits claim needs the chip")
            context = raw.get("context", 0)
            if not isinstance(context, int) or context < 0:
                raise _err(path, cid, "context", f"must be a whole number of tokens >= 0, got {context!r}")
            claims.append(Claim(**common, case=case, context=context))
            continue
        metric = raw.get("metric")
        if metric not in METRICS or metric == "itl_s":
            raise _err(path, cid, "metric", f"{metric!r}; valid: {', '.join(m for m in METRICS if m != 'itl_s')}")
        value = raw.get("value")
        if not isinstance(value, (int, float)) or value <= 0:
            raise _err(path, cid, "value", f"must be a positive number, got {value!r}")
        unit = raw.get("unit")
        valid_units = ("x",) if kind == "ratio" else ("tokens/s",) if METRICS[metric][0] == "tokens/s" else ("s", "ms")
        if unit is not None and unit not in valid_units:
            raise _err(path, cid, "unit", f"{unit!r} does not fit {metric} in a {kind} claim; valid: {', '.join(valid_units)}")
        value = float(value) * UNITS[unit or valid_units[0]]
        if kind == "metric":
            if "numerator" in raw or "denominator" in raw:
                raise _err(path, cid, "numerator", "a metric claim has one case; use kind = \"ratio\" for two")
            claims.append(Claim(**common, metric=metric, value=value,
                                case=_case(raw, path, cid, chips, needs_workload=True)))
        else:
            sides = []
            for side in ("numerator", "denominator"):
                if not isinstance(raw.get(side), dict):
                    raise _err(path, cid, side, "a ratio claim needs numerator and denominator tables")
                merged = {k: raw[k] for k in CASE_FIELDS if k in raw} | raw[side]  # shared fields at the top
                sides.append(_case(merged, path, cid, chips, needs_workload=True, prefix=f"{side}."))
            claims.append(Claim(**common, metric=metric, value=value, numerator=sides[0], denominator=sides[1]))
    if not claims:
        raise UsageError(f"{path}: no [[claim]] tables")
    return claims


# --- physics --------------------------------------------------------------------------------

def roofline_bound(case: Case, metric: str) -> tuple[float | None, str]:
    """The best value physics allows for `metric` on this case and chip, with how it was derived."""
    chip = case.chip
    if chip is None:
        return None, "no chip named"
    spec = get_model(case.model)
    w = parse_workload(case.workload, batch=case.batch)
    bw, peak = chip.bandwidth_bytes_per_s, chip.peak_flops(case.dtype)
    context = w.prompt_tokens + w.gen_tokens // 2
    step_bytes = decode_step_bytes(spec, case.dtype, context, case.batch)
    step_flops = case.batch * flops_per_token(spec, context)
    times = [t for t in ((step_bytes / bw) if bw else None, (step_flops / peak) if peak else None) if t]
    prefill_flops = case.batch * w.prompt_tokens * flops_per_token(spec, w.prompt_tokens // 2)
    if not times and not peak:
        return None, f"the {chip.name} sheet publishes neither memory bandwidth nor FLOP/s"
    conf = " (spec row confidence ?: sources conflict)" if chip.confidence == "?" else ""
    how = (f"{step_bytes / 1e9:.2f} GB per decode step over {chip.bandwidth_gb_per_s or '?'} GB/s, "
           f"{step_flops / 1e9:.1f} GFLOP over {chip.bf16_tflops or '?'} TFLOP/s{conf}")
    best_tpot = max(times) if times else None
    if metric == "decode_tok_per_s":
        return (case.batch / best_tpot if best_tpot else None), how
    if metric == "tpot_s":
        return best_tpot, how
    if metric in ("prefill_tok_per_s", "ttft_s"):
        if not peak:
            return None, f"the {chip.name} sheet publishes no {case.dtype} FLOP/s"
        best_ttft = prefill_flops / peak
        how = f"{prefill_flops / 1e12:.2f} TFLOP of prefill over {peak / 1e12:g} TFLOP/s{conf}"
        return (case.batch * w.prompt_tokens / best_ttft if metric == "prefill_tok_per_s" else best_ttft), how
    return None, f"no roofline for {metric}"


def _breaks(claim_value: float, bound: float, metric: str, compare: str) -> bool:
    higher = METRICS[metric][1]
    if compare == "at_most" and higher or compare == "at_least" and not higher:
        return False  # a claimed ceiling on speed, or floor on latency, cannot break physics
    return claim_value > bound if higher else claim_value < bound


def fits(claim: Claim) -> tuple[bool, str, dict]:
    case = claim.case
    f = facts(get_model(case.model))
    weights = f.weight_bytes(case.dtype)
    kv = claim.context * f.kv_bytes_per_token(case.dtype) + (f.recurrent_state_bytes if claim.context else 0)
    need, have = weights + kv, case.chip.memory_bytes
    numbers = {"weights_gb": weights / 1e9, "kv_gb": kv / 1e9, "memory_gb": case.chip.memory_gb}
    text = (f"{case.model} in {case.dtype}: {weights / 1e9:.1f} GB of weights"
            + (f" + {kv / 1e9:.2f} GB of cache for {claim.context} tokens" if claim.context else "")
            + f" against {case.chip.memory_gb:g} GB on one {case.chip.name}")
    return need <= have, text, numbers


# --- measurements ---------------------------------------------------------------------------

def matching_runs(case: Case, records: list[dict]) -> list[dict]:
    w = parse_workload(case.workload, batch=case.batch)
    out = []
    for r in records:
        if (r.get("model"), r.get("dtype"), r.get("workload"), r.get("batch")) != (case.model, case.dtype, w.name, case.batch):
            continue
        if case.chip is not None and match_chip(r.get("device_name")) != case.chip:
            continue
        out.append(r)
    return out


def matching_runs_any(case: Case, records: list[dict]) -> list[dict]:
    """Runs of the model in the dtype on the chip, any workload (for fits claims)."""
    return [r for r in records if r.get("model") == case.model and r.get("dtype") == case.dtype
            and match_chip(r.get("device_name")) == case.chip]


def _decide(lo: float, hi: float, value: float, compare: str, tolerance: float) -> str:
    """The verdict of a measured 95% interval [lo, hi] on a claimed value."""
    if compare == "about":
        band = (value * (1 - tolerance), value * (1 + tolerance))
        if band[0] <= lo and hi <= band[1]:
            return "confirmed"
        return "refuted" if hi < band[0] or lo > band[1] else "inconclusive"
    if compare == "at_least":
        return "confirmed" if lo >= value else "refuted" if hi < value else "inconclusive"
    return "confirmed" if hi <= value else "refuted" if lo > value else "inconclusive"  # at_most


def _wrong(records: list[dict]) -> list[dict]:
    return [r for r in records if r.get("correct") is False]


def check(claim: Claim, records: list[dict]) -> Verdict:
    v = Verdict(claim, "inconclusive")
    if claim.kind == "fits":
        ok, text, numbers = fits(claim)
        v.numbers.update(numbers)
        if not ok:
            v.verdict = "physically implausible"
            v.reasons.append(f"does not fit: {text}")
            return v
        v.reasons.append(f"fits on paper: {text} (activations and runtime overhead need a run)")
        runs = matching_runs_any(claim.case, records)
        if runs:
            okr = [r for r in runs if r.get("status") == "ok"]
            v.verdict = "confirmed" if okr else "refuted"
            v.reasons.append(f"{len(okr)} of {len(runs)} run(s) of {claim.case.model} on {claim.case.chip.name} completed")
        return v
    if claim.kind == "metric":
        return _check_metric(claim, records, v)
    return _check_ratio(claim, records, v)


def _check_metric(claim: Claim, records: list[dict], v: Verdict) -> Verdict:
    case, metric, higher = claim.case, claim.metric, METRICS[claim.metric][1]
    bound, how = roofline_bound(case, metric)
    if bound is not None:
        v.numbers["roofline"] = bound
        share = claim.value / bound if higher else bound / claim.value
        v.numbers["claimed_share_of_roofline"] = share
        if _breaks(claim.value, bound, metric, claim.compare):
            v.verdict = "physically implausible"
            v.reasons.append(f"claims {claim.value:g} {METRICS[metric][0]}, {share:.0%} of the roofline "
                             f"{bound:.4g} ({how})")
            return v
        v.reasons.append(f"physically possible: {share:.0%} of the roofline {bound:.4g} ({how})")
    else:
        v.reasons.append(f"no roofline check: {how}")
    runs = [r for r in matching_runs(case, records) if r.get("status") == "ok"]
    if not runs:
        v.reasons.append("no matching runs: give records of this case on this chip to decide")
        return v
    if _wrong(runs):
        v.verdict = "refuted"
        v.reasons.append(f"{len(_wrong(runs))} matching run(s) failed the correctness gate: fast but wrong")
        return v
    samples = [s for r in runs for s in (r.get(f"{metric}_samples") or []) if s is not None]
    st = summarize(samples)
    v.numbers.update(measured_mean=st["mean"], ci95_low=st["ci95_low"], ci95_high=st["ci95_high"], n=st["n"])
    if st["ci95_low"] is None:
        v.reasons.append(f"{st['n']} sample(s): too few for an interval")
        return v
    v.verdict = _decide(st["ci95_low"], st["ci95_high"], claim.value, claim.compare, claim.tolerance)
    v.reasons.append(f"measured {st['mean']:.4g}, 95% CI [{st['ci95_low']:.4g}, {st['ci95_high']:.4g}] over "
                     f"{st['n']} rounds of {len(runs)} run(s); claimed {claim.compare.replace('_', ' ')} {claim.value:g}")
    return v


def _check_ratio(claim: Claim, records: list[dict], v: Verdict) -> Verdict:
    num, den, metric = claim.numerator, claim.denominator, claim.metric
    b_num, how_num = roofline_bound(num, metric)
    b_den, how_den = roofline_bound(den, metric)
    if b_num and b_den:
        ratio = b_num / b_den if METRICS[metric][1] else b_den / b_num
        v.numbers["roofline_ratio"] = ratio
        if claim.value > ratio and claim.compare != "at_most":
            v.reasons.append(f"claims {claim.value:g}x where both at their roofline give {ratio:.2f}x "
                             f"({how_num}; {how_den}): holds only if the denominator runs further below "
                             "its roofline than the numerator")
        else:
            v.reasons.append(f"both at their roofline give {ratio:.2f}x")
    else:
        v.reasons.append(f"no roofline ratio: {how_num if not b_num else how_den}")
    rn = [r for r in matching_runs(num, records) if r.get("status") == "ok"]
    rd = [r for r in matching_runs(den, records) if r.get("status") == "ok"]
    if not rn or not rd:
        v.reasons.append("no matching runs of " + " and ".join(
            s for s, r in (("the numerator", rn), ("the denominator", rd)) if not r))
        return v
    if _wrong(rn + rd):
        v.verdict = "refuted"
        v.reasons.append("a matching run failed the correctness gate: fast but wrong")
        return v
    c = compare_samples([s for r in rn for s in r.get(f"{metric}_samples") or []],
                        [s for r in rd for s in r.get(f"{metric}_samples") or []], metric)
    v.numbers.update(measured_ratio=c.ratio, ci95_low=c.ci_low, ci95_high=c.ci_high)
    if c.ci_low is None:
        v.reasons.append("too few samples for an interval")
        return v
    v.verdict = _decide(c.ci_low, c.ci_high, claim.value, claim.compare, claim.tolerance)
    v.reasons.append(f"measured {c.ratio:.3g}x, 95% CI [{c.ci_low:.3g}, {c.ci_high:.3g}]; claimed "
                     f"{claim.compare.replace('_', ' ')} {claim.value:g}x")
    return v


def check_all(claims: list[Claim], records: list[dict]) -> list[Verdict]:
    return [check(c, records) for c in claims]


def render(verdicts: list[Verdict], fmt: str = "md") -> str:
    import json

    if fmt == "json":
        return json.dumps([{"id": v.claim.id, "statement": v.claim.statement, "source": v.claim.source,
                            "date": v.claim.date, "verdict": v.verdict, "reasons": v.reasons,
                            "numbers": {k: (None if isinstance(x, float) and not math.isfinite(x) else x)
                                        for k, x in v.numbers.items()}} for v in verdicts], indent=1)
    esc = lambda t: str(t).replace("|", "\\|")  # noqa: E731
    lines = ["| claim | statement | verdict | why |", "|---|---|---|---|"]
    for v in verdicts:
        lines.append(f"| {esc(v.claim.id)} | {esc(v.claim.statement)} ({esc(v.claim.source)}, {esc(v.claim.date)}) "
                     f"| **{v.verdict}** | {esc('; '.join(v.reasons))} |")
    return "\n".join(lines) + "\n"
