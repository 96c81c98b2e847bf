"""Comparing runs with baselines: small pure functions over result records.

Cases match by identity (bench/judging/cases.py): model, dtype, workload, batch, backend kind,
execution path and device. Comparing one device with another is a deliberate choice
(`across_devices`), and never gates. For each metric the comparison is a *speed ratio* (> 1: the
run is better, whatever the metric's direction) of the case statistics (geometric means of trial
medians), with a 95% interval on its log:

- both sides with two or more trials: Welch's t on the log trial medians (the spread between runs);
- one side with one trial: the other side's between-trial spread stands for both (the one trial's
  between-run variance is unknown, and the row says so);
- one trial on each side: no between-run variance at all; the rounds of the two processes give an
  interval, widened by cases.UNREPLICATED_ALLOWANCE, that decides faster / slower only, never a gate.

The gate (`threshold` T, e.g. 0.95: "fail when more than 5% worse") fails a case only when it is
significantly worse than T (the whole interval below T) *and* 1 - T exceeds the machine's noise
floor (the A/A spread between two trials, from the baseline's trials, else the run's). Otherwise it
says "too noisy to gate at T on this machine" with the floor, never flipped on noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from scipy import stats as st

from bench.errors import UsageError
from bench.judging import cases
from bench.judging.cases import IDENTITY, Account, CaseStat, case_stat, dedupe, group, noise_floor, ok
from bench.measuring.metrics import HEADLINE, METRICS

DEFAULT_METRICS = ("headline", "ttft_s", "tpot_s")  # "headline": the workload kind's own throughput
MACHINE_MOVED = 1.15  # the device's own measured ceiling differs between the sides by more than this factor
CEILING_FIELDS = {"bandwidth": ("ceiling_gb_per_s", "memory bandwidth", "GB/s"),
                  "matmul": ("ceiling_tflops", "matmul rate", "TFLOP/s")}
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
    verdict: str  # faster | slower | no significant difference | insufficient data
    floor: float | None = None  # the machine's A/A noise floor for this case (relative)
    floor_source: str | None = None  # baseline | run
    gate: str | None = None  # pass | FAIL | too noisy | no baseline (only with a threshold)
    gate_note: str | None = None


def _interval(run: CaseStat, base: CaseStat) -> tuple[float, float, str] | None:
    """Half-width, degrees of freedom and basis of the 95% interval of log(run / base)."""
    n1, n2 = run.trials, base.trials
    if n1 >= 2 and n2 >= 2:
        v1, v2 = run.log_sd_between**2 / n1, base.log_sd_between**2 / n2
        se = math.sqrt(v1 + v2)
        if se == 0:
            return 0.0, math.inf, "between trials"
        dof = (v1 + v2) ** 2 / (v1**2 / (n1 - 1) + v2**2 / (n2 - 1))
        return float(st.t.ppf(0.975, dof)) * se, dof, "between trials"
    if n1 >= 2 or n2 >= 2:
        known, side, other = (run, "run", "baseline") if n1 >= 2 else (base, "baseline", "run")
        se = known.log_sd_between * math.sqrt(1 / n1 + 1 / n2)
        dof = known.trials - 1
        return (float(st.t.ppf(0.975, dof)) * se, dof,
                f"between trials of the {side} (the {other} has 1 trial: its between-run variance is unknown)")
    if run.log_sd_within is not None and base.log_sd_within is not None:
        r1, r2 = max(run.rounds, 2), max(base.rounds, 2)
        v1, v2 = run.log_sd_within**2 / r1, base.log_sd_within**2 / r2
        se = math.sqrt(v1 + v2)
        dof = (v1 + v2) ** 2 / (v1**2 / (r1 - 1) + v2**2 / (r2 - 1)) if se else math.inf
        half = (float(st.t.ppf(0.975, dof)) * se if se else 0.0) + math.log(cases.UNREPLICATED_ALLOWANCE)
        return (half, dof, f"within one run each (between-run variance unknown: 1 trial a side; interval "
                f"widened x{cases.UNREPLICATED_ALLOWANCE:g})")
    return None


def compare_stats(run: CaseStat, base: CaseStat, threshold: float | None = None) -> MetricComparison:
    metric = run.metric
    higher = METRICS[metric][1]
    common = dict(metric=metric, higher_is_better=higher, run_value=run.value, base_value=base.value,
                  run_trials=run.trials, base_trials=base.trials, run_rounds=run.rounds, base_rounds=base.rounds)
    floor, source = noise_floor(base), "baseline"
    if floor is None:
        floor, source = noise_floor(run), "run"
    if floor is None:
        source = None
    if run.value is None or base.value is None:
        return MetricComparison(**common, ratio=None, ci_low=None, ci_high=None, basis="none",
                                verdict="insufficient data", floor=floor, floor_source=source,
                                **_gate(None, None, floor, threshold))
    sign = 1 if higher else -1
    d = sign * (math.log(run.value) - math.log(base.value))
    ratio = math.exp(d)
    iv = _interval(run, base)
    if iv is None:
        return MetricComparison(**common, ratio=ratio, ci_low=None, ci_high=None, basis="none (one round)",
                                verdict="insufficient data", floor=floor, floor_source=source,
                                **_gate(None, None, floor, threshold))
    half, _, basis = iv
    lo, hi = math.exp(d - half), math.exp(d + half)
    verdict = "faster" if lo > 1 else "slower" if hi < 1 else "no significant difference"
    return MetricComparison(**common, ratio=ratio, ci_low=lo, ci_high=hi, basis=basis, verdict=verdict,
                            floor=floor, floor_source=source, **_gate(lo, hi, floor, threshold))


def _gate(lo, hi, floor, threshold) -> dict:
    if threshold is None:
        return {}
    tol = 1 - threshold
    if lo is None:
        return {"gate": "too noisy", "gate_note": "no interval: too few rounds"}
    if floor is None:
        return {"gate": "too noisy", "gate_note": f"too noisy to gate at {threshold:g}: no noise floor (one trial "
                "on each side); run the baseline or the run with --bench-repeats 3 or more"}
    floor_text = f"noise floor {floor:.1%}"
    if floor >= tol:
        if lo >= threshold:
            return {"gate": "pass", "gate_note": floor_text}
        return {"gate": "too noisy", "gate_note": f"too noisy to gate at {threshold:g} on this machine: {floor_text} "
                f"is not below {tol:.1%}"}
    if hi < threshold:
        return {"gate": "FAIL", "gate_note": f"significantly below {threshold:g}; {floor_text}"}
    if lo < threshold and (hi - lo) / 2 > tol:
        return {"gate": "too noisy", "gate_note": f"the interval straddles {threshold:g} and is wider than "
                f"{tol:.1%}; {floor_text}"}
    return {"gate": "pass", "gate_note": floor_text}


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
    return [b for b in base if cases.identity(b) not in matching
            or b.get("env_device_isa") in isas[cases.identity(b)]]


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


def compare_records(run: list[dict], base: list[dict], metrics: list[str] | None = None,
                    threshold: float | None = None, across_devices: bool = False) -> Comparison:
    if across_devices and threshold is not None:
        raise UsageError("a regression gate across different devices is refused: a different device is not a "
                         "regression; compare each device with its own baseline (drop --across devices), or "
                         "drop --fail-below to see the ratios")
    acc_run, acc_base = Account(), Account()
    run = dedupe(run, acc_run)
    base = dedupe(base, acc_base)
    own = {r.get("record_id") for r in run}
    shared = [b for b in base if b.get("record_id") in own]
    base = [b for b in base if b.get("record_id") not in own]  # a run is never its own baseline
    acc_base.duplicates += len(shared)
    if not across_devices:  # one CPU name, two machines: never pooled where the run's own has a baseline
        kept = _same_cpu(base, run)
        acc_base.other_cpu += len(base) - len(kept)
        base = kept
    runs, bases = group(run), group(base)
    rows, unmatched_run, matched_base = [], [], set()
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
            rows += _rows(key, recs, bkey, bases[bkey], metrics, threshold)
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
    when = {(True, True): ", each right after its case", (True, False): ", the run's right after its case",
            (False, True): ", the baseline's right after its case"}.get(tuple(after), "")
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


def devices_ratio(okr: list[dict], okb: list[dict], metric: str) -> dict:
    """Across devices: the two devices' own measured ceiling that bounds `metric`, beside the speed
    ratio, so a reader sees how much of the difference the hardware's limits alone account for."""
    found = _ceiling_ratio(okr, okb, metric)
    if found is None:
        return {}
    ratio, run, base, what, unit, when = found
    return {"machine_ratio": ratio,
            "machine_note": f"the run's device measured {ratio:.3g}x the baseline device's {what} "
                            f"({_fig(run)} vs {_fig(base)} {unit}{when})"}


