"""Comparing runs with baselines: small pure functions over result records.

Cases match by identity (bench/judging/cases.py): model, dtype, workload, batch, backend kind,
execution path and device. Comparing one device with another is a deliberate choice
(`across_devices`), and never gates. For each metric the comparison is a *speed ratio* (> 1: the
run is better, whatever the metric's direction) of the case statistics (geometric means of trial
medians), with a 95% interval on its log that counts every level of noise (bench/stats.py): the
trials within each invocation, the drift of a new invocation against the baseline's mean, measured
where the baseline (or the run) holds several invocations (pooled over the device's cases), else
the documented prior. The row says which (`drift_source`).

The gate (`threshold` T, e.g. 0.95: "fail when more than 5% worse") tests, for each gated row (the
headline metric of each case unless others are named), whether the true ratio lies below T: a
one-sided p-value, adjusted by Holm's step-down over every gated row of the comparison, fails the
row at stats.GATE_ALPHA. Each gated row says the smallest regression it would catch with 80%
probability (`mdr`) and what more trials or invocations would buy (`mdr_more`). More trials only
ever shrink the interval, so they never make the gate weaker. The calibration of these rates is
tests/test_calibration.py and docs/statistics.md.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from chipbench import stats
from chipbench.errors import UsageError
from chipbench.judging import cases
from chipbench.judging.cases import IDENTITY, Account, CaseStat, case_stat, dedupe, group, ok
from chipbench.measuring.metrics import HEADLINE, METRICS
from chipbench.models.zoo import MODELS

DEFAULT_METRICS = ("headline", "ttft_s", "tpot_s")  # "headline": the workload kind's own throughput
GATE_METRICS = ("headline",)  # gated unless others are named: one family member per case
MACHINE_MOVED = 1.15  # the device's own measured ceiling differs between the sides by more than this factor
CEILING_FIELDS = {
    "bandwidth": ("ceiling_gb_per_s", "memory bandwidth", "GB/s"),
    "matmul": ("ceiling_tflops", "matmul rate", "TFLOP/s"),
}
BESIDE_FIELDS = {"bandwidth": "ceiling_beside_gb_per_s", "matmul": "ceiling_beside_tflops"}


def device_rate(r: dict, bound: str) -> tuple[float | None, bool]:
    """A trial's device rate for the ceiling `bound` ("bandwidth", "matmul"): the one measured right
    after its case where the record has it (True), else the suite's at its start (False)."""
    for key in (BESIDE_FIELDS[bound], CEILING_FIELDS[bound][0]):
        v = r.get(key)
        if isinstance(v, (int, float)) and v > 0:
            return v, key == BESIDE_FIELDS[bound]
    return None, False


@dataclass(frozen=True)
class MetricComparison:
    metric: str
    higher_is_better: bool
    run_value: float | None  # the case statistic (cases.STATISTIC)
    base_value: float | None
    run_trials: int
    base_trials: int
    run_rounds: int
    base_rounds: int
    ratio: float | None  # speed ratio: > 1 means the run is better
    ci_low: float | None
    ci_high: float | None
    basis: str  # what the interval rests on
    verdict: str  # faster | slower | no significant difference | insufficient data (rows: machine differs)
    run_invocations: int = 0
    base_invocations: int = 0
    se_log: float | None = None  # standard error of log(ratio)
    df: float | None = None  # its degrees of freedom (inf: a prior stands in for the unknown level)
    trial_spread: float | None = None  # relative stdev of a trial within an invocation (stats.Noise.trial_var)
    drift: float | None = None  # relative stdev of an invocation's level (stats.Noise.drift_var)
    drift_source: str | None = None  # measured (df) | prior | ...
    p_below: float | None = None  # one-sided p of "ratio >= threshold" (with a threshold)
    p_holm: float | None = None  # Holm-adjusted over the gated rows
    mdr: float | None = None  # smallest regression the gate catches with stats.POWER probability
    mdr_more: str | None = None  # what more trials or invocations would make of it
    gate: str | None = None  # pass | FAIL | too noisy | no baseline (gated rows, with a threshold)
    gate_note: str | None = None
    needs: str | None = None  # no interval (fewer than stats.MIN_DF degrees of freedom): what would give one


