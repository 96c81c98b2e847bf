"""Comparing runs with baselines: small pure functions over result records.

Cases match by identity: (model, dtype, workload, batch, backend kind). For each metric the
comparison is a *speed ratio* (> 1: the run is better, whatever the metric's direction) with a
95% confidence interval from Welch's t on the log of the per-round samples (so the ratio is one
of geometric means and its interval is asymmetric, as ratios are). A verdict is only "faster"
or "slower" when the whole interval says so.

The gate (`threshold`, e.g. 0.95: "fail when more than 5% worse") fails a case only when it is
significantly worse than the threshold; a case whose interval straddles the threshold and is
wider than the tolerance itself is reported as too noisy to judge, never flipped on noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as st

from bench.measuring.metrics import HEADLINE, METRICS

IDENTITY = ("model", "dtype", "workload", "batch", "backend_kind")


@dataclass(frozen=True)
class MetricComparison:
    metric: str
    higher_is_better: bool
    run_median: float | None
    base_median: float | None
    n_run: int
    n_base: int
    ratio: float | None  # speed ratio: > 1 means the run is better
    ci_low: float | None
    ci_high: float | None
    verdict: str  # faster | slower | no significant difference | insufficient data
    gate: str | None = None  # pass | FAIL | too noisy (only with a threshold)


def _finite(values) -> np.ndarray:
    x = np.asarray([v for v in (values or []) if v is not None and math.isfinite(v) and v > 0], float)
    return x


def compare_samples(run, base, metric: str, threshold: float | None = None) -> MetricComparison:
    higher = METRICS[metric][1]
    x, y = _finite(run), _finite(base)
    med = lambda a: float(np.median(a)) if a.size else None  # noqa: E731
    if x.size == 0 or y.size == 0:
        return MetricComparison(metric, higher, med(x), med(y), x.size, y.size, None, None, None,
                                "insufficient data", None if threshold is None else "too noisy")
    lx, ly = np.log(x), np.log(y)
    d = lx.mean() - ly.mean()  # log of (run / base), geometric means
    sign = 1 if higher else -1
    ratio = math.exp(sign * d)
    if x.size < 2 or y.size < 2:
        return MetricComparison(metric, higher, med(x), med(y), x.size, y.size, ratio, None, None,
                                "insufficient data", _gate(ratio, None, None, threshold))
    vx, vy = lx.var(ddof=1) / x.size, ly.var(ddof=1) / y.size
    se = math.sqrt(vx + vy)
    if se == 0:
        lo = hi = ratio
    else:
        dof = (vx + vy) ** 2 / ((vx**2 / (x.size - 1)) + (vy**2 / (y.size - 1)))
        half = float(st.t.ppf(0.975, dof)) * se
        lo, hi = sorted((math.exp(sign * (d - half)), math.exp(sign * (d + half))))
    verdict = "faster" if lo > 1 else "slower" if hi < 1 else "no significant difference"
    return MetricComparison(metric, higher, med(x), med(y), x.size, y.size, ratio, lo, hi, verdict,
                            _gate(ratio, lo, hi, threshold))


def _gate(ratio, lo, hi, threshold):
    if threshold is None:
        return None
    if lo is None:
        return "too noisy"  # one round cannot tell a regression from noise
    if hi < threshold:
        return "FAIL"
    if lo < threshold and (hi - lo) / 2 > 1 - threshold:
        return "too noisy"
    return "pass"


def identity(rec: dict) -> tuple:
    return tuple(rec.get(k) for k in IDENTITY)


def latest_by_identity(records: list[dict]) -> dict[tuple, dict]:
    """One record per case identity: the newest ok one (records are appended in time order)."""
    out: dict[tuple, dict] = {}
    for rec in sorted(records, key=lambda r: r.get("timestamp_utc") or ""):
        if rec.get("status") == "ok":
            out[identity(rec)] = rec
    return out


DEFAULT_METRICS = ("headline", "ttft_s", "tpot_s")  # "headline": the workload kind's own throughput


def resolve_metric(metric: str, rec: dict) -> str:
    return HEADLINE.get(rec.get("kind"), "output_tok_per_s") if metric == "headline" else metric


def best_baseline(run: list[dict], base: list[dict], label) -> list[dict]:
    """For each case of the run, the baseline records of the best-matching machine: the same
    device (by `label`) when the baselines have it, else any machine of the same backend kind."""
    runs = latest_by_identity(run)
    own = {r.get("record_id") for r in run}
    base = [b for b in base if b.get("record_id") not in own]  # a run is never its own baseline
    chosen = []
    for key, rec in runs.items():
        same_case = [b for b in base if identity(b) == key and b.get("status") == "ok"]
        same_device = [b for b in same_case if label(b) == label(rec)]
        chosen.extend(same_device or same_case)
    return chosen


@dataclass(frozen=True)
class Comparison:
    rows: list[dict]  # one per (case, metric)
    unmatched_run: list[tuple]
    unmatched_base: list[tuple]

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.rows if r["gate"] == "FAIL"]


def compare_records(run: list[dict], base: list[dict], metrics: list[str] | None = None,
                    threshold: float | None = None) -> Comparison:
    runs, bases = latest_by_identity(run), latest_by_identity(base)
    rows = []
    for key, rec in runs.items():
        ref = bases.get(key)
        if ref is None:
            continue
        for metric in dict.fromkeys(resolve_metric(m, rec) for m in metrics or DEFAULT_METRICS):
            run_s, base_s = rec.get(f"{metric}_samples"), ref.get(f"{metric}_samples")
            if not any(v is not None for v in (run_s or []) + (base_s or [])):
                continue  # the metric does not apply to this workload (TPOT of a prefill)
            c = compare_samples(run_s, base_s, metric, threshold)
            rows.append({**dict(zip(IDENTITY, key)), "device": rec.get("device_name"),
                         "base_device": ref.get("device_name"), **c.__dict__})
    return Comparison(rows, [k for k in runs if k not in bases], [k for k in bases if k not in runs])