def weights_differ(okr: list[dict], okb: list[dict]) -> dict:
    """A note when the two sides of a mixture of experts ran other weights (another seed or draw,
    or real ones): it routes by its weights, so its speed may move with them alone. A dense model
    does the same work with any weights: no note."""
    from models.zoo import MODELS

    spec = MODELS.get(okr[-1].get("model"))
    run, base = ({str(r.get("weights")) for r in recs} for recs in (okr, okb))
    if run == base or (spec is not None and not spec.experts):
        return {}
    return {"weights_note": f"other weights ({', '.join(sorted(run))} vs {', '.join(sorted(base))}): "
            "an MoE routes by its weights, so its speed may differ for that alone"}


def cpus_differ(okr: list[dict], okb: list[dict]) -> dict:
    """A note when the two sides' CPUs, one name to the device identity ("Intel(R) Xeon(R) Processor
    (2 cores)" on two VMs), reported other matmul extensions (`env_device_isa`: AVX-512, AMX, ...):
    other machines, whose bf16 matmul can differ several times over. Said where both sides recorded
    them and they differ (records that did not record theirs are left out of the sets: a baseline
    part of whose trials are known to come from another CPU is no baseline either)."""
    run, base = ({r.get("env_device_isa") for r in recs if r.get("backend_kind") == "cpu"} - {None}
                 for recs in (okr, okb))
    if not run or not base or run == base:
        return {}
    said = lambda isas: " | ".join(sorted(i or "none of them" for i in isas))  # noqa: E731
    return {"cpu_note": f"another CPU under the same name: the run's reported {said(run)}, the baseline's "
                        f"{said(base)} (matmul extensions)"}