def _more_trials(run: CaseStat, base: CaseStat, noise: stats.Noise) -> str:
    """How many more trials of the run (as one more invocation's worth, in this invocation) would
    give the interval its stats.MIN_DF degrees of freedom; each adds one to the trials' own."""
    _, _, df = stats.difference(run.side, base.side, noise)
    first, *rest = run.side.groups
    for k in range(1, 31):
        more = stats.Side((first + (sum(first) / len(first),) * k, *rest))
        grown = dataclasses.replace(noise, trial_df=noise.trial_df + k) if noise.trial_var else noise
        if stats.difference(more, base.side, grown)[2] >= stats.MIN_DF:
            return (
                f"no interval: {df:.1f} degrees of freedom; about {k} more trial(s) of the run give one "
                f"(--repeats {run.trials + k})"
            )
    more = max(1, math.ceil(stats.MIN_DF - df))
    return (
        f"no interval: {df:.1f} degrees of freedom; about {more} more invocation(s) in the baseline give one "
        "(chipbench baseline over more runs)"
    )


def case_noise(run: CaseStat, base: CaseStat, drift: tuple[float, int] | None = None) -> stats.Noise:
    """The noise of one case's comparison: its trials' variance pooled over both sides, and the
    machine's drift (`drift`, pooled over the device's cases; else this case's own invocations)."""
    trial = stats.trial_variance([run.side, base.side])
    if drift is None:
        drift = stats.drift_variance([(run.side, trial and trial[0]), (base.side, trial and trial[0])])
    rounds = [v for v in (run.median_var_from_rounds, base.median_var_from_rounds) if v is not None]
    return stats.noise_for(run.side, base.side, trial, drift, rounds_var=max(rounds) if rounds else None)


def _basis(run: CaseStat, base: CaseStat, noise: stats.Noise) -> str:
    def side(s: CaseStat) -> str:
        return f"{s.trials} trial{'s' if s.trials != 1 else ''}" + (
            f" in {s.side.k} invocations" if s.side.k > 1 else ""
        )

    drift = f"{stats.relative(math.sqrt(noise.drift_var)):.1%}"
    if noise.drift_known:
        what = f"invocation drift {drift}, {noise.drift_source}"
    else:
        what = (
            f"invocation drift unknown (one invocation a side): {noise.drift_source} {drift} assumed; a baseline "
            "of several invocations measures it"
        )
    return f"{side(run)} vs {side(base)}; {what}"


def compare_stats(run: CaseStat, base: CaseStat, noise: stats.Noise | None = None) -> MetricComparison:
    """One metric of one case, run against baseline: the speed ratio and its 95% interval over every
    level of noise. `noise` defaults to what the two sides alone say (case_noise)."""
    metric = run.metric
    higher = METRICS[metric][1]
    common = dict(
        metric=metric,
        higher_is_better=higher,
        run_value=run.value,
        base_value=base.value,
        run_trials=run.trials,
        base_trials=base.trials,
        run_rounds=run.rounds,
        base_rounds=base.rounds,
        run_invocations=run.side.k,
        base_invocations=base.side.k,
    )
    if run.value is None or base.value is None:
        return MetricComparison(
            **common, ratio=None, ci_low=None, ci_high=None, basis="none", verdict="insufficient data"
        )
    noise = noise or case_noise(run, base)
    sign = 1 if higher else -1
    d, se, df = stats.difference(run.side, base.side, noise)
    d *= sign
    if df < stats.MIN_DF:  # a t with under 2 degrees of freedom: no interval worth printing
        return MetricComparison(
            **common,
            ratio=math.exp(d),
            ci_low=None,
            ci_high=None,
            basis=_basis(run, base, noise),
            verdict="insufficient data",
            df=df,
            drift_source=noise.drift_source,
            needs=_more_trials(run, base, noise),
        )
    lo, hi = stats.t_interval(d, se, df)
    lo, hi = math.exp(lo), math.exp(hi)
    verdict = "faster" if lo > 1 else "slower" if hi < 1 else "no significant difference"
    return MetricComparison(
        **common,
        ratio=math.exp(d),
        ci_low=lo,
        ci_high=hi,
        basis=_basis(run, base, noise),
        verdict=verdict,
        se_log=se,
        df=df,
        trial_spread=stats.relative(math.sqrt(noise.trial_var)) if noise.trial_var else None,
        drift=stats.relative(math.sqrt(noise.drift_var)),
        drift_source=noise.drift_source,
    )


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}" if x >= 0.095 else f"{x:.1%}"


