"""Claims as data: a vendor's or a paper's statement, checked against physics and measurements.

A claims file is TOML with one [[claim]] table per claim (format in docs/claims.md). Kinds:
  metric  a metric of one case (model, dtype, workload, batch) on one chip: "81.7 tok/s on an H20"
  ratio   a metric of one case over another's (two chips, or two models): "10x faster", "comparable"
  fits    a model's weights (and optionally a context's KV cache) fit on one chip in a dtype

Verdicts, in the order they are decided:
  physically implausible  the case cannot run (its context is past the model's maximum, or its
                          weights and KV cache at the workload's context and batch do not fit the
                          claimed chips' memory), or it breaks the roofline (more tokens/s than the
                          chip's memory bandwidth or FLOP/s allow): decided with no hardware
  confirmed / refuted     measured runs of the claimed case decide it, by their 95% interval
                          over trials (bench/judging/cases.py)
  not reproduced with S   the runs fall short, but with a stack S other than the claimed one and
                          below REFUTES_AT of the measured roofline: a slow stack does not refute
                          a chip (an inconclusive verdict that says what would decide it)
  inconclusive            no matching runs, an interval that straddles the claimed value, a
                          ratio whose two sides differ in more than the claim compares, or a
                          ratio of runs below REFUTES_AT of their measured rooflines with another
                          stack than the claimed one (it measures the software and the host)
A run better than an `about` claim refutes it only with the claimed stack (another stack's speed
says nothing of the figure the claimed one was measured at), and a run at the figure confirms it
only with the claimed stack (another stack makes it plausible, not confirmed). A stack's version
compares as a version ('vllm 0.6' matches 0.6.3, 'sglang 0.4.1' never 0.4.10). A record stands for
a chip only when its device name is the chip row's name or an alias, whole, and its backend kind
fits the row (bench/judging/chips.py: chip_of); never by a pattern inside the name. A ratio's two sides must differ in
the model, the chip or the chip count (COMPARED); sides of one case are refused.
A fits claim is decided by memory alone (_check_fits_runs). Runs split over another number of
chips than the claim's `chips` (default 1) never decide it. A claim that names no chip is judged
per device and refuted by none. Trials on a loaded host refute nothing by a shortfall, confirm no
`about` and decide no ratio (load only slows a run); so do host-bound trials (record field
host_bound: the device waited for the host each decode step) for a decode metric.
A run whose backend failed the correctness gate (its record's `correct` is false) never
confirms a claim: wrong runs are left out and named, and they refute it when they ran the
claimed stack (its runs all wrong: fast but wrong). Records are deduplicated by record_id
first: a file given twice counts once.

The file's structure (types, ranges, unknown keys, nested ones included) is validated with
pydantic (ClaimsFile below, published as results/schema/claims.schema.json); names (models,
chips, metrics, workloads) are then checked against this chipbench's tables.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chipbench import stats
from chipbench.judging.chips import Chip, chip_of, load_chips, match_chip, read_toml
from chipbench.judging import cases
from chipbench.judging.compare import compare_stats
from chipbench.errors import UsageError
from chipbench.measuring.metrics import METRICS
from chipbench.measuring.workload import parse_workload
from chipbench.models.counts import DTYPE_BYTES, facts, flops_per_token, least_decode_step_bytes, prefill_flops
from chipbench.models.zoo import MODELS, get_model

KINDS = ("metric", "ratio", "fits")
COMPARES = ("at_least", "at_most", "about")
UNITS = {"tokens/s": 1.0, "s": 1.0, "ms": 1e-3, "x": 1.0}
CASE_FIELDS = ("model", "dtype", "workload", "batch", "chip", "stack", "chips")
# A run below a claim refutes it only with the claimed stack, or when it already reaches this share
# of the measured ceiling (bandwidth for decode, compute for prefill): no stack could do much better.
REFUTES_AT = 0.8

# metrics a prefill sets: a decode's host-boundness and its bandwidth share say nothing of them
PREFILL_METRICS = ("prefill_tok_per_s", "ttft_s")

# What a ratio claim may compare; any other difference between its two sides is not like for like.
COMPARED = ("chip", "model", "chips")
LIKE_FOR_LIKE = ("workload", "dtype", "batch", "stack", "parallel")

_strict = ConfigDict(strict=True, allow_inf_nan=False, extra="forbid")
Name = Annotated[str, Field(min_length=1)]


class CaseTable(BaseModel):
    """What one side of a ratio claim names (the rest is shared from the claim's top level)."""

    model_config = _strict
    model: Name | None = None
    dtype: Name | None = None
    workload: Name | None = None
    batch: Annotated[int, Field(ge=1)] | None = None
    chip: Name | None = None
    stack: Name | None = Field(None, description="the software the claim was made with, e.g. 'sglang', 'vllm 0.6.3'")
    chips: Annotated[int, Field(ge=1)] | None = Field(
        None,
        description="how many of the chip the case runs on (default 1): runs split over another number never decide it",
    )


class ClaimTable(CaseTable):
    """One [[claim]] table."""

    id: Name | None = None
    statement: Name
    source: Name
    date: str | dt.date | None = None
    kind: Literal[KINDS]
    metric: Name | None = None
    value: Annotated[float, Field(gt=0)] | None = None
    unit: Literal[tuple(UNITS)] | None = None
    compare: Literal[COMPARES] = "at_least"
    tolerance: Annotated[float, Field(gt=0, lt=1)] = 0.1
    context: Annotated[int, Field(ge=0)] = 0
    numerator: CaseTable | None = None
    denominator: CaseTable | None = None
    notes: str | None = None


class ClaimsFile(BaseModel):
    """A claims file: one [[claim]] table per claim."""

    model_config = _strict
    claim: list[ClaimTable] = Field(min_length=1)


def claims_json_schema() -> dict:
    schema = ClaimsFile.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://github.com/chipbench/chipbench/results/schema/claims.schema.json"
    return schema


@dataclass(frozen=True)
class Case:
    model: str
    dtype: str
    workload: str
    batch: int
    chip: Chip | None
    stack: str | None = None  # the stack the claim was made with, when it names one
    chips: int = 1  # how many of the chip the case runs on


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

    @property
    def category(self) -> str:
        """confirmed, refuted, physically implausible or inconclusive ("not reproduced with ..." is inconclusive)."""
        return self.verdict if self.verdict in ("confirmed", "refuted", "physically implausible") else "inconclusive"


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
        chip = next((c for c in chips if c.name.lower() == str(get("chip")).lower()), None) or match_chip(
            get("chip"), chips
        )
        if chip is None:
            raise _err(
                path,
                cid,
                prefix + "chip",
                f"no chip {get('chip')!r} in the spec table (a chip it lacks is "
                "a new row of results/chips.toml; a claim about no chip in particular names none); valid: "
                + ", ".join(c.name for c in chips),
            )
    return Case(model, dtype, workload, batch, chip, get("stack"), get("chips") or 1)


def _structure_error(path, data, err: ValidationError) -> UsageError:
    """The first structural problem, as file, claim id and field path."""
    e = err.errors()[0]
    loc = list(e["loc"])
    if len(loc) >= 2 and loc[0] == "claim" and isinstance(loc[1], int):
        raw = data["claim"][loc[1]] if isinstance(data.get("claim"), list) else {}
        cid = (raw.get("id") if isinstance(raw, dict) else None) or f"#{loc[1] + 1}"
        rest = ".".join(str(p) for p in loc[2:])
        if e["type"] == "extra_forbidden":
            table = CaseTable if loc[2:3] and loc[2] in ("numerator", "denominator") else ClaimTable
            valid = ", ".join(sorted(table.model_fields))
            return _err(path, cid, rest, f"unknown field; valid fields here: {valid}")
        if e["type"] == "missing":
            return _err(path, cid, rest, "is required")
        return _err(path, cid, rest, f"{e['msg'].removeprefix('Value error, ')} (got {e.get('input')!r:.60})")
    where = ".".join(str(p) for p in loc) or "the file"
    if e["type"] == "extra_forbidden":
        return UsageError(f"{path}: unknown top-level key {where!r}; a claims file holds [[claim]] tables only")
    if loc == ["claim"] and e["type"] in ("missing", "too_short"):
        return UsageError(f"{path}: no [[claim]] tables")
    return UsageError(f"{path}: {where}: {e['msg']}")


def parse_claims(data: dict, path: str | Path = "<claims>", chips: list[Chip] | None = None) -> list[Claim]:
    """Claims from a parsed TOML document; a one-line UsageError naming the claim and field otherwise."""
    chips = chips if chips is not None else load_chips()
    try:
        ClaimsFile.model_validate(data)
    except ValidationError as e:
        raise _structure_error(path, data, e) from None
    claims, seen = [], set()
    for i, raw in enumerate(data["claim"], 1):
        cid = raw.get("id") or f"#{i}"
        if cid in seen:
            raise _err(path, cid, "id", "used by an earlier claim; ids must be unique")
        seen.add(cid)
        kind, compare = raw["kind"], raw.get("compare", "at_least")
        common = dict(
            id=cid,
            kind=kind,
            statement=raw["statement"],
            source=raw["source"],
            date=str(raw.get("date", "")),
            compare=compare,
            tolerance=float(raw.get("tolerance", 0.1)),
        )
        if kind == "fits":
            for bad in ("metric", "value", "numerator", "denominator", "workload", "unit", "stack"):
                if bad in raw:
                    raise _err(path, cid, bad, "a fits claim names a model, dtype, chip and optional context only")
            case = _case(raw, path, cid, chips, needs_workload=False)
            if case.chip is None:
                raise _err(path, cid, "chip", "a fits claim needs the chip")
            claims.append(Claim(**common, case=case, context=raw.get("context", 0)))
            continue
        if "context" in raw:
            raise _err(path, cid, "context", "only a fits claim has a context; a workload names its own (tg128@d4096)")
        metric = raw.get("metric")
        if metric not in METRICS or metric == "itl_s":
            raise _err(path, cid, "metric", f"{metric!r}; valid: {', '.join(m for m in METRICS if m != 'itl_s')}")
        value = raw.get("value")
        if value is None:
            raise _err(path, cid, "value", "is required: a positive number")
        unit = raw.get("unit")
        valid_units = ("x",) if kind == "ratio" else ("tokens/s",) if METRICS[metric][0] == "tokens/s" else ("s", "ms")
        if unit is not None and unit not in valid_units:
            raise _err(
                path, cid, "unit", f"{unit!r} does not fit {metric} in a {kind} claim; valid: {', '.join(valid_units)}"
            )
        value = float(value) * UNITS[unit or valid_units[0]]
        if kind == "metric":
            if "numerator" in raw or "denominator" in raw:
                raise _err(path, cid, "numerator", 'a metric claim has one case; use kind = "ratio" for two')
            claims.append(
                Claim(**common, metric=metric, value=value, case=_case(raw, path, cid, chips, needs_workload=True))
            )
        else:
            sides = []
            for side in ("numerator", "denominator"):
                if not isinstance(raw.get(side), dict):
                    raise _err(path, cid, side, "a ratio claim needs numerator and denominator tables")
                merged = {k: raw[k] for k in CASE_FIELDS if k in raw} | raw[side]  # shared fields at the top
                sides.append(_case(merged, path, cid, chips, needs_workload=True, prefix=f"{side}."))
            num, den = sides
            if (num.model, num.chip, num.chips) == (den.model, den.chip, den.chips):
                raise _err(
                    path,
                    cid,
                    "denominator",
                    "names the same model, chip and chip count as the numerator: a "
                    "ratio claim compares two chips (or chip counts) or two models, like for like; two stacks, "
                    "modes or dtypes on one machine are compared by `chipbench ab`",
                )
            if (sides[0].chip is None) != (sides[1].chip is None):
                bare = "numerator" if sides[0].chip is None else "denominator"
                raise _err(
                    path,
                    cid,
                    f"{bare}.chip",
                    "is missing while the other side names one; a ratio claim names "
                    "the chip of both sides (at the top or in each) or of neither",
                )
            claims.append(Claim(**common, metric=metric, value=value, numerator=sides[0], denominator=sides[1]))
    return claims


def load_claims(path: str | Path, chips: list[Chip] | None = None) -> list[Claim]:
    path = Path(path)
    return parse_claims(read_toml(path, "claims file"), path, chips)


# --- physics --------------------------------------------------------------------------------


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


def _breaks(claim_value: float, bound: float, metric: str, compare: str) -> bool:
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


# --- measurements ---------------------------------------------------------------------------


def chips_of(rec: dict) -> int:
    """How many chips a run occupied: its parallel layout's tensor times pipeline sizes on an
    accelerator (tp2pp2: 4), its hosts for CPU ranks (which share one host's memory), else 1."""
    if rec.get("backend_kind") == "cpu":
        return int(rec.get("env_chips") or 1)
    layout = str(rec.get("parallel") or "none")
    sizes = [int(x) for x in re.findall(r"(?:tp|pp)(\d+)", layout)]
    return math.prod(sizes) if sizes else int(rec.get("env_chips") or 1)


def _on_chip(case: Case, rec: dict) -> bool:
    return (case.chip is None or chip_of(rec) == case.chip) and chips_of(rec) == case.chips


def matching_runs(case: Case, records: list[dict]) -> list[dict]:
    w = parse_workload(case.workload, batch=case.batch)
    return [
        r
        for r in records
        if _on_chip(case, r)
        and (r.get("model"), r.get("dtype"), r.get("workload"), r.get("batch"))
        == (case.model, case.dtype, w.name, case.batch)
    ]


def matching_runs_any(case: Case, records: list[dict]) -> list[dict]:
    """Runs of the model in the dtype on the chip (as many of it as the claim names), any workload
    (for fits claims)."""
    return [r for r in records if r.get("model") == case.model and r.get("dtype") == case.dtype and _on_chip(case, r)]


# What an engine says when a case did not fit: torch's CUDA / accelerator and CPU allocators,
# Python's MemoryError, llama.cpp's and vLLM's allocation failures.
_OUT_OF_MEMORY = re.compile(
    r"out of memory|OutOfMemoryError|MemoryError|can't allocate memory|"
    r"cannot allocate memory|failed to allocate|not enough memory|ENOMEM",
    re.I,
)


def out_of_memory(rec: dict) -> bool:
    return rec.get("status") != "ok" and bool(_OUT_OF_MEMORY.search(str(rec.get("error") or "")))


def _first_line(error) -> str:
    return (str(error or "no error text").splitlines() or [""])[0][:160]


def _tokens(rec: dict) -> int:
    """The tokens one sequence of a run held: its prompt (or decode context) and its output."""
    return int(rec.get("prompt_tokens") or 0) + int(rec.get("gen_tokens") or 0)


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


def _correct_only(runs: list[dict], stack: str | None, v: Verdict, side: str = "") -> tuple[list[dict], bool]:
    """The runs that did not fail the correctness gate, and whether the wrong ones refute the claim:
    they do when the claimed stack's runs all failed it (the claim's own software is fast but
    wrong). Wrong runs of another stack are named and left out: they say that stack computes the
    model wrongly, not what the chip can do."""
    wrong = _wrong(runs)
    if not wrong:
        return runs, False
    of = f" of the {side}" if side else ""
    claimed = [r for r in runs if stack_matches(stack, _stack_of(r))]
    if claimed and all(r.get("correct") is False for r in claimed):
        v.reasons.append(
            f"{len(claimed)} run(s){of} with the claimed stack ({', '.join(_stacks(claimed))}) failed "
            "the correctness gate: fast but wrong"
        )
        return [], True
    kept = [r for r in runs if r.get("correct") is not False]
    v.reasons.append(
        f"{len(wrong)} run(s){of} failed the correctness gate and are left out "
        f"({', '.join(_stacks(wrong))}): fast but wrong is not a result"
        + ("" if kept else "; no other runs" + (" (a run with the claimed stack would decide it)" if stack else ""))
    )
    return kept, False


def _version(word: str):
    from packaging.version import InvalidVersion, Version

    try:
        return Version(word)
    except InvalidVersion:
        return None


def _word_matches(claimed: str, have: str) -> bool:
    """One word of a claimed stack against one of a run's: a version compares as a version, the
    claim's release numbers a prefix of the run's ('0.6' matches 0.6.3, '0.4.1' never 0.4.10), and
    a pre-, post- or dev-release it names must be the run's; other words whole."""
    if claimed == have:
        return True
    want, got = _version(claimed), _version(have)
    if want is None or got is None or not claimed[:1].isdigit():
        return False
    if got.release[: len(want.release)] != want.release:
        return False
    return all(
        getattr(want, part) is None or getattr(want, part) == getattr(got, part) for part in ("pre", "post", "dev")
    )


def stack_matches(claimed: str | None, run_stack: str | None) -> bool:
    """Whether a run used the claimed stack: every word the claim names appears in the run's stack
    (case-insensitive), a version as a version (_word_matches)."""
    if not claimed or not run_stack:
        return False
    have = run_stack.lower().split()
    return all(any(_word_matches(w, h) for h in have) for w in claimed.lower().split())


def roofline_share(records: list[dict], metric: str) -> float | None:
    """How close the runs came to the measured ceiling that bounds this metric: bandwidth (or the
    matmul rate, whichever binds) for decode metrics, the matmul rate for prefill ones. The
    geometric mean over the trials; None when no ceiling was measured."""
    keys = ("measured_prefill_mfu",) if metric in PREFILL_METRICS else ("measured_mbu", "measured_decode_mfu")
    shares = [
        max(v for v in (r.get(k) for k in keys) if isinstance(v, (int, float)))
        for r in records
        if any(isinstance(r.get(k), (int, float)) and r.get(k) > 0 for k in keys)
    ]
    shares = [x for x in shares if x > 0]
    return math.exp(sum(map(math.log, shares)) / len(shares)) if shares else None


def _stacks(records: list[dict]) -> list[str]:
    return sorted({r.get("stack") or f"{r.get('backend')} {r.get('exec_path') or 'eager'}" for r in records})


def _shown(x: float, metric: str) -> str:
    """A value of a metric as a claim's reasons give it: latencies in ms, rates in tokens/s."""
    return f"{x * 1e3:.4g} ms" if METRICS[metric][0] == "s" else f"{x:.4g} tokens/s"


def _span(lo: float, hi: float, metric: str) -> str:
    """An interval in the metric's shown unit: [27.41, 38.23] tokens/s."""
    a, unit = _shown(lo, metric).split(" ", 1)
    return f"[{a}, {_shown(hi, metric).split(' ', 1)[0]}] {unit}"


def _interval(stat, what: str) -> tuple[float, float, str]:
    """The 95% interval a metric claim's verdict rests on: the case statistic as an estimate of the
    chip's own level (bench/stats.py), over its trials and, where the runs span several
    invocations, the drift between them. Where they are one invocation the drift is not measured,
    and the basis says so: a chip that reached a figure over several trials reached it. With one
    trial nothing measured the spread between processes: the larger of the drift prior and what its
    rounds say stands in for it."""
    side = stat.side
    trial = stats.trial_variance([side])
    drift = stats.drift_variance([(side, trial and trial[0])])
    if trial is not None and drift is None:
        noise = stats.Noise(trial[0], trial[1], 0.0, math.inf, "not measured")
    else:
        noise = stats.noise_for(side, stats.Side(()), trial, drift, rounds_var=stat.median_var_from_rounds)
    center, se, df = stats.level(side, noise)
    lo, hi = (math.exp(x) for x in stats.t_interval(center, se, df))
    runs = f"{stat.trials} trial{'s' if stat.trials != 1 else ''}" + (f" in {side.k} invocations" if side.k > 1 else "")
    drift_text = f"{stats.relative(math.sqrt(noise.drift_var)):.1%}"
    if noise.drift_source == "not measured":
        said = (
            "one invocation: the drift between invocations is not measured (runs from several invocations, "
            "--repeats 3 more than once, measure it)"
        )
    elif noise.drift_known:
        said = f"invocation drift {drift_text}, {noise.drift_source}"
    else:
        said = f"between-run variance unknown: {noise.drift_source.split(';')[0]} {drift_text} assumed"
    return lo, hi, f"95% CI {_span(lo, hi, what)} over {runs}; {said}"


def _stack_of(rec: dict) -> str:
    return rec.get("stack") or f"{rec.get('backend')} {rec.get('exec_path') or 'eager'}"


def _one_stack(runs: list[dict], case: Case, metric: str, v: Verdict) -> list[dict]:
    """Runs of one stack only: eager and compiled trials are never pooled, nor, for a claim that
    names no chip, runs on different devices. The claimed stack's runs when there are any, else the
    stack (and device) that did best."""
    groups: dict[str, list[dict]] = {}
    for r in runs:
        key = _stack_of(r) if case.chip is not None else f"{_stack_of(r)} on {r.get('device_name')}"
        groups.setdefault(key, []).append(r)
    if len(groups) == 1:
        return runs
    same = [k for k in groups if stack_matches(case.stack, _stack_of(groups[k][0]))]
    higher = METRICS[metric][1]
    best = max(same or groups, key=lambda k: (cases.case_stat(groups[k], metric).value or 0) * (1 if higher else -1))
    what = "stacks" if case.chip is not None else "stacks and devices"
    v.reasons.append(
        f"runs with {len(groups)} {what} ({', '.join(sorted(groups))}), never pooled: judged on {best} "
        + ("(the claimed stack)" if same else "(the best of them)")
    )
    return groups[best]


def _throttle_note(records: list[dict], v: Verdict) -> None:
    """Rounds the device throttled in are the chip's own behaviour under its limits, so they
    count; the reasons say so, with what the device reported."""
    rounds = sum(r.get("throttled_rounds") or 0 for r in records)
    if rounds:
        why = sorted({r["throttle_reasons"] for r in records if r.get("throttle_reasons")})
        v.reasons.append(
            f"{rounds} timed round(s) ran while the device reported throttling"
            + (f" ({'; '.join(why)})" if why else "")
            + ": counted, as the chip's behaviour under its limits"
        )


def _short_of(claim: Claim, value: float) -> bool:
    """Whether a measured value falls short of the claim (slower than claimed), not past it."""
    higher = METRICS[claim.metric][1]
    return value < claim.value if higher else value > claim.value


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
        return _check_fits_runs(claim, records, v)
    if claim.kind == "metric":
        return _check_metric(claim, records, v)
    return _check_ratio(claim, records, v)


def _check_fits_runs(claim: Claim, records: list[dict], v: Verdict) -> Verdict:
    """Runs decide a fits claim by memory alone: a completed run that held at least the claimed
    context confirms it; a run at batch 1 that ran out of memory holding no more than that refutes
    it; a failure for another reason, or a run longer or wider than the claim that ran out, decides
    nothing. Runs on another number of chips (a split) are not the claimed case."""
    case, need = claim.case, claim.context
    runs = matching_runs_any(case, records)
    split = len(
        [
            r
            for r in records
            if r.get("model") == case.model and r.get("dtype") == case.dtype and chip_of(r) == case.chip
        ]
    ) - len(runs)
    if split:
        v.reasons.append(f"{split} run(s) on another number of {case.chip.name} than {case.chips} not counted")
    if not runs:
        v.reasons.append(
            f"no runs of {case.model} in {case.dtype} on {case.chip.name}: a run decides activations and overhead"
        )
        return v
    done = [r for r in runs if r.get("status") == "ok"]
    wrong = _wrong(done)
    held = [r for r in done if _tokens(r) >= need and r.get("correct") is not False]
    if held:
        top = max(held, key=lambda r: (_tokens(r), r.get("batch") or 1))
        v.verdict = "confirmed"
        v.reasons.append(
            f"{len(held)} run(s) completed holding at least {need} tokens per sequence; the longest "
            f"{_tokens(top)} tokens at batch {top.get('batch')} ({top.get('workload')})"
        )
        return v
    short = [r for r in runs if out_of_memory(r) and (r.get("batch") or 1) == 1 and _tokens(r) <= need]
    if short:
        first = min(short, key=_tokens)
        v.verdict = "refuted"
        v.reasons.append(
            f"{len(short)} run(s) at batch 1 ran out of memory holding no more than the claimed {need} "
            f"tokens: {first.get('workload')} ({_tokens(first)} tokens): "
            f"{_first_line(first.get('error'))}"
        )
        return v
    right = [r for r in done if r.get("correct") is not False]
    if right:
        v.reasons.append(
            f"{len(right)} run(s) completed, the longest holding {max(map(_tokens, right))} tokens per "
            f"sequence: fewer than the claimed {need}"
        )
    if wrong:
        v.reasons.append(f"{len(wrong)} completed run(s) failed the correctness gate and confirm nothing")
    over = [r for r in runs if out_of_memory(r)]
    if over:
        v.reasons.append(
            f"{len(over)} run(s) ran out of memory, each holding more than the claimed {need} tokens or "
            "at a batch above 1: that does not refute it"
            + (" (the claim names no context: give `context` to decide with such runs)" if not need else "")
        )
    other = [r for r in runs if r.get("status") != "ok" and not out_of_memory(r)]
    if other:
        v.reasons.append(
            f"{len(other)} run(s) failed for a reason other than memory, which decides nothing: "
            f"{_first_line(other[0].get('error'))}"
        )
    return v


def _check_metric(claim: Claim, records: list[dict], v: Verdict) -> Verdict:
    case, metric, higher = claim.case, claim.metric, METRICS[claim.metric][1]
    if why := impossible(case):
        v.verdict = "physically implausible"
        v.reasons += why
        return v
    bound, how = roofline_bound(case, metric)
    if bound is not None:
        v.numbers["roofline"] = bound
        share = claim.value / bound if higher else bound / claim.value
        v.numbers["claimed_share_of_roofline"] = share
        if _breaks(claim.value, bound, metric, claim.compare):
            v.verdict = "physically implausible"
            v.reasons.append(
                f"claims {_shown(claim.value, metric)}, {share:.0%} of the roofline {_shown(bound, metric)} ({how})"
            )
            return v
        v.reasons.append(f"physically possible: {share:.0%} of the roofline {_shown(bound, metric)} ({how})")
    else:
        v.reasons.append(f"no roofline check: {how}")
    matched = matching_runs(case, records)
    runs = [r for r in matched if r.get("status") == "ok"]
    if not runs:
        v.reasons.append(
            f"no completed run of this case: {len(matched)} failed ({_first_line(matched[0].get('error'))})"
            if matched
            else "no matching runs: give records of this case on this chip to decide"
        )
        return v
    runs, refutes = _correct_only(runs, case.stack, v)
    if refutes or not runs:
        v.verdict = "refuted" if refutes else "inconclusive"
        return v
    runs = _one_stack(runs, case, metric, v)
    _throttle_note(runs, v)
    stat = cases.case_stat(runs, metric)
    v.numbers.update(measured=stat.value, trials=stat.trials, rounds=stat.rounds, statistic=cases.STATISTIC)
    if stat.ci_low is None:
        v.reasons.append(f"{stat.rounds} round(s): too few for an interval")
        return v
    lo, hi, basis = _interval(stat, metric)
    v.numbers.update(ci95_low=lo, ci95_high=hi, interval_basis=basis)
    decided = _decide(lo, hi, claim.value, claim.compare, claim.tolerance)
    stacks = _stacks(runs)
    v.reasons.append(
        f"measured {_shown(stat.value, metric)} ({cases.STATISTIC}), {basis}; claimed "
        f"{claim.compare.replace('_', ' ')} {_shown(claim.value, metric)}; stack: {', '.join(stacks)}"
    )
    short = _short_of(claim, stat.value)
    if decided == "refuted" and case.chip is None:
        v.reasons.append(
            f"would be refuted, but the claim names no chip: "
            f"{'a shortfall' if short else 'a result better than claimed'} on {runs[0].get('device_name')} "
            "does not decide what another chip does, so inconclusive"
        )
        return v
    loaded = cases.loaded_trials(runs)
    # load only slows a run: a shortfall may be the load's, and so may an "about" that a faster
    # unloaded run would overshoot; a run better than the claim despite the load stands
    if loaded and (
        decided == "refuted" and _short_of(claim, stat.value) or decided == "confirmed" and claim.compare == "about"
    ):
        v.reasons.append(
            f"would be {decided}, but {loaded} of {len(runs)} trial(s) ran on a loaded host (other "
            "processes or the hypervisor took CPU time), which may have slowed them, so inconclusive; "
            "rerun on a quiet host"
        )
        return v
    bound = cases.host_bound_trials(runs) if metric not in PREFILL_METRICS else 0
    # a host-bound decode times the host: like load, it only slows the chip's figure
    if bound and (decided == "refuted" and short or decided == "confirmed" and claim.compare == "about"):
        v.reasons.append(
            f"would be {decided}, but {bound} of {len(runs)} trial(s) were host-bound (the device waited "
            "for the host's own work each decode step), so they time the host, not the chip, and a faster "
            "host could run faster: inconclusive; rerun with a stack that queues steps ahead (compiled, "
            "graph-captured) or on a faster host"
        )
        return v
    if (
        decided == "confirmed"
        and claim.compare == "about"
        and case.stack
        and not all(stack_matches(case.stack, _stack_of(r)) for r in runs)
    ):
        v.reasons.append(
            f"would be confirmed, but by another stack than the claim's ({case.stack}): its figure is "
            "plausible on this chip, not confirmed for the claimed stack; a run with it decides"
        )
        return v
    if (
        decided == "refuted"
        and not short
        and claim.compare == "about"
        and not all(stack_matches(case.stack, _stack_of(r)) for r in runs)
    ):
        v.reasons.append(
            f"would be refuted, but the runs beat the claimed figure with another stack than the claim's "
            f"({case.stack}): a faster stack does not show that the claimed one runs at other than its figure, so "
            "inconclusive; a run with the claimed stack decides it"
            if case.stack
            else "would be refuted, but the runs beat the claimed figure and the claim names no stack: a faster stack "
            "does not show that the one the figure was measured with runs at other than it, so inconclusive"
        )
        return v
    if decided == "refuted" and short:
        same_stack = all(stack_matches(case.stack, _stack_of(r)) for r in runs)
        share = roofline_share(runs, metric)
        v.numbers["measured_roofline_share"] = share
        if not same_stack and (share is None or share < REFUTES_AT):
            at = f"{share:.0%} of the measured roofline" if share is not None else "no measured roofline"
            v.verdict = f"not reproduced with {', '.join(stacks)} ({at})"
            v.reasons.append(
                f"a slow stack does not refute a chip: deciding this takes a run with the claimed stack ({case.stack}), "
                f"or any run at {REFUTES_AT:.0%} or more of the measured roofline"
                if case.stack
                else f"a slow stack does not refute a chip, and the claim names no stack: deciding this takes a run at "
                f"{REFUTES_AT:.0%} or more of the measured roofline (one near the chip's limit)"
            )
            return v
        v.reasons.append(
            "refuted with the claimed stack"
            if same_stack
            else f"refuted at {share:.0%} of the measured roofline: no stack could do much better"
        )
    v.verdict = decided
    return v


def _sides_differ(claim: Claim, rn: list[dict], rd: list[dict]) -> list[str]:
    """What differs between a ratio claim's two sides beyond what it compares (chip or model)."""
    num, den = claim.numerator, claim.denominator
    out = []
    w_num, w_den = (parse_workload(c.workload, batch=c.batch).name for c in (num, den))
    if w_num != w_den:
        out.append(f"workload ({w_num} vs {w_den})")
    if num.dtype != den.dtype:
        out.append(f"dtype ({num.dtype} vs {den.dtype})")
    if num.batch != den.batch:
        out.append(f"batch ({num.batch} vs {den.batch})")
    split = num.chips != den.chips  # the claim compares N chips with M: their layouts differ by design

    def stack(r: dict) -> str:
        text, layout = _stack_of(r), str(r.get("parallel") or "none")
        return text.removesuffix(f" {layout}") if split else text

    for label, get in (("stack", stack), ("parallel layout", lambda r: str(r.get("parallel") or "none"))):
        if split and label == "parallel layout":
            continue
        a, b = sorted({get(r) for r in rn}), sorted({get(r) for r in rd})
        if a != b:
            out.append(f"{label} ({', '.join(a)} vs {', '.join(b)})")
    return out


def _check_ratio(claim: Claim, records: list[dict], v: Verdict) -> Verdict:
    num, den, metric = claim.numerator, claim.denominator, claim.metric
    b_num, how_num = roofline_bound(num, metric)
    b_den, how_den = roofline_bound(den, metric)
    if b_num and b_den:
        ratio = b_num / b_den if METRICS[metric][1] else b_den / b_num
        v.numbers["roofline_ratio"] = ratio
        if claim.value > ratio and claim.compare != "at_most":
            v.reasons.append(
                f"claims {claim.value:g}x where both at their roofline give {ratio:.2f}x "
                f"({how_num}; {how_den}): holds only if the denominator runs further below "
                "its roofline than the numerator"
            )
        else:
            v.reasons.append(f"both at their roofline give {ratio:.2f}x")
    else:
        v.reasons.append(f"no roofline ratio: {how_num if not b_num else how_den}")
    why = [f"{side}: {w}" for side, c in (("numerator", num), ("denominator", den)) for w in impossible(c)]
    if why:  # a side that cannot run at all: its roofline above is what it would reach if it could
        v.verdict = "physically implausible"
        v.reasons += why
        return v
    rn = [r for r in matching_runs(num, records) if r.get("status") == "ok"]
    rd = [r for r in matching_runs(den, records) if r.get("status") == "ok"]
    if rn and rd:  # wrong runs out first, so that a stack or device picked below is a correct one
        rn, refutes = _correct_only(rn, num.stack, v, "numerator")
        rd, _ = _correct_only(rd, den.stack, v, "denominator")  # a wrong baseline says nothing against the claim
        if not refutes and rn and not rd:
            v.reasons.append("no correct run of the denominator: no valid baseline, so inconclusive")
        if refutes or not rn or not rd:
            v.verdict = "refuted" if refutes else "inconclusive"
            return v
    if num.chip is None:  # a claim that compares models on no named chip: both sides on one device
        devices = sorted({r.get("device_name") for r in rn} & {r.get("device_name") for r in rd}, key=str)
        if len({r.get("device_name") for r in rn + rd}) > 1:
            pick = max(devices, key=lambda d: sum(r.get("device_name") == d for r in rn + rd)) if devices else None
            rn, rd = [r for r in rn if r.get("device_name") == pick], [r for r in rd if r.get("device_name") == pick]
            v.reasons.append(
                f"the claim names no chip: both sides judged on one device they share ({pick})"
                if pick
                else "the claim names no chip and the two sides ran on no device in common"
            )
    common = sorted({_stack_of(r) for r in rn} & {_stack_of(r) for r in rd})
    if common and len({_stack_of(r) for r in rn + rd}) > 1:  # like for like where the runs allow it
        pick = max(common, key=lambda k: sum(_stack_of(r) == k for r in rn + rd))
        rn, rd = [r for r in rn if _stack_of(r) == pick], [r for r in rd if _stack_of(r) == pick]
        v.reasons.append(f"both sides judged on the stack they share: {pick}")
    if not rn or not rd:
        v.reasons.append(
            "no matching runs of "
            + " and ".join(s for s, r in (("the numerator", rn), ("the denominator", rd)) if not r)
        )
        return v
    _throttle_note(rn + rd, v)
    c = compare_stats(cases.case_stat(rn, metric), cases.case_stat(rd, metric))
    v.numbers.update(
        measured_ratio=c.ratio,
        ci95_low=c.ci_low,
        ci95_high=c.ci_high,
        interval_basis=c.basis,
        numerator_trials=c.run_trials,
        denominator_trials=c.base_trials,
    )
    if c.ci_low is None:
        v.reasons.append("too few samples for an interval")
        return v
    decided = _decide(c.ci_low, c.ci_high, claim.value, claim.compare, claim.tolerance)
    v.reasons.append(
        f"measured {c.ratio:.3g}x, 95% CI [{c.ci_low:.3g}, {c.ci_high:.3g}] ({c.basis}); claimed "
        f"{claim.compare.replace('_', ' ')} {claim.value:g}x"
    )
    differ = _sides_differ(claim, rn, rd)
    if differ and decided in ("confirmed", "refuted"):
        v.reasons.append(
            f"would be {decided}, but the two sides also differ in {'; '.join(differ)}: not like for "
            f"like, so inconclusive (a ratio claim may differ only in {' or '.join(COMPARED)})"
        )
        decided = "inconclusive"
    elif differ:
        v.reasons.append(f"the two sides also differ in {'; '.join(differ)}")
    loaded = cases.loaded_trials(rn), cases.loaded_trials(rd)
    if any(loaded) and decided in ("confirmed", "refuted"):
        v.reasons.append(
            f"would be {decided}, but {loaded[0]} of {len(rn)} numerator and {loaded[1]} of {len(rd)} "
            "denominator trial(s) ran on a loaded host: load on one side moves the ratio either way, "
            "so inconclusive; rerun on quiet hosts"
        )
        decided = "inconclusive"
    bound = (cases.host_bound_trials(rn), cases.host_bound_trials(rd)) if metric not in PREFILL_METRICS else (0, 0)
    if any(bound) and decided in ("confirmed", "refuted"):
        v.reasons.append(
            f"would be {decided}, but {bound[0]} of {len(rn)} numerator and {bound[1]} of {len(rd)} "
            "denominator trial(s) were host-bound (the device waited for the host each decode step): "
            "their speed is the host's, so the ratio compares hosts and software, not the chips, even "
            "with the claimed stack; inconclusive, rerun with a stack that keeps the devices busy"
        )
        decided = "inconclusive"
    shares = roofline_share(rn, metric), roofline_share(rd, metric)
    v.numbers.update(numerator_roofline_share=shares[0], denominator_roofline_share=shares[1])
    claimed_stack = all(stack_matches(num.stack, _stack_of(r)) for r in rn) and all(
        stack_matches(den.stack, _stack_of(r)) for r in rd
    )
    near = all(x is not None and x >= REFUTES_AT for x in shares)
    if decided == "confirmed" and claim.compare == "about" and (num.stack or den.stack) and not claimed_stack:
        v.reasons.append(
            f"would be confirmed, but by another stack than the claim's ({num.stack or den.stack}): the "
            "ratio is plausible, not confirmed for the claimed stack; runs with it decide"
        )
        decided = "inconclusive"
    if decided in ("confirmed", "refuted") and not (claimed_stack or near):
        at = " and ".join(f"{x:.0%}" if x is not None else "an unmeasured share" for x in shares)
        v.reasons.append(
            f"would be {decided}, but the runs reached {at} of their measured roofline with {', '.join(_stacks(rn + rd))}: "
            "below the chips' limits a ratio measures the software and the host as much as the chips (eager decode "
            "bound by kernel launches makes two GPUs look alike), so inconclusive; deciding it takes "
            + (
                f"both sides with the claimed stack ({num.stack if num.stack == den.stack else f'{num.stack} / {den.stack}'}), "
                f"or both at {REFUTES_AT:.0%} or more of their measured roofline"
                if num.stack or den.stack
                else f"both sides at {REFUTES_AT:.0%} or more of their measured roofline (the claim names no stack)"
            )
        )
        decided = "inconclusive"
    v.verdict = decided
    return v


def claim_runs(claim: Claim, records: list[dict]) -> list[dict]:
    """The records a claim looks at: runs of its case (of either side of a ratio); for a fits
    claim, runs of its model in its dtype on its chips, any workload."""
    if claim.kind == "fits":
        return matching_runs_any(claim.case, records)
    if claim.kind == "metric":
        return matching_runs(claim.case, records)
    return matching_runs(claim.numerator, records) + matching_runs(claim.denominator, records)


def check_all(claims: list[Claim], records: list[dict], account: cases.Account | None = None) -> list[Verdict]:
    """Every claim's verdict; records are deduplicated by record_id first (a file given twice, or a
    file and its merge, counts once), and `account` says what happened to them: used (a claim looked
    at it), unmatched (no claim is about its case), failed, or a duplicate."""
    unique = cases.dedupe(records, account)
    if account is not None:
        looked_at = {id(r) for c in claims for r in claim_runs(c, unique)}
        account.failed = sum(1 for r in unique if r.get("status") != "ok")
        account.used = sum(1 for r in unique if r.get("status") == "ok" and id(r) in looked_at)
        account.unmatched = len(unique) - account.failed - account.used
    return [check(c, unique) for c in claims]
