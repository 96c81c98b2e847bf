"""Same-machine A/B: the paired ratio of two arms whose trials were interleaved (`chipbench ab`).

An A/B run alternates fresh-process trials of two arms on one machine (A B, B A, A B, ...), so
drift, clock changes and noisy neighbours hit both arms alike. Each pair i gives one speed ratio
r_i of B over A (the medians of the two trials' rounds; for a latency, A over B, so > 1 always
means B is better); the pairing removes the drift both arms shared, which an unpaired comparison
of two separate runs cannot. With pairs in both orders the estimate is the 2x2 crossover's
(`crossover`): the two orders' mean log ratios averaged, with Student's t on their pooled spread,
so a position effect (the second trial of a pair running slower, measured here at about 2.5% on a
2-core VM) cancels even with unequal numbers in each order, and is reported with its own interval.
With every pair in one order it is the geometric mean of the r_i with Student's t on the log
ratios (n - 1 degrees of freedom), and the row says a position effect cannot be told apart.

Verdicts are refused rather than guessed: fewer than two complete pairs give no interval; an arm
that failed the correctness gate gives no verdict at all (a fast wrong answer is not faster); a
pair with a failed trial is left out and counted, never silently.
With a margin m, a claim of equivalence ("comparable") holds only when the whole interval lies
within [1 / (1 + m), 1 + m]; an interval entirely outside it refutes it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from chipbench import stats
from chipbench.stats import crossover, paired_ratio
from chipbench.judging.cases import Account, dedupe, path_key, trial_samples
from chipbench.judging.compare import resolve_metric
from chipbench.measuring.metrics import METRICS

ARMS = ("A", "B")


@dataclass
class PairedRow:
    ab_id: str
    case: str  # model dtype-independent identity of the pair: model, workload, batch
    metric: str
    a_label: str
    b_label: str
    pairs: int  # complete pairs used
    incomplete: int  # pairs left out (a failed or missing trial), counted
    a_value: float | None  # geometric mean of A's trial medians over the complete pairs
    b_value: float | None
    ratio: float | None  # speed ratio B vs A: > 1 means B is better
    ci_low: float | None
    ci_high: float | None
    verdict: str  # B faster | B slower | no significant difference | insufficient data | no verdict: ...
    equivalence: str | None = None  # with a margin: within | outside | not shown
    basis: str = "none"  # what the interval rests on
    position: tuple | None = None  # crossover only: (ratio, lo, hi) of a pair's second trial over its first
    needed_pairs: int = stats.MIN_DF + 1  # the complete pairs an interval needs (a crossover: one more)
    a_software: str = "-"  # what A's trials ran on and with, from their records
    b_software: str = "-"
    a_costs: str = ""  # what A's trials cost besides time: peak memory, compile time, share of the roofline
    b_costs: str = ""
    ratios: list[float] = field(default_factory=list)  # each pair's ratio, in pair order
    notes: list[str] = field(default_factory=list)


SOFTWARE = (
    "backend",
    "device_name",
    "dtype",
    "exec_path",
    "compile_flags",
    "parallel",
    "engine",
    "engine_version",
    "env_python",
    "env_torch",
    "env_transformers",
)  # what an arm ran on and with, as its records say


def arm_software(records: list[dict]) -> str:
    """What an arm's trials actually ran: backend, device, dtype, path and versions (each distinct
    combination once), from the records themselves rather than from what the arm asked for."""
    seen = []
    for r in records:
        engine = f"{r.get('engine') or 'engine ?'} {r.get('engine_version') or ''}".rstrip()
        text = (
            f"{r.get('backend')} {r.get('dtype')} {path_key(r)} on {r.get('device_name')}; "
            f"{engine}, torch {r.get('env_torch')}"
            + ("" if r.get("engine") == "transformers" else f", transformers {r.get('env_transformers')}")
            + (f", python {r['env_python']}" if r.get("env_python") else "")
        )
        if text not in seen:
            seen.append(text)
    return " | ".join(seen) or "-"


MEMORY_KIND = {"process_rss_peak": "peak RSS", "device_allocated_peak": "peak device memory"}


def _span(values: list[float], fmt: str) -> str:
    lo, hi = min(values), max(values)
    return fmt.format(lo) if fmt.format(lo) == fmt.format(hi) else f"{fmt.format(lo)}-{fmt.format(hi)}"


def arm_costs(records: list[dict]) -> str:
    """What an arm's trials cost besides time, each as the range over its trials: peak memory (of the
    kind the records measured), compile time, and the roofline share (MBU for decode, MFU for prefill)
    against the ceilings measured beside each trial. A speedup bought with a second copy of the
    weights or a minute of compile is then said next to the ratio, not left in the records."""
    parts = []
    for kind, name in MEMORY_KIND.items():
        mem = [
            r["peak_mem_bytes"] / 2**30 for r in records if r.get("peak_mem_kind") == kind and r.get("peak_mem_bytes")
        ]
        if mem:
            parts.append(f"{name} {_span(mem, '{:.2f}')} GiB")
    compile_s = [r["compile_time_s"] for r in records if r.get("compile_time_s") is not None]
    if compile_s:
        outcomes = [r["compile_cache"] for r in records if r.get("compile_cache")]
        cache = ", ".join(f"{outcomes.count(o)} {o}" for o in dict.fromkeys(outcomes))
        parts.append(f"compile {_span(compile_s, '{:.1f}')} s" + (f" (inductor's cache: {cache})" if cache else ""))
    for field_name, label in (("measured_mbu", "MBU"), ("measured_prefill_mfu", "MFU")):
        share = [100 * r[field_name] for r in records if r.get(field_name) is not None]
        if share:
            parts.append(f"{label} {_span(share, '{:.0f}')}% of the measured ceiling")
    return ", ".join(parts)


def _ran_first(rec: dict, other: dict, arrival: dict[str, int]) -> bool:
    """Whether `rec` ran before `other` in their pair: its ab_position, else the order they came in."""
    if rec.get("ab_position") is not None and other.get("ab_position") is not None:
        return rec["ab_position"] < other["ab_position"]
    return arrival.get(rec.get("record_id"), 0) < arrival.get(other.get("record_id"), 0)


def _trial_value(rec: dict, metric: str) -> float | None:
    x = trial_samples(rec, metric)
    return float(np.median(x)) if x.size else None


def _gate_failure(records: list[dict]) -> bool:
    return any(r.get("correct") is False for r in records)


def _arm_label(records: list[dict], arm: str) -> str:
    labels = {r.get("ab_label") for r in records if r.get("ab_arm") == arm}
    return next(iter(labels)) if len(labels) == 1 else arm


def equivalence(lo: float | None, hi: float | None, margin: float) -> str:
    if lo is None:
        return "not shown"
    if lo >= 1 / (1 + margin) and hi <= 1 + margin:
        return "within"
    if hi < 1 / (1 + margin) or lo > 1 + margin:
        return "outside"
    return "not shown"


def ab_rows(
    records: list[dict],
    metrics: tuple[str, ...] = ("headline",),
    margin: float | None = None,
    account: Account | None = None,
) -> list[PairedRow]:
    """Every A/B case of `records` (those with ab_* fields) with its paired ratio per metric."""
    account = account if account is not None else Account()
    runs, arm_records, arrival = _ab_cases(records, account)
    rows = []
    used: set[str] = set()
    for key, pairs in runs.items():
        facts = _ArmFacts.of(arm_records[key])
        for metric in metrics:
            row = _paired_row(key, pairs, metric, facts, arrival, used)
            _verdict(row, facts, margin)
            _trial_notes(row, pairs, facts, used)
            rows.append(row)
    account.used = len(used)
    account.left_out = sum(
        1 for recs in arm_records.values() for r in recs if r.get("status") == "ok" and r.get("record_id") not in used
    )
    return rows


def _ab_cases(records: list[dict], account: Account) -> tuple[dict, dict, dict]:
    """The A/B trials by case (ab_id, model, workload, batch) and pair, each case's records, and
    each record's input order (the run order where a record carries no ab_position)."""
    runs: dict[tuple, dict[int, dict[str, list[dict]]]] = {}
    arm_records: dict[tuple, list[dict]] = {}
    arrival: dict[str, int] = {}
    for rec in dedupe(records, account):
        arrival[rec.get("record_id")] = len(arrival)
        if rec.get("ab_id") is None or rec.get("ab_arm") not in ARMS or rec.get("ab_pair") is None:
            account.unmatched += 1  # not an A/B trial: counted, never read as one
            continue
        if rec.get("status") != "ok":
            account.failed += 1
        key = (rec["ab_id"], rec.get("model"), rec.get("workload"), rec.get("batch"))
        runs.setdefault(key, {}).setdefault(rec["ab_pair"], {}).setdefault(rec["ab_arm"], []).append(rec)
        arm_records.setdefault(key, []).append(rec)
    return runs, arm_records, arrival