def power_note(
    noise: stats.Noise, run: stats.Side, base: stats.Side, threshold: float, rows: int, pool: int = 1
) -> str:
    """What more trials or invocations would make of the smallest detectable regression:
    "run trials 3: 14%; 6: 9%; 10: 8%; a baseline of 5 invocations: 7%". The last assumes the
    drift then measured at its present value (or the prior's), over `pool` cases of the device."""
    said = []
    for n in (3, 6, 10):
        se, df = stats.projected_se(noise, n, 1, base)
        said.append(f"{n}: {_pct(stats.min_detectable(se, df, threshold, rows))}")
    more = max(base.k + 2, 3)
    per = max(round(base.n / base.k), 1)
    future = dataclasses.replace(
        noise,
        drift_df=max(noise.drift_df if noise.drift_known else 0, (more - 1) * pool),
        drift_source="measured",
        drift_n0=per if noise.trial_var else 0.0,
    )
    se, df = stats.projected_se(future, max(run.n, per, 3), 1, base, base_invocations=more)
    text = (
        "run trials "
        + "; ".join(said)
        + f"; a baseline of {more} invocations: {_pct(stats.min_detectable(se, df, threshold, rows))}"
    )
    if not noise.drift_known:
        text += " (drift then measured, not assumed)"
    return text


def gate_rows(rows: list[dict], sides: dict[int, tuple], threshold: float) -> None:
    """Decide the gate of every gated row in place: Holm over the family of rows with an interval;
    `sides` maps a row's index to (noise, run side, base side) for its power figures."""
    family = [i for i, r in enumerate(rows) if r.get("gate") == "pending"]
    adjusted = stats.holm([rows[i]["p_below"] for i in family])
    m = len(family)
    pools: dict[tuple, int] = {}
    for i in family:
        pools[rows[i]["device"], rows[i]["metric"]] = pools.get((rows[i]["device"], rows[i]["metric"]), 0) + 1
    for i, p in zip(family, adjusted):
        r = rows[i]
        noise, run_side, base_side = sides[i]
        r["p_holm"] = p
        r["mdr"] = stats.min_detectable(r["se_log"], r["df"], threshold, m)
        r["mdr_more"] = power_note(noise, run_side, base_side, threshold, m, pools[r["device"], r["metric"]])
        rows_text = f"{m} gated row{'s' if m != 1 else ''}"
        if p <= stats.GATE_ALPHA:
            r.update(
                gate="FAIL",
                gate_note=f"significantly below {threshold:g} (one-sided p {r['p_below']:.2g}; "
                f"{p:.2g} after Holm over {rows_text})",
            )
        else:
            r.update(
                gate="pass",
                gate_note=f"not significantly below {threshold:g} (p {p:.2g} after Holm over "
                f"{rows_text}); catches a {_pct(r['mdr'])} regression with {stats.POWER:.0%} probability",
            )


def resolve_metric(metric: str, rec: dict) -> str:
    return HEADLINE.get(rec.get("kind"), "output_tok_per_s") if metric == "headline" else metric


def best_baseline(run: list[dict], base: list[dict]) -> tuple[list[dict], bool]:
    """The baseline records to compare a run with, and whether that is across devices: the same
    device's records when the baselines have any of the run's cases on it (compare_records then
    keeps, on a CPU, those with the run's matmul extensions where there are any: _same_cpu), else
    every device of the same backend kind (informative, never a gate). A run is never its own
    baseline."""
    own = {r.get("record_id") for r in run}
    base = [b for b in base if b.get("record_id") not in own]
    run_keys = set(group(run))
    same_device = [b for b in base if cases.identity(b) in run_keys]
    if same_device:
        return same_device, False
    across = {k[:-1] for k in run_keys}
    return [b for b in base if cases.identity(b, across_devices=True) in across], True


