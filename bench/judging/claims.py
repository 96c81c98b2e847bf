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
A fits claim is decided by memory alone (check_fits_runs). Runs split over another number of
chips than the claim's `chips` (default 1) never decide it. A claim that names no chip is judged
per device and refuted by none. Trials on a loaded host refute nothing by a shortfall, confirm no
`about` and decide no ratio (load only slows a run); so do host-bound trials (record field
host_bound: the device waited for the host each decode step) for a decode metric.
A run whose backend failed the correctness gate (its record's `correct` is false) never
confirms a claim: wrong runs are left out and named, and they refute it when they ran the
claimed stack (its runs all wrong: fast but wrong). Records are deduplicated by record_id
first: a file given twice counts once.

This module holds the claims file and the verdict; the rest lives beside it: claim_physics.py (the
roofline, a case that cannot run, fits), claim_runs.py (the runs of a case, stacks, intervals) and
claim_checks.py (the three checks and their guards).

The file's structure (types, ranges, unknown keys, nested ones included) is validated with
pydantic (ClaimsFile below, published as results/schema/claims.schema.json); names (models,
chips, metrics, workloads) are then checked against this chipbench's tables.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chipbench.judging.chips import Chip, load_chips, match_chip, read_toml
from chipbench.judging import cases
from chipbench.judging.claim_checks import check_fits_runs, check_metric, check_ratio
from chipbench.judging.claim_costs import check_cost, check_energy
from chipbench.judging.claim_physics import fits
from chipbench.judging.claim_runs import matching_runs, matching_runs_any
from chipbench.errors import UsageError
from chipbench.measuring.metrics import METRICS
from chipbench.measuring.workload import parse_workload
from chipbench.models.counts import DTYPE_BYTES
from chipbench.models.zoo import MODELS

KINDS = ("metric", "ratio", "fits", "cost", "energy")
COMPARES = ("at_least", "at_most", "about")
UNITS = {"tokens/s": 1.0, "s": 1.0, "ms": 1e-3, "x": 1.0, "$/M tokens": 1.0, "tokens/J": 1.0}
THROUGHPUTS = ("output_tok_per_s", "decode_tok_per_s", "prefill_tok_per_s")  # what a cost claim may price
CASE_FIELDS = ("model", "dtype", "workload", "batch", "chip", "stack", "chips")


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
    usd_per_hour: Annotated[float, Field(gt=0, lt=1e6)] | None = Field(
        None, description="a cost claim's price per device-hour (else the prices file's row for its chip)"
    )
    provider: Name | None = Field(None, description="a cost claim's provider kind in the prices file")


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
    usd_per_hour: float | None = None  # cost claims: the price of one device-hour
    price_note: str = ""  # cost claims: where that price came from


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


def _cost_price(raw: dict, case: Case, path, cid, prices) -> tuple[float, str]:
    """A cost claim's $/device-hour: its own, or the prices file's row for its chip and provider."""
    if raw.get("usd_per_hour") is not None:
        return float(raw["usd_per_hour"]), "the claim's own price"
    if case.chip is None:
        raise _err(
            path,
            cid,
            "usd_per_hour",
            "a cost claim needs a price: its own usd_per_hour, or a chip the prices file prices",
        )
    from chipbench.judging.prices import load_basis

    basis = prices or load_basis(provider=raw.get("provider"))
    if raw.get("provider") and prices is not None:
        basis = replace(basis, provider=raw["provider"], used={})
    names = [case.chip.name, *getattr(case.chip, "aliases", ())]
    found = next((h for n in names if (h := basis.hourly(n)) is not None), None)
    if found is None:
        raise _err(
            path,
            cid,
            "usd_per_hour",
            f"no {basis.provider} price for {case.chip.name} in {basis.file}: give usd_per_hour",
        )
    return found


def parse_claims(
    data: dict, path: str | Path = "<claims>", chips: list[Chip] | None = None, prices=None
) -> list[Claim]:
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
        for only in ("usd_per_hour", "provider"):
            if only in raw and kind != "cost":
                raise _err(path, cid, only, "only a cost claim has a price")
        if kind in ("cost", "energy"):
            if "numerator" in raw or "denominator" in raw:
                raise _err(path, cid, "numerator", f"a {kind} claim has one case")
            unit = {"cost": "$/M tokens", "energy": "tokens/J"}[kind]
            if raw.get("unit", unit) != unit:
                raise _err(path, cid, "unit", f"{raw['unit']!r} does not fit a {kind} claim; valid: {unit}")
            if raw.get("value") is None:
                raise _err(path, cid, "value", f"is required: a positive number of {unit}")
            case = _case(raw, path, cid, chips, needs_workload=True)
            if kind == "energy":
                if "metric" in raw:
                    raise _err(
                        path, cid, "metric", "an energy claim is about output tokens per joule; it names no metric"
                    )
                claims.append(Claim(**common, metric="tokens_per_j", value=float(raw["value"]), case=case))
                continue
            metric = raw.get("metric", "output_tok_per_s")
            if metric not in THROUGHPUTS:
                raise _err(
                    path,
                    cid,
                    "metric",
                    f"{metric!r}: a cost claim prices a throughput; valid: {', '.join(THROUGHPUTS)}",
                )
            if compare not in ("at_most", "at_least"):
                raise _err(
                    path, cid, "compare", "a cost claim compares at_most or at_least (a price makes 'about' lopsided)"
                )
            price, note = _cost_price(raw, case, path, cid, prices)
            claims.append(
                Claim(
                    **common, metric=metric, value=float(raw["value"]), case=case, usd_per_hour=price, price_note=note
                )
            )
            continue
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
        return check_fits_runs(claim, records, v)
    if claim.kind == "metric":
        return check_metric(claim, records, v)
    if claim.kind == "cost":
        return check_cost(claim, records, v)
    if claim.kind == "energy":
        return check_energy(claim, records, v)
    return check_ratio(claim, records, v)


def claim_runs(claim: Claim, records: list[dict]) -> list[dict]:
    """The records a claim looks at: runs of its case (of either side of a ratio); for a fits
    claim, runs of its model in its dtype on its chips, any workload."""
    if claim.kind == "fits":
        return matching_runs_any(claim.case, records)
    if claim.kind in ("metric", "cost", "energy"):
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