@dataclass
class _ArmFacts:
    """What a case's two arms are, whatever the metric: labels, the gate, their software."""

    recs: list[dict]
    labels: dict
    failed_gate: list[str]
    unchecked: list[str]
    by_arm: dict
    software: dict
    same: bool  # A and B ran the same thing: an A/A comparison

    @classmethod
    def of(cls, recs: list[dict]) -> _ArmFacts:
        by_arm = {arm: [r for r in recs if r.get("ab_arm") == arm and r.get("status") == "ok"] for arm in ARMS}
        same = all(by_arm.values()) and {tuple(r.get(k) for k in SOFTWARE) for r in by_arm["A"]} == {
            tuple(r.get(k) for k in SOFTWARE) for r in by_arm["B"]
        }
        return cls(
            recs,
            {arm: _arm_label(recs, arm) for arm in ARMS},
            [arm for arm in ARMS if _gate_failure([r for r in recs if r.get("ab_arm") == arm])],
            [arm for arm in ARMS if not any(r.get("correct") is True for r in recs if r.get("ab_arm") == arm)],
            by_arm,
            {arm: arm_software(by_arm[arm]) for arm in ARMS},
            same,
        )


def _paired_row(key: tuple, pairs: dict, metric: str, facts: _ArmFacts, arrival: dict, used: set) -> PairedRow:
    """One case and metric: its complete pairs' ratios and their interval."""
    ab_id, model, workload, batch = key
    notes = []
    if facts.same:
        notes.append(
            "A and B ran the same backend, device, dtype, execution path, parallel layout and "
            "software versions, whatever their labels say: this is an A/A comparison"
        )
    ratios, a_vals, b_vals, b_first, incomplete = [], [], [], [], 0
    for index in sorted(pairs):
        pair = _pair_values(index, pairs[index], metric, notes)
        if pair is None:
            incomplete += 1
            continue
        a, b, va, vb, ratio = pair
        ratios.append(ratio)
        b_first.append(_ran_first(b, a, arrival))
        used.update((a["record_id"], b["record_id"]))
        a_vals.append(va)
        b_vals.append(vb)
    row = PairedRow(
        ab_id,
        f"{model} {workload} b{batch}",
        resolve_metric(metric, facts.recs[0]),
        facts.labels["A"],
        facts.labels["B"],
        len(ratios),
        incomplete,
        None,
        None,
        None,
        None,
        None,
        "insufficient data",
        a_software=facts.software["A"],
        b_software=facts.software["B"],
        a_costs=arm_costs(facts.by_arm["A"]),
        b_costs=arm_costs(facts.by_arm["B"]),
        ratios=ratios,
        notes=notes,
    )
    if ratios:
        row.a_value = float(np.exp(np.log(a_vals).mean()))
        row.b_value = float(np.exp(np.log(b_vals).mean()))
        _interval(row, ratios, b_first)
    return row