def _same_cpu(base: list[dict], run: list[dict]) -> list[dict]:
    """`base` less, for each case, the CPU records whose matmul extensions (`env_device_isa`) are
    other than the run's or unrecorded, where the baselines have that case on the run's own
    extensions: one CPU name covers machines whose bf16 matmul differs thirtyfold (this project's
    EPYC VMs: 0.63-0.80 TFLOP/s with AVX-512 BF16 on 2026-12-02, 0.021 on AVX2 alone on
    2026-12-06), and pooling their trials would judge the run against a mix of both. A case with
    no baseline on the run's extensions keeps them all, and its rows say the CPUs differ."""
    isas: dict[tuple, set] = {}
    for r in run:
        if r.get("backend_kind") == "cpu" and r.get("env_device_isa") is not None:
            isas.setdefault(cases.identity(r), set()).add(r["env_device_isa"])
    matching = {cases.identity(b) for b in base if b.get("env_device_isa") in isas.get(cases.identity(b), ())}
    return [b for b in base if cases.identity(b) not in matching or b.get("env_device_isa") in isas[cases.identity(b)]]


@dataclass(frozen=True)
class Comparison:
    rows: list[dict]  # one per (case, metric, and device pair)
    unmatched_run: list[tuple]
    unmatched_base: list[tuple]
    accounts: dict = field(default_factory=dict)  # side -> cases.Account
    across_devices: bool = False

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.rows if r["gate"] == "FAIL"]

    def account_lines(self) -> list[str]:
        return [a.line(side) for side, a in self.accounts.items()]


def gated_metrics(metrics: list[str] | None, gate_metrics: list[str] | None) -> list[str]:
    """What the gate tests: the metrics named for it; else the headline where it is shown (the
    default), else the metrics the comparison was asked to show (named, so gated)."""
    if gate_metrics:
        return list(gate_metrics)
    shown = list(metrics or DEFAULT_METRICS)
    return [m for m in GATE_METRICS if m in shown] or shown


def compare_records(
    run: list[dict],
    base: list[dict],
    metrics: list[str] | None = None,
    threshold: float | None = None,
    across_devices: bool = False,
    gate_metrics: list[str] | None = None,
) -> Comparison:
    """Every case of the run against its baseline (see the module doc). `metrics`: shown (default
    DEFAULT_METRICS); `gate_metrics`: gated with a threshold (default: gated_metrics; shown too)."""
    if across_devices and threshold is not None:
        raise UsageError(
            "a regression gate across different devices is refused: a different device is not a "
            "regression; compare each device with its own baseline (drop --across devices), or "
            "drop --fail-below to see the ratios"
        )
    acc_run, acc_base = Account(), Account()
    run = dedupe(run, acc_run)
    base = dedupe(base, acc_base)
    own = {r.get("record_id") for r in run}
    shared = [b for b in base if b.get("record_id") in own]
    base = [b for b in base if b.get("record_id") not in own]  # a run is never its own baseline
    if shared and not base:
        raise UsageError(
            f"every baseline record is one of the run's own ({len(shared)} with the same record ids: a file "
            "compared with itself?); a run is never its own baseline: compare it with the records of another run"
        )
    acc_base.duplicates += len(shared)
    if not across_devices:  # one CPU name, two machines: never pooled where the run's own has a baseline
        kept = _same_cpu(base, run)
        acc_base.other_cpu += len(base) - len(kept)
        base = kept
    runs, bases = group(run), group(base)
    shown = list(dict.fromkeys(list(metrics or DEFAULT_METRICS) + list(gate_metrics or [])))
    gated = gated_metrics(metrics, gate_metrics) if threshold is not None else []
    pairs, unmatched_run, matched_base = [], [], set()
    for key, recs in runs.items():
        partners = [k for k in bases if (k[:-1] == key[:-1] if across_devices else k == key)]
        acc_run.failed += len(recs) - len(ok(recs))
        if not partners:
            unmatched_run.append(key)
            acc_run.unmatched += len(ok(recs))  # its failed ones are counted as failed, once
            continue
        acc_run.used += len(ok(recs))
        for bkey in partners:
            matched_base.add(bkey)
            pairs.append((key, recs, bkey, bases[bkey]))
    case_stats = _case_stats(pairs, shown)
    drift = machine_drift(pairs, case_stats)
    rows, sides = [], {}
    for i, (key, recs, bkey, brecs) in enumerate(pairs):
        for row, side in _rows(key, recs, bkey, brecs, case_stats[i], gated, threshold, drift):
            if side is not None:
                sides[len(rows)] = side
            rows.append(row)
    if threshold is not None:
        gate_rows(rows, sides, threshold)
        for row in rows:
            _overrule(row, threshold)
    unmatched_base = [k for k in bases if k not in matched_base]
    for k, recs in bases.items():
        acc_base.failed += len(recs) - len(ok(recs))
        if k in matched_base:
            acc_base.used += len(ok(recs))
        else:
            acc_base.unmatched += len(ok(recs))
    return Comparison(rows, unmatched_run, unmatched_base, {"run": acc_run, "baseline": acc_base}, across_devices)


