"""From records to cases: deduplication with an account of every record, and two-level statistics.

A record is one trial of one case. A *case* is everything that must be equal for two numbers to
be comparable: model, dtype, workload, batch, backend (the adapter) and its device kind, execution
path (with the parallel layout of a split run) and the device (a device's name, plus the core count
for CPUs, whose names do not tell machines apart). Records of one case from several runs are
pooled, never overwritten.

The statistic, named everywhere it is shown: per trial, the **median** of its timed rounds; per
case, the **geometric mean of the trial medians**. Its interval comes from the spread between
trials (Student's t on the log of the trial medians) when there are two or more; with one trial
the between-run variance is unknown, and only the rounds of that one process are left.

Every input record is accounted for: used, a duplicate (same record_id; a duplicate whose content
differs is named as a conflict), failed (status failed: shown, never pooled into a statistic),
left unmatched by the caller, left out by it with the reason in its notes, or not selected by a filter.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from chipbench import stats

STATISTIC = "median of each trial's rounds; geometric mean over trials"
SPREAD = "± the stdev between trials (between the rounds of a single trial)"  # CaseStat.spread
CASE_FIELDS = ("model", "dtype", "workload", "batch", "backend", "backend_kind", "exec_path")
IDENTITY = CASE_FIELDS + ("device",)


def device_key(rec: dict) -> str:
    """The device a record ran on, as identity: its reported name, plus cores for CPUs."""
    name = rec.get("device_name") or "?"
    if rec.get("backend_kind") == "cpu" and rec.get("env_cpu_cores"):
        name += f" ({rec['env_cpu_cores']} cores)"
    return name


def path_key(rec: dict) -> str:
    """How the case ran, as identity: its execution path, and its parallel layout when split
    ("eager tp2"): a split run is never pooled with one on a single device. On the CPU, torch's
    thread count too when it is not torch's default of one per core (OMP_NUM_THREADS=1, torchrun's
    ranks): "eager, 1 thread" is other work than "eager", and runs at the default keep their name.
    An engine that names its threads in its path (llama.cpp) is left as it is. A compiled step
    built under inductor settings from the environment carries them ("compiled, freezing=1"):
    tuned and default compiles are other code, never one cell. A compiled case whose prefill ran
    eager ("compiled, eager prefill": every compiled record made before 2026-12-05, when compiled
    mode compiled the decode step only; a linear-attention hybrid's today) timed another prefill,
    and so another TTFT, than one whose prefill was compiled too."""
    path, layout = rec.get("exec_path") or "eager", rec.get("parallel")
    key = path if layout in (None, "", "none") else f"{path} {layout}"
    if rec.get("compile_flags"):
        key += f", {rec['compile_flags']}"
    if path == "compiled" and rec.get("prefill_path") != "compiled":
        key += ", eager prefill"
    threads, cores = rec.get("env_torch_threads"), rec.get("env_cpu_cores")
    if (
        rec.get("backend_kind") == "cpu"
        and str(rec.get("env_runtime") or "").startswith("torch")
        and threads
        and cores
        and threads != cores
        and "thread" not in path
    ):
        key += f", {threads} thread{'s' if threads != 1 else ''}"
    return key


def identity(rec: dict, across_devices: bool = False) -> tuple:
    values = tuple(rec.get(k) if k != "exec_path" else path_key(rec) for k in CASE_FIELDS)
    return values if across_devices else values + (device_key(rec),)


@dataclass
class Account:
    """What happened to every input record of one side (a run, a baseline, a report)."""

    inputs: int = 0
    duplicates: int = 0
    conflicts: list[str] = field(default_factory=list)  # record_ids seen twice with different content
    failed: int = 0
    used: int = 0
    unmatched: int = 0
    left_out: int = 0  # completed trials a comparison could not use (e.g. an A/B pair's other trial failed)
    filtered: int = 0  # not selected by the user's filters (--model, --workload, ...)
    other_cpu: int = 0  # a baseline's records from another CPU of the run's CPU's name, where its own has some

    def line(self, side: str) -> str:
        parts = [f"{self.used} used"]
        if self.unmatched:
            parts.append(f"{self.unmatched} unmatched")
        if self.filtered:
            parts.append(f"{self.filtered} not selected by the filters")
        if self.left_out:
            parts.append(f"{self.left_out} left out (the notes say why)")
        if self.other_cpu:
            parts.append(
                f"{self.other_cpu} from another CPU of the same name (other matmul extensions, env_device_isa; "
                "records on the run's own were used)"
            )
        if self.failed:
            parts.append(f"{self.failed} failed trial(s) (not pooled)")
        if self.duplicates:
            parts.append(f"{self.duplicates} duplicate(s) of a record_id dropped")
        text = f"{side}: {self.inputs} record(s): " + ", ".join(parts)
        if self.conflicts:
            text += (
                f"; CONFLICT: record_id(s) {', '.join(self.conflicts[:5])} appear with different "
                "content (the first copy was used)"
            )
        return text


def _content(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if k != "source_file"}


def dedupe(records: Iterable[dict], account: Account | None = None) -> list[dict]:
    """Each record_id once (the first copy); duplicates counted, conflicting ones named."""
    account = account if account is not None else Account()
    seen: dict[str, dict] = {}
    out = []
    for rec in records:
        account.inputs += 1
        rid = rec.get("record_id")
        if rid in seen:
            account.duplicates += 1
            if _content(seen[rid]) != _content(rec) and rid not in account.conflicts:
                account.conflicts.append(rid)
            continue
        seen[rid] = rec
        out.append(rec)
    return out


def group(records: Iterable[dict], across_devices: bool = False) -> dict[tuple, list[dict]]:
    """Records by case identity, in time order (failed trials included: callers count them)."""
    out: dict[tuple, list[dict]] = {}
    for rec in sorted(records, key=lambda r: r.get("timestamp_utc") or ""):
        out.setdefault(identity(rec, across_devices), []).append(rec)
    return out


def ok(records: list[dict]) -> list[dict]:
    return [r for r in records if r.get("status") == "ok"]


def _positive(values) -> np.ndarray:
    return np.asarray(
        [
            v
            for v in (values or [])
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
        ],
        float,
    )


def trial_samples(rec: dict, metric: str) -> np.ndarray:
    """One trial's per-round values of a metric (its median alone for pooled metrics like itl_s)."""
    x = _positive(rec.get(f"{metric}_samples"))
    if x.size == 0 and rec.get(f"{metric}_median") is not None:
        x = _positive([rec[f"{metric}_median"]])
    return x


@dataclass(frozen=True)
class CaseStat:
    """One metric of one case over its trials."""

    metric: str
    trials: int  # trials with a value
    rounds: int  # timed rounds over all those trials
    value: float | None  # the named statistic (STATISTIC)
    trial_values: tuple[float, ...]  # each trial's median
    log_sd_between: float | None  # sample stdev of log(trial medians): the between-trial spread
    log_sd_within: float | None  # single trial: sample stdev of log(round values)
    ci_low: float | None
    ci_high: float | None
    basis: str  # what the interval rests on: "between trials", "within one run" or "none"
    side: stats.Side = stats.Side(())  # log trial medians grouped by invocation (series_id)

    @property
    def spread(self) -> float | None:
        """A stdev in the metric's unit, for tables: between trials when there are several, else
        between the rounds of the one trial."""
        if self.value is None:
            return None
        if self.trials >= 2:
            return float(np.std(self.trial_values, ddof=1))
        return None if self.log_sd_within is None else self.value * self.log_sd_within

    @property
    def median_var_from_rounds(self) -> float | None:
        """One trial: the variance of its median's log from its own rounds (pi/2 * s^2 / r, the
        median's large-sample variance): what that one process says of its own noise, a floor
        for the unknown between-trial variance."""
        if self.log_sd_within is None or self.rounds < 2:
            return None
        return math.pi / 2 * self.log_sd_within**2 / self.rounds


def case_stat(records: list[dict], metric: str) -> CaseStat:
    medians, rounds, only, series = [], 0, None, {}
    for i, rec in enumerate(ok(records)):
        x = trial_samples(rec, metric)
        if x.size:
            medians.append(float(np.median(x)))
            rounds += x.size
            only = x
            # a record without a series is an invocation of its own (one trial)
            series.setdefault(rec.get("series_id") or f"record {rec.get('record_id') or i}", []).append(
                math.log(medians[-1])
            )
    if not medians:
        return CaseStat(metric, 0, 0, None, (), None, None, None, None, "none")
    side = stats.Side.of(series.values())
    logs = np.log(medians)
    value = float(math.exp(logs.mean()))
    if len(medians) >= 2:
        sd = float(logs.std(ddof=1))
        lo, hi = stats.t_interval(0.0, sd / math.sqrt(len(medians)), len(medians) - 1)
        return CaseStat(
            metric,
            len(medians),
            rounds,
            value,
            tuple(medians),
            sd,
            None,
            value * math.exp(lo),
            value * math.exp(hi),
            "between trials",
            side,
        )
    lx = np.log(only)
    if lx.size >= 2:
        sd = float(lx.std(ddof=1))
        lo, hi = stats.t_interval(0.0, sd / math.sqrt(lx.size), lx.size - 1)
        return CaseStat(
            metric,
            1,
            rounds,
            value,
            tuple(medians),
            None,
            sd,
            value * math.exp(lo),
            value * math.exp(hi),
            "within one run",
            side,
        )
    return CaseStat(metric, 1, rounds, value, tuple(medians), None, None, None, None, "none", side)


def loaded_trials(records: list[dict]) -> int:
    return sum(1 for r in records if r.get("host_loaded") is True)


def host_bound_trials(records: list[dict]) -> int:
    """Trials whose decode waited on the host (record field host_bound): their decode speed is the
    host's launching and delivery, not the chip's, so it bounds the chip's speed from below only."""
    return sum(1 for r in records if r.get("host_bound") is True)


def check_text(rec: dict) -> str:
    """The correctness gate's verdict: a fast but wrong backend is marked in every table."""
    if rec.get("correct") is True:
        return f"ok ({rec['correctness_rel_err']:.2%} ≤ {rec['correctness_tolerance']:.2%})"
    if rec.get("correct") is False:
        return f"WRONG: {rec.get('correctness_note') or 'failed the correctness gate'}"
    return "-"