def _pair_values(index: int, arms: dict, metric: str, notes: list[str]):
    """(A's record, B's, A's value, B's, B's speed over A's) of a complete pair, else None with the
    reason in `notes`: a pair with a duplicated, missing or failed trial, or no samples, is left out."""
    duplicated = [arm for arm in ARMS if len(arms.get(arm, [])) > 1]
    if duplicated:
        notes.append(f"pair {index}: more than one {'/'.join(duplicated)} trial, so it is left out")
        return None
    a, b = (arms.get(arm, [None])[0] for arm in ARMS)
    missing = [arm for arm, r in (("A", a), ("B", b)) if r is None or r.get("status") != "ok"]
    if missing:
        why = "; ".join(
            f"{arm} " + ("missing" if r is None else f"failed: {r.get('error')}")
            for arm, r in (("A", a), ("B", b))
            if arm in missing
        )
        notes.append(f"pair {index} left out: {why}")
        return None
    name = resolve_metric(metric, a)
    va, vb = _trial_value(a, name), _trial_value(b, name)
    if va is None or vb is None:
        notes.append(f"pair {index} left out: no {name} samples")
        return None
    higher = METRICS.get(name, ("", True))[1]
    return a, b, va, vb, (vb / va if higher else va / vb)


def _interval(row: PairedRow, ratios: list[float], b_first: list[bool]) -> None:
    """The paired ratio and its 95% interval: a crossover when both orders ran (the position effect
    removed and reported), else the paired t on the log ratios."""
    row.ratio, row.ci_low, row.ci_high = paired_ratio(ratios)
    split = crossover(
        [r for r, first in zip(ratios, b_first) if not first], [r for r, first in zip(ratios, b_first) if first]
    )
    if split is None:
        if row.ci_low is not None:
            row.basis = "paired t on the log ratios, " + (
                f"{len(ratios) - 1} df; every pair in one order: a "
                "position effect cannot be told apart from the A/B difference"
                if len(set(b_first)) == 1
                else f"{len(ratios) - 1} df"
            )
        return
    (row.ratio, row.ci_low, row.ci_high), (pos, plo, phi) = split
    row.basis = (
        f"crossover: {b_first.count(False)} pair(s) A then B, {b_first.count(True)} B then A; "
        f"t with {len(ratios) - 2} df, position effect removed"
    )
    row.position = (pos, plo, phi)
    if len(ratios) - 2 < stats.MIN_DF:  # the estimate stands, free of the position effect; its interval does not
        row.ci_low = row.ci_high = None
        row.needed_pairs = stats.MIN_DF + 2
    if len(ratios) - 2 < 4:  # t's 97.5% point: 12.7 at 1 df, 4.3 at 2, 3.2 at 3, 2.8 at 4
        row.notes.append(
            f"{len(ratios)} pairs leave the crossover {len(ratios) - 2} degree(s) of "
            f"freedom (t = {stats.t_quantile(0.975, len(ratios) - 2):.1f}), so its interval is wide "
            "however well the pairs agree: 6 or more pairs, as many in each order, narrow it"
        )
    if row.ci_low is None:
        row.position = (pos, None, None)
        row.notes.append(f"position effect: a pair's second trial ran at {pos:.3f}x the speed of its first")
        return
    row.notes.append(
        f"position effect: a pair's second trial ran at {pos:.3f}x the speed of its first "
        f"[{plo:.3f}, {phi:.3f}]" + (" (significant; the alternating order cancels it)" if plo > 1 or phi < 1 else "")
    )