def bound_by(metric: str, kind: str | None) -> str | None:
    """The measured ceiling that bounds a metric of a workload kind: memory bandwidth for decode
    steps, the matmul rate for a prefill; None for a mix of both (a generate test's E2E)."""
    if metric in ("tpot_s", "decode_tok_per_s", "itl_s"):
        return "bandwidth"
    if metric in ("ttft_s", "prefill_tok_per_s"):
        return "bandwidth" if kind == "decode" else "matmul"  # tgN's first token is one decode step
    if metric in ("e2e_s", "output_tok_per_s"):
        return {"decode": "bandwidth", "prefill": "matmul"}.get(kind)
    return None


def _fig(x: float) -> str:
    """A rate in 3 significant figures without an exponent (3350 GB/s, not 3.35e+03)."""
    return f"{x:.0f}" if x >= 100 else f"{x:.3g}"


def _ceiling_ratio(okr: list[dict], okb: list[dict], metric: str):
    """The device ceiling that bounds `metric`, as each side measured it: (ratio run over baseline,
    run, baseline, what, unit, when), or None where a side has none. Each trial's rate is the one
    measured right after its case where the record has it (`ceiling_beside_*`), else the suite's at
    its start; a side's rate is the geometric mean over its trials."""
    bound = bound_by(metric, okr[-1].get("kind"))
    if bound is None:
        return None
    _, what, unit = CEILING_FIELDS[bound]
    sides = [[device_rate(r, bound) for r in recs] for recs in (okr, okb)]
    sides = [[v for v in side if v[0] is not None] for side in sides]
    if not all(sides):
        return None
    run, base = (math.exp(sum(math.log(v) for v, _ in side) / len(side)) for side in sides)
    after = [any(b for _, b in side) for side in sides]
    when = {
        (True, True): ", each right after its case",
        (True, False): ", the run's right after its case",
        (False, True): ", the baseline's right after its case",
    }.get(tuple(after), "")
    return run / base, run, base, what, unit, when


def machine_moved(okr: list[dict], okb: list[dict], metric: str, speed_ratio: float | None) -> dict:
    """When the device's own ceiling that bounds `metric` was measured on both sides and moved by
    more than MACHINE_MOVED between them: its ratio (run over baseline) and a note. A shared VM or
    CI runner can run at half its usual rate for minutes; a speed ratio that size then says as much
    about the machine as about the software. A VM that slows in the middle of a suite shows it only
    in the rates measured right after each case."""
    found = _ceiling_ratio(okr, okb, metric)
    if found is None or 1 / MACHINE_MOVED <= found[0] <= MACHINE_MOVED:
        return {}
    ratio, run, base, what, unit, when = found
    said = f"the device itself measured {ratio:.2f}x the baseline's {what} ({_fig(run)} vs {_fig(base)} {unit}{when})"
    if speed_ratio is not None and (speed_ratio - 1) * (ratio - 1) < 0:
        said += ": the machine moved the other way"
    else:
        said += ": a difference this size may be the machine's, not the software's"
    return {"machine_ratio": ratio, "machine_note": said}


MACHINE_DECIDES = (
    "what would decide it: a run when this machine measures its ceilings within "
    f"{MACHINE_MOVED - 1:.0%} of the baseline's (a quiet machine), or a baseline made on this machine as it is now "
    "(chipbench baseline over a few runs)"
)


OTHER_CPU_DECIDES = "what would decide it: a baseline made on a CPU with these matmul extensions (chipbench baseline)"


