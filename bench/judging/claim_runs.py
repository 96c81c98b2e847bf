"""What records say about a claim: the runs of its case, whether they used the claimed stack,
how close they came to the measured roofline, and the 95% interval a verdict rests on."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

from packaging.version import InvalidVersion, Version

from chipbench import stats
from chipbench.judging import cases
from chipbench.judging.chips import chip_of
from chipbench.judging.claim_physics import PREFILL_METRICS
from chipbench.measuring.metrics import METRICS
from chipbench.measuring.workload import parse_workload

if TYPE_CHECKING:
    from chipbench.judging.claims import Case, Verdict

# A run below a claim refutes it only with the claimed stack, or when it already reaches this share
# of the measured ceiling (bandwidth for decode, compute for prefill): no stack could do much better.
REFUTES_AT = 0.8


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


def first_line(error) -> str:
    return (str(error or "no error text").splitlines() or [""])[0][:160]


def tokens_held(rec: dict) -> int:
    """The tokens one sequence of a run held: its prompt (or decode context) and its output."""
    return int(rec.get("prompt_tokens") or 0) + int(rec.get("gen_tokens") or 0)


def decide(lo: float, hi: float, value: float, compare: str, tolerance: float) -> str:
    """The verdict of a measured 95% interval [lo, hi] on a claimed value."""
    if compare == "about":
        band = (value * (1 - tolerance), value * (1 + tolerance))
        if band[0] <= lo and hi <= band[1]:
            return "confirmed"
        return "refuted" if hi < band[0] or lo > band[1] else "inconclusive"
    if compare == "at_least":
        return "confirmed" if lo >= value else "refuted" if hi < value else "inconclusive"
    return "confirmed" if hi <= value else "refuted" if lo > value else "inconclusive"  # at_most


def wrong_runs(records: list[dict]) -> list[dict]:
    return [r for r in records if r.get("correct") is False]


def correct_only(runs: list[dict], stack: str | None, v: Verdict, side: str = "") -> tuple[list[dict], bool]:
    """The runs that did not fail the correctness gate, and whether the wrong ones refute the claim:
    they do when the claimed stack's runs all failed it (the claim's own software is fast but
    wrong). Wrong runs of another stack are named and left out: they say that stack computes the
    model wrongly, not what the chip can do."""
    wrong = wrong_runs(runs)
    if not wrong:
        return runs, False
    of = f" of the {side}" if side else ""
    claimed = [r for r in runs if stack_matches(stack, stack_of(r))]
    if claimed and all(r.get("correct") is False for r in claimed):
        v.reasons.append(
            f"{len(claimed)} run(s){of} with the claimed stack ({', '.join(stacks(claimed))}) failed "
            "the correctness gate: fast but wrong"
        )
        return [], True
    kept = [r for r in runs if r.get("correct") is not False]
    v.reasons.append(
        f"{len(wrong)} run(s){of} failed the correctness gate and are left out "
        f"({', '.join(stacks(wrong))}): fast but wrong is not a result"
        + ("" if kept else "; no other runs" + (" (a run with the claimed stack would decide it)" if stack else ""))
    )
    return kept, False


def _version(word: str):
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


def stacks(records: list[dict]) -> list[str]:
    return sorted({r.get("stack") or f"{r.get('backend')} {r.get('exec_path') or 'eager'}" for r in records})


def shown(x: float, metric: str) -> str:
    """A value of a metric as a claim's reasons give it: latencies in ms, rates in tokens/s."""
    return f"{x * 1e3:.4g} ms" if METRICS[metric][0] == "s" else f"{x:.4g} tokens/s"


def _span(lo: float, hi: float, metric: str) -> str:
    """An interval in the metric's shown unit: [27.41, 38.23] tokens/s."""
    a, unit = shown(lo, metric).split(" ", 1)
    return f"[{a}, {shown(hi, metric).split(' ', 1)[0]}] {unit}"


def interval(stat, what: str) -> tuple[float, float, str]:
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


def stack_of(rec: dict) -> str:
    return rec.get("stack") or f"{rec.get('backend')} {rec.get('exec_path') or 'eager'}"


def one_stack(runs: list[dict], case: Case, metric: str, v: Verdict) -> list[dict]:
    """Runs of one stack only: eager and compiled trials are never pooled, nor, for a claim that
    names no chip, runs on different devices. The claimed stack's runs when there are any, else the
    stack (and device) that did best."""
    groups: dict[str, list[dict]] = {}
    for r in runs:
        key = stack_of(r) if case.chip is not None else f"{stack_of(r)} on {r.get('device_name')}"
        groups.setdefault(key, []).append(r)
    if len(groups) == 1:
        return runs
    same = [k for k in groups if stack_matches(case.stack, stack_of(groups[k][0]))]
    higher = METRICS[metric][1]
    best = max(same or groups, key=lambda k: (cases.case_stat(groups[k], metric).value or 0) * (1 if higher else -1))
    what = "stacks" if case.chip is not None else "stacks and devices"
    v.reasons.append(
        f"runs with {len(groups)} {what} ({', '.join(sorted(groups))}), never pooled: judged on {best} "
        + ("(the claimed stack)" if same else "(the best of them)")
    )
    return groups[best]


def throttle_note(records: list[dict], v: Verdict) -> None:
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