def _verdict(row: PairedRow, facts: _ArmFacts, margin: float | None) -> None:
    if facts.failed_gate:
        row.verdict = f"no verdict: {' and '.join(facts.failed_gate)} failed the correctness gate"
    elif row.ci_low is None:
        need = row.needed_pairs
        more = need - len(row.ratios)
        row.verdict = (
            "insufficient data: "
            + (f"{len(row.ratios)} complete pair(s)" if row.ratios else "no complete pair")
            + f", no interval: one needs {need} or more, {more} more"
            + (f" (--pairs {need + row.incomplete})" if more > 0 else "")
        )
    else:
        row.verdict = "B faster" if row.ci_low > 1 else "B slower" if row.ci_high < 1 else "no significant difference"
    if margin is not None:
        row.equivalence = "not shown" if facts.failed_gate else equivalence(row.ci_low, row.ci_high, margin)


def _trial_notes(row: PairedRow, pairs: dict, facts: _ArmFacts, used: set) -> None:
    loaded = sum(
        1
        for index in pairs
        for arm in ARMS
        for r in pairs[index].get(arm, [])
        if r.get("host_loaded") and r.get("record_id") in used
    )
    if loaded:
        row.notes.append(
            f"{loaded} trial(s) ran on a loaded host (others took CPU time or the "
            "hypervisor stole it); the pairing shares what both arms saw, not what one did"
        )
    if facts.unchecked and not facts.failed_gate:
        row.notes.append(f"correctness not checked for {' and '.join(facts.unchecked)}")


def row_dicts(rows: list[PairedRow]) -> list[dict]:
    return [asdict(r) for r in rows]