def machine_differs(row: dict) -> None:
    """A speed verdict the machine's own move explains: the run's device measured its bounding
    ceiling beyond MACHINE_MOVED of the baseline's, in the same direction as the speed. Then the
    verdict is "machine differs" (the speed one kept as speed_verdict) and the row says what would
    decide it. A speed that moved against the machine (faster on a slower machine) keeps its verdict.
    Another CPU under the same name (cpu_note: other matmul extensions) is another machine, whatever
    the speed says."""
    ratio = row.get("machine_ratio")
    verdict = row.get("verdict")
    if row.get("cpu_note") and verdict in ("faster", "slower", "no significant difference"):
        row.update(speed_verdict=verdict, verdict="machine differs", decide=OTHER_CPU_DECIDES)
        return
    if ratio is None or verdict not in ("faster", "slower"):
        return
    if (verdict == "slower") == (ratio < 1):
        row.update(speed_verdict=verdict, verdict="machine differs", decide=MACHINE_DECIDES)


def devices_ratio(okr: list[dict], okb: list[dict], metric: str) -> dict:
    """Across devices: the two devices' own measured ceiling that bounds `metric`, beside the speed
    ratio, so a reader sees how much of the difference the hardware's limits alone account for."""
    found = _ceiling_ratio(okr, okb, metric)
    if found is None:
        return {}
    ratio, run, base, what, unit, when = found
    return {
        "machine_ratio": ratio,
        "machine_note": f"the run's device measured {ratio:.3g}x the baseline device's {what} "
        f"({_fig(run)} vs {_fig(base)} {unit}{when})",
    }


def weights_differ(okr: list[dict], okb: list[dict]) -> dict:
    """A note when the two sides of a mixture of experts ran other weights (another seed or draw,
    or real ones): it routes by its weights, so its speed may move with them alone. A dense model
    does the same work with any weights: no note."""

    spec = MODELS.get(okr[-1].get("model"))
    run, base = ({str(r.get("weights")) for r in recs} for recs in (okr, okb))
    if run == base or (spec is not None and not spec.experts):
        return {}
    return {
        "weights_note": f"other weights ({', '.join(sorted(run))} vs {', '.join(sorted(base))}): "
        "an MoE routes by its weights, so its speed may differ for that alone"
    }


def cpus_differ(okr: list[dict], okb: list[dict]) -> dict:
    """A note when the two sides' CPUs, one name to the device identity ("Intel(R) Xeon(R) Processor
    (2 cores)" on two VMs), reported other matmul extensions (`env_device_isa`: AVX-512, AMX, ...):
    other machines, whose bf16 matmul can differ several times over. Said where both sides recorded
    them and they differ (records that did not record theirs are left out of the sets: a baseline
    part of whose trials are known to come from another CPU is no baseline either)."""
    run, base = (
        {r.get("env_device_isa") for r in recs if r.get("backend_kind") == "cpu"} - {None} for recs in (okr, okb)
    )
    if not run or not base or run == base:
        return {}
    said = lambda isas: " | ".join(sorted(i or "none of them" for i in isas))  # noqa: E731
    return {
        "cpu_note": f"another CPU under the same name: the run's reported {said(run)}, the baseline's "
        f"{said(base)} (matmul extensions)"
    }


SOFTWARE = (
    ("torch", "env_torch"),
    ("transformers", "env_transformers"),
    ("runtime", "env_runtime"),
    ("driver", "env_driver"),
    ("Python", "env_python"),
    ("torch threads", "env_torch_threads"),
)


def software_differ(okr: list[dict], okb: list[dict]) -> dict:
    """A note naming what software differs between the sides (torch, transformers, runtime, driver,
    Python, torch's thread count, an engine's stack), so a speed ratio reads beside what changed:
    often the point of a comparison, never a reason to withhold a verdict. A fact either side did not
    record is left out, not guessed."""
    said = []
    for label, key in SOFTWARE:
        run, base = ({str(r[key]) for r in recs if r.get(key) is not None} for recs in (okr, okb))
        if key == "env_runtime" and all(v.startswith("torch ") for v in run | base):
            continue  # the CPU's runtime is torch itself, said above
        if run and base and run != base:
            said.append(f"{label} {' | '.join(sorted(run))} vs {' | '.join(sorted(base))}")

    def engine(r: dict) -> str:  # the stack beyond transformers' version, which is said above
        return str(r.get("stack")).replace(str(r.get("env_transformers")), "")

    run, base = ({engine(r) for r in recs if r.get("stack")} for recs in (okr, okb))
    if run and base and run != base:
        stacks = lambda recs: " | ".join(sorted({str(r["stack"]) for r in recs if r.get("stack")}))  # noqa: E731
        said.append(f"stack {stacks(okr)} vs {stacks(okb)}")
    return {"software_note": "other software (run vs baseline): " + "; ".join(said)} if said else {}