SOFTWARE = (("torch", "env_torch"), ("transformers", "env_transformers"), ("runtime", "env_runtime"),
            ("driver", "env_driver"), ("Python", "env_python"), ("torch threads", "env_torch_threads"))


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


def _rows(key, recs, bkey, brecs, metrics, threshold) -> list[dict]:
    ident = dict(zip(IDENTITY, key)) | {"base_device": bkey[-1]}
    okr, okb = ok(recs), ok(brecs)
    if not okr or not okb:
        side = "the run" if not okr else "the baseline"
        failed = not okr and okb
        return [{**ident, "metric": "-", "verdict": f"every trial failed in {side}",
                 "gate": ("FAIL" if failed else "no baseline") if threshold is not None else None,
                 "gate_note": (recs[-1].get("error") if not okr else brecs[-1].get("error")),
                 "ratio": None, "ci_low": None, "ci_high": None, "run_value": None, "base_value": None,
                 "run_trials": len(okr), "base_trials": len(okb), "basis": "none", "floor": None}]
    wrong = [[r for r in recs if r.get("correct") is False] for recs in (okr, okb)]
    if any(wrong):  # fast but wrong is not faster: no speed verdict, and a wrong run fails the gate
        from bench.publishing.tables import check_text

        side, bad, of = ("the run", wrong[0], okr) if wrong[0] else ("the baseline", wrong[1], okb)
        return [{**ident, "metric": "-", "verdict": f"{len(bad)} of {len(of)} trial(s) of {side} failed the "
                 "correctness gate: no speed verdict",
                 "gate": ("FAIL" if wrong[0] else "no baseline") if threshold is not None else None,
                 "gate_note": check_text(bad[0]), "ratio": None, "ci_low": None, "ci_high": None,
                 "run_value": None, "base_value": None, "run_trials": len(okr), "base_trials": len(okb),
                 "basis": "none", "floor": None}]
    partial = [[r for r in recs if (r.get("serve_failed") or 0) + (r.get("serve_not_sent") or 0) > 0]
               for recs in (okr, okb)]
    if any(partial):  # a serving level that served part of its load did less work: its speed compares with nothing
        side, cut, of = ("the run", partial[0], okr) if partial[0] else ("the baseline", partial[1], okb)
        first = cut[0]
        return [{**ident, "metric": "-", "verdict": f"{len(cut)} of {len(of)} trial(s) of {side} served part of "
                 "the level's requests: no speed verdict",
                 "gate": ("FAIL" if partial[0] else "no baseline") if threshold is not None else None,
                 "gate_note": (f"{first.get('serve_failed') or 0} failed, {first.get('serve_not_sent') or 0} unsent "
                               f"of {first.get('serve_requests')}: {first.get('serve_errors') or 'the time bound'}"),
                 "ratio": None, "ci_low": None, "ci_high": None, "run_value": None, "base_value": None,
                 "run_trials": len(okr), "base_trials": len(okb), "basis": "none", "floor": None}]
    out = []
    sample = okr[-1]
    for metric in dict.fromkeys(resolve_metric(m, sample) for m in metrics or DEFAULT_METRICS):
        rs, bs = case_stat(okr, metric), case_stat(okb, metric)
        if rs.value is None and bs.value is None:
            continue  # the metric does not apply to this workload (TPOT of a prefill)
        c = compare_stats(rs, bs, threshold)
        same_device = key[-1] == bkey[-1]  # across devices, a different ceiling is the point: shown, not a caveat
        row = {**ident, **c.__dict__, "run_loaded": cases.loaded_trials(okr), "base_loaded": cases.loaded_trials(okb),
               **(machine_moved(okr, okb, metric, c.ratio) if same_device else devices_ratio(okr, okb, metric)),
               **weights_differ(okr, okb), **(cpus_differ(okr, okb) if same_device else {}),
               **software_differ(okr, okb)}
        if row["gate"] == "FAIL" and row.get("machine_ratio", 1) < threshold:  # the machine slowed past the tolerance
            row.update(gate="too noisy", gate_note=f"too noisy to gate at {threshold:g} now: {row['machine_note']}")
        if row["gate"] is not None and row.get("cpu_note"):  # another machine is no baseline, pass or FAIL
            row.update(gate="no baseline", gate_note=f"{row['cpu_note']}: make a baseline on this CPU")
        out.append(row)
    return out