def _case_stats(pairs, metrics) -> list[dict[str, tuple[CaseStat, CaseStat]]]:
    """Per matched pair: each shown metric (resolved for its kind) with the run's and the baseline's
    case statistic, where either side has a value."""
    out = []
    for _, recs, _, brecs in pairs:
        okr, okb = ok(recs), ok(brecs)
        found = {}
        for metric in dict.fromkeys(resolve_metric(m, okr[-1]) for m in metrics) if okr and okb else ():
            rs, bs = case_stat(okr, metric), case_stat(okb, metric)
            if rs.value is not None or bs.value is not None:
                found[metric] = (rs, bs)
        out.append(found)
    return out


def machine_drift(pairs, case_stats) -> dict[tuple, tuple[float, int] | None]:
    """The drift between invocations, per (run device, metric), pooled over every matched case of
    that device with several invocations on a side (stats.drift_variance): the machine's, not one
    case's, so a baseline of a few invocations still measures it with some degrees of freedom."""
    found: dict[tuple, list] = {}
    for (key, *_), per_metric in zip(pairs, case_stats):
        for metric, (rs, bs) in per_metric.items():
            if rs.value is None or bs.value is None:
                continue
            trial = stats.trial_variance([rs.side, bs.side])
            found.setdefault((key[-1], metric), []).extend(
                [(rs.side, trial and trial[0]), (bs.side, trial and trial[0])]
            )
    return {k: stats.drift_variance(v) for k, v in found.items()}


def _overrule(row: dict, threshold: float) -> None:
    """What the measurements beside the speed say of a gated row: a machine that slowed past the
    tolerance cannot tell a regression from itself; another CPU is no baseline at all."""
    if row["gate"] == "FAIL" and row.get("machine_ratio", 1) < threshold:
        row.update(gate="too noisy", gate_note=f"too noisy to gate at {threshold:g} now: {row['machine_note']}")
    if row["gate"] is not None and row.get("cpu_note"):  # another machine is no baseline, pass or FAIL
        row.update(gate="no baseline", gate_note=f"{row['cpu_note']}: make a baseline on this CPU")


def _no_verdict(ident: dict, verdict: str, gate: str | None, note, okr: list, okb: list) -> list[tuple]:
    return [
        (
            {
                **ident,
                "metric": "-",
                "verdict": verdict,
                "gate": gate,
                "gate_note": note,
                "ratio": None,
                "ci_low": None,
                "ci_high": None,
                "run_value": None,
                "base_value": None,
                "run_trials": len(okr),
                "base_trials": len(okb),
                "basis": "none",
            },
            None,
        )
    ]


def _rows(key, recs, bkey, brecs, per_metric, gated, threshold, drift) -> list[tuple[dict, tuple | None]]:
    """The rows of one case pair, each with (noise, run side, base side) where the gate may test it."""
    ident = dict(zip(IDENTITY, key)) | {"base_device": bkey[-1]}
    okr, okb = ok(recs), ok(brecs)
    gating = threshold is not None
    if not okr or not okb:
        side = "the run" if not okr else "the baseline"
        failed = not okr and okb
        return _no_verdict(
            ident,
            f"every trial failed in {side}",
            ("FAIL" if failed else "no baseline") if gating else None,
            recs[-1].get("error") if not okr else brecs[-1].get("error"),
            okr,
            okb,
        )
    wrong = [[r for r in recs if r.get("correct") is False] for recs in (okr, okb)]
    if any(wrong):  # fast but wrong is not faster: no speed verdict, and a wrong run fails the gate
        side, bad, of = ("the run", wrong[0], okr) if wrong[0] else ("the baseline", wrong[1], okb)
        return _no_verdict(
            ident,
            f"{len(bad)} of {len(of)} trial(s) of {side} failed the correctness gate: no speed verdict",
            ("FAIL" if wrong[0] else "no baseline") if gating else None,
            cases.check_text(bad[0]),
            okr,
            okb,
        )
    partial = [
        [r for r in recs if (r.get("serve_failed") or 0) + (r.get("serve_not_sent") or 0) > 0] for recs in (okr, okb)
    ]
    if any(partial):  # a serving level that served part of its load did less work: its speed compares with nothing
        side, cut, of = ("the run", partial[0], okr) if partial[0] else ("the baseline", partial[1], okb)
        first = cut[0]
        return _no_verdict(
            ident,
            f"{len(cut)} of {len(of)} trial(s) of {side} served part of the level's requests: no speed verdict",
            ("FAIL" if partial[0] else "no baseline") if gating else None,
            f"{first.get('serve_failed') or 0} failed, {first.get('serve_not_sent') or 0} unsent "
            f"of {first.get('serve_requests')}: {first.get('serve_errors') or 'the time bound'}",
            okr,
            okb,
        )
    out = []
    sample = okr[-1]
    gated_here = {resolve_metric(m, sample) for m in gated}
    for metric, (rs, bs) in per_metric.items():  # a metric that does not apply (TPOT of a prefill) is not there
        noise = case_noise(rs, bs, drift.get((key[-1], metric))) if rs.value and bs.value else None
        c = compare_stats(rs, bs, noise)
        same_device = key[-1] == bkey[-1]  # across devices, a different ceiling is the point: shown, not a caveat
        row = {
            **ident,
            **c.__dict__,
            "run_loaded": cases.loaded_trials(okr),
            "base_loaded": cases.loaded_trials(okb),
            **(machine_moved(okr, okb, metric, c.ratio) if same_device else devices_ratio(okr, okb, metric)),
            **weights_differ(okr, okb),
            **(cpus_differ(okr, okb) if same_device else {}),
            **software_differ(okr, okb),
        }
        if same_device:
            machine_differs(row)
        side = None
        if gating and metric in gated_here:
            if c.se_log is None:
                row.update(gate="too noisy", gate_note=c.needs or "no interval: too few rounds")
            elif not noise.gateable:
                row.update(
                    gate="too noisy",
                    gate_note="too noisy to gate: one trial a side in one invocation each, so "
                    "nothing measured the spread between processes; run with --repeats 3 (or --bench-repeats 3) "
                    "on either side",
                )
            else:
                row.update(gate="pending", p_below=stats.p_below(math.log(c.ratio), c.se_log, c.df, threshold))
                side = (noise, rs.side, bs.side)
        out.append((row, side))
    return out


def baseline_power(records: list[dict], threshold: float = 0.95) -> list[dict]:
    """Per case of a baseline: the noise it measured (trials within an invocation, the machine's
    drift between invocations) and the smallest regression of its headline metric that the gate at
    `threshold` would catch with stats.POWER probability, for a new run of as many trials as one of
    the baseline's invocations holds, gated with every other case (Holm over them all); with what
    more trials or invocations would buy."""
    found = []
    for key, recs in group(records).items():
        good = ok(recs)
        if not good:
            continue
        stat = case_stat(good, resolve_metric("headline", good[-1]))
        if stat.value is not None:
            found.append((key, stat, stats.trial_variance([stat.side])))
    drift: dict[tuple, list] = {}
    for key, stat, trial in found:
        drift.setdefault((key[-1], stat.metric), []).append((stat.side, trial and trial[0]))
    out = []
    for key, stat, trial in found:
        side = stat.side
        per = max(round(side.n / side.k), 1)
        run = stats.Side(((0.0,) * per,))
        noise = stats.noise_for(
            run,
            side,
            trial,
            stats.drift_variance(drift[(key[-1], stat.metric)]),
            rounds_var=stat.median_var_from_rounds,
        )
        se, df = stats.projected_se(noise, per, 1, side)
        gateable = noise.gateable or per > 1
        out.append(
            {
                "case": key,
                "metric": stat.metric,
                "value": stat.value,
                "trials": stat.trials,
                "invocations": side.k,
                "noise": noise,
                "mdr": stats.min_detectable(se, df, threshold, len(found)) if gateable else None,
                "mdr_more": power_note(noise, run, side, threshold, len(found), len(drift[(key[-1], stat.metric)]))
                + ("" if gateable else "; a run of one trial against one-trial invocations gets no gate"),
            }
        )
    return out
