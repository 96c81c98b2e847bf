"""The checks that turn a claim and its runs into a verdict: fits (memory alone), metric (one
case's measured interval against the claimed value) and ratio (two cases' ratio). The order of
their steps and the guards that keep a verdict from resting on what it cannot (load, a host-bound
decode, another stack) are described in chipbench.judging.claims."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chipbench.judging import cases
from chipbench.judging.chips import chip_of
from chipbench.judging.claim_physics import PREFILL_METRICS, breaks, impossible, roofline_bound
from chipbench.judging.claim_runs import (
    REFUTES_AT,
    correct_only,
    decide,
    first_line,
    interval,
    matching_runs,
    matching_runs_any,
    one_stack,
    out_of_memory,
    roofline_share,
    shown,
    stack_matches,
    stack_of,
    stacks,
    throttle_note,
    tokens_held,
    wrong_runs,
)
from chipbench.judging.compare import compare_stats
from chipbench.measuring.metrics import METRICS
from chipbench.measuring.workload import parse_workload

if TYPE_CHECKING:
    from chipbench.judging.claims import Claim, Verdict

# What a ratio claim may compare; any other difference between its two sides is not like for like.
COMPARED = ("chip", "model", "chips")


LIKE_FOR_LIKE = ("workload", "dtype", "batch", "stack", "parallel")


def short_of(claim: Claim, value: float) -> bool:
    """Whether a measured value falls short of the claim (slower than claimed), not past it."""
    higher = METRICS[claim.metric][1]
    return value < claim.value if higher else value > claim.value


def check_fits_runs(claim: Claim, records: list[dict], v: Verdict) -> Verdict:
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
    wrong = wrong_runs(done)
    held = [r for r in done if tokens_held(r) >= need and r.get("correct") is not False]
    if held:
        top = max(held, key=lambda r: (tokens_held(r), r.get("batch") or 1))
        v.verdict = "confirmed"
        v.reasons.append(
            f"{len(held)} run(s) completed holding at least {need} tokens per sequence; the longest "
            f"{tokens_held(top)} tokens at batch {top.get('batch')} ({top.get('workload')})"
        )
        return v
    short = [r for r in runs if out_of_memory(r) and (r.get("batch") or 1) == 1 and tokens_held(r) <= need]
    if short:
        first = min(short, key=tokens_held)
        v.verdict = "refuted"
        v.reasons.append(
            f"{len(short)} run(s) at batch 1 ran out of memory holding no more than the claimed {need} "
            f"tokens: {first.get('workload')} ({tokens_held(first)} tokens): "
            f"{first_line(first.get('error'))}"
        )
        return v
    right = [r for r in done if r.get("correct") is not False]
    if right:
        v.reasons.append(
            f"{len(right)} run(s) completed, the longest holding {max(map(tokens_held, right))} tokens per "
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
            f"{first_line(other[0].get('error'))}"
        )
    return v


def sides_differ(claim: Claim, rn: list[dict], rd: list[dict]) -> list[str]:
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
        text, layout = stack_of(r), str(r.get("parallel") or "none")
        return text.removesuffix(f" {layout}") if split else text

    for label, get in (("stack", stack), ("parallel layout", lambda r: str(r.get("parallel") or "none"))):
        if split and label == "parallel layout":
            continue
        a, b = sorted({get(r) for r in rn}), sorted({get(r) for r in rd})
        if a != b:
            out.append(f"{label} ({', '.join(a)} vs {', '.join(b)})")
    return out


def settle(decided: str, guards, v: Verdict) -> str:
    """A decided verdict stands unless a guard finds it rests on what it cannot (load, a host-bound
    decode, another stack, sides not like for like): the first guard that speaks keeps it
    inconclusive, and its reason says why and what would decide it."""
    if decided not in ("confirmed", "refuted"):
        return decided
    for guard in guards:
        why = guard(decided)
        if why:
            v.reasons.append(why)
            return "inconclusive"
    return decided


def _all_claimed(stack: str | None, runs: list[dict]) -> bool:
    return all(stack_matches(stack, stack_of(r)) for r in runs)


# --- a metric claim: one case ---------------------------------------------------------------


def check_metric(claim: Claim, records: list[dict], v: Verdict) -> Verdict:
    """Physics first (a case that cannot run, a figure past the roofline), then the runs of the
    claimed case: correct ones, one stack, their 95% interval against the claimed value, the guards,
    and a shortfall refutes only with the claimed stack or near the measured roofline."""
    if not _metric_physics(claim, v):
        return v
    runs = _metric_runs(claim, records, v)
    if not runs:
        return v
    stat = cases.case_stat(runs, claim.metric)
    v.numbers.update(measured=stat.value, trials=stat.trials, rounds=stat.rounds, statistic=cases.STATISTIC)
    if stat.ci_low is None:
        v.reasons.append(f"{stat.rounds} round(s): too few for an interval")
        return v
    lo, hi, basis = interval(stat, claim.metric)
    v.numbers.update(ci95_low=lo, ci95_high=hi, interval_basis=basis)
    v.reasons.append(
        f"measured {shown(stat.value, claim.metric)} ({cases.STATISTIC}), {basis}; claimed "
        f"{claim.compare.replace('_', ' ')} {shown(claim.value, claim.metric)}; stack: {', '.join(stacks(runs))}"
    )
    short = short_of(claim, stat.value)
    decided = settle(decide(lo, hi, claim.value, claim.compare, claim.tolerance), _metric_guards(claim, runs, short), v)
    if decided == "refuted" and short:
        decided = _shortfall(claim, runs, v)
    v.verdict = decided
    return v


def _metric_physics(claim: Claim, v: Verdict) -> bool:
    """False (the verdict set) when the case cannot run or the claimed figure breaks the roofline."""
    case, metric = claim.case, claim.metric
    if why := impossible(case):
        v.verdict = "physically implausible"
        v.reasons += why
        return False
    bound, how = roofline_bound(case, metric)
    if bound is None:
        v.reasons.append(f"no roofline check: {how}")
        return True
    share = claim.value / bound if METRICS[metric][1] else bound / claim.value
    v.numbers.update(roofline=bound, claimed_share_of_roofline=share)
    if breaks(claim.value, bound, metric, claim.compare):
        v.verdict = "physically implausible"
        v.reasons.append(
            f"claims {shown(claim.value, metric)}, {share:.0%} of the roofline {shown(bound, metric)} ({how})"
        )
        return False
    v.reasons.append(f"physically possible: {share:.0%} of the roofline {shown(bound, metric)} ({how})")
    return True


def _metric_runs(claim: Claim, records: list[dict], v: Verdict) -> list[dict]:
    """The runs a metric verdict rests on: completed, not wrong (wrong runs of the claimed stack
    refute it), one stack. Empty (with the reason, or the verdict set) when there are none."""
    case = claim.case
    matched = matching_runs(case, records)
    runs = [r for r in matched if r.get("status") == "ok"]
    if not runs:
        v.reasons.append(
            f"no completed run of this case: {len(matched)} failed ({first_line(matched[0].get('error'))})"
            if matched
            else "no matching runs: give records of this case on this chip to decide"
        )
        return []
    runs, refutes = correct_only(runs, case.stack, v)
    if refutes or not runs:
        v.verdict = "refuted" if refutes else "inconclusive"
        return []
    runs = one_stack(runs, case, claim.metric, v)
    throttle_note(runs, v)
    return runs


def _metric_guards(claim: Claim, runs: list[dict], short: bool) -> list:
    """What keeps a metric verdict inconclusive, in order (each: decided -> a reason or None)."""
    case, n = claim.case, len(runs)
    about = claim.compare == "about"
    # load and a host-bound decode only slow a run: a shortfall may be theirs, and so may an "about"
    # that a faster run would overshoot; a run better than the claim despite them stands
    slowed = lambda decided: decided == "refuted" and short or decided == "confirmed" and about  # noqa: E731
    host_bound = cases.host_bound_trials(runs) if claim.metric not in PREFILL_METRICS else 0

    def no_chip(decided):
        if decided == "refuted" and case.chip is None:
            return (
                f"would be refuted, but the claim names no chip: "
                f"{'a shortfall' if short else 'a result better than claimed'} on {runs[0].get('device_name')} "
                "does not decide what another chip does, so inconclusive"
            )

    def loaded(decided):
        if (k := cases.loaded_trials(runs)) and slowed(decided):
            return (
                f"would be {decided}, but {k} of {n} trial(s) ran on a loaded host (other processes or the "
                "hypervisor took CPU time), which may have slowed them, so inconclusive; rerun on a quiet host"
            )

    def host(decided):
        if host_bound and slowed(decided):
            return (
                f"would be {decided}, but {host_bound} of {n} trial(s) were host-bound (the device waited "
                "for the host's own work each decode step), so they time the host, not the chip, and a faster "
                "host could run faster: inconclusive; rerun with a stack that queues steps ahead (compiled, "
                "graph-captured) or on a faster host"
            )

    def about_other_stack(decided):
        if decided == "confirmed" and about and case.stack and not _all_claimed(case.stack, runs):
            return (
                f"would be confirmed, but by another stack than the claim's ({case.stack}): its figure is "
                "plausible on this chip, not confirmed for the claimed stack; a run with it decides"
            )

    def beaten_by_other_stack(decided):
        if decided == "refuted" and not short and about and not _all_claimed(case.stack, runs):
            return (
                f"would be refuted, but the runs beat the claimed figure with another stack than the claim's "
                f"({case.stack}): a faster stack does not show that the claimed one runs at other than its "
                "figure, so inconclusive; a run with the claimed stack decides it"
                if case.stack
                else "would be refuted, but the runs beat the claimed figure and the claim names no stack: a "
                "faster stack does not show that the one the figure was measured with runs at other than it, "
                "so inconclusive"
            )

    return [no_chip, loaded, host, about_other_stack, beaten_by_other_stack]


def _shortfall(claim: Claim, runs: list[dict], v: Verdict) -> str:
    """A run short of the claim refutes it with the claimed stack, or at REFUTES_AT of the measured
    roofline or more (no stack could do much better); otherwise it is not reproduced with its stack."""
    case = claim.case
    same_stack = _all_claimed(case.stack, runs)
    share = roofline_share(runs, claim.metric)
    v.numbers["measured_roofline_share"] = share
    if not same_stack and (share is None or share < REFUTES_AT):
        at = f"{share:.0%} of the measured roofline" if share is not None else "no measured roofline"
        v.reasons.append(
            f"a slow stack does not refute a chip: deciding this takes a run with the claimed stack ({case.stack}), "
            f"or any run at {REFUTES_AT:.0%} or more of the measured roofline"
            if case.stack
            else f"a slow stack does not refute a chip, and the claim names no stack: deciding this takes a run at "
            f"{REFUTES_AT:.0%} or more of the measured roofline (one near the chip's limit)"
        )
        return f"not reproduced with {', '.join(stacks(runs))} ({at})"
    v.reasons.append(
        "refuted with the claimed stack"
        if same_stack
        else f"refuted at {share:.0%} of the measured roofline: no stack could do much better"
    )
    return "refuted"


# --- a ratio claim: two cases ---------------------------------------------------------------


def check_ratio(claim: Claim, records: list[dict], v: Verdict) -> Verdict:
    """The roofline ratio as context, physics (a side that cannot run), then the two sides' runs
    (correct, on one device and one stack where the runs allow), their ratio's 95% interval against
    the claimed value, and the guards."""
    _ratio_roofline(claim, v)
    why = [
        f"{side}: {w}"
        for side, c in (("numerator", claim.numerator), ("denominator", claim.denominator))
        for w in impossible(c)
    ]
    if why:  # a side that cannot run at all: its roofline above is what it would reach if it could
        v.verdict = "physically implausible"
        v.reasons += why
        return v
    sides = _ratio_runs(claim, records, v)
    if sides is None:
        return v
    rn, rd = sides
    throttle_note(rn + rd, v)
    c = compare_stats(cases.case_stat(rn, claim.metric), cases.case_stat(rd, claim.metric))
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
    v.reasons.append(
        f"measured {c.ratio:.3g}x, 95% CI [{c.ci_low:.3g}, {c.ci_high:.3g}] ({c.basis}); claimed "
        f"{claim.compare.replace('_', ' ')} {claim.value:g}x"
    )
    shares = roofline_share(rn, claim.metric), roofline_share(rd, claim.metric)
    v.numbers.update(numerator_roofline_share=shares[0], denominator_roofline_share=shares[1])
    decided = decide(c.ci_low, c.ci_high, claim.value, claim.compare, claim.tolerance)
    differ = sides_differ(claim, rn, rd)
    if differ and decided not in ("confirmed", "refuted"):
        v.reasons.append(f"the two sides also differ in {'; '.join(differ)}")
    v.verdict = settle(decided, _ratio_guards(claim, rn, rd, differ, shares), v)
    return v


def _ratio_roofline(claim: Claim, v: Verdict) -> None:
    num, den, metric = claim.numerator, claim.denominator, claim.metric
    b_num, how_num = roofline_bound(num, metric)
    b_den, how_den = roofline_bound(den, metric)
    if not (b_num and b_den):
        v.reasons.append(f"no roofline ratio: {how_num if not b_num else how_den}")
        return
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


def _ratio_runs(claim: Claim, records: list[dict], v: Verdict) -> tuple[list[dict], list[dict]] | None:
    """The two sides' runs, like for like where the runs allow: correct ones (wrong runs of the
    claimed numerator stack refute it), on one shared device when the claim names no chip, on the
    stack both share. None (with the reason, or the verdict set) when a side has none."""
    num, den = claim.numerator, claim.denominator
    rn = [r for r in matching_runs(num, records) if r.get("status") == "ok"]
    rd = [r for r in matching_runs(den, records) if r.get("status") == "ok"]
    if rn and rd:  # wrong runs out first, so that a stack or device picked below is a correct one
        rn, refutes = correct_only(rn, num.stack, v, "numerator")
        rd, _ = correct_only(rd, den.stack, v, "denominator")  # a wrong baseline says nothing against the claim
        if not refutes and rn and not rd:
            v.reasons.append("no correct run of the denominator: no valid baseline, so inconclusive")
        if refutes or not rn or not rd:
            v.verdict = "refuted" if refutes else "inconclusive"
            return None
    if num.chip is None:  # a claim that compares models on no named chip: both sides on one device
        rn, rd = _on_one_device(rn, rd, v)
    common = sorted({stack_of(r) for r in rn} & {stack_of(r) for r in rd})
    if common and len({stack_of(r) for r in rn + rd}) > 1:  # like for like where the runs allow it
        pick = max(common, key=lambda k: sum(stack_of(r) == k for r in rn + rd))
        rn, rd = [r for r in rn if stack_of(r) == pick], [r for r in rd if stack_of(r) == pick]
        v.reasons.append(f"both sides judged on the stack they share: {pick}")
    if not rn or not rd:
        v.reasons.append(
            "no matching runs of "
            + " and ".join(s for s, r in (("the numerator", rn), ("the denominator", rd)) if not r)
        )
        return None
    return rn, rd


def _on_one_device(rn: list[dict], rd: list[dict], v: Verdict) -> tuple[list[dict], list[dict]]:
    if len({r.get("device_name") for r in rn + rd}) <= 1:
        return rn, rd
    devices = sorted({r.get("device_name") for r in rn} & {r.get("device_name") for r in rd}, key=str)
    pick = max(devices, key=lambda d: sum(r.get("device_name") == d for r in rn + rd)) if devices else None
    v.reasons.append(
        f"the claim names no chip: both sides judged on one device they share ({pick})"
        if pick
        else "the claim names no chip and the two sides ran on no device in common"
    )
    return [r for r in rn if r.get("device_name") == pick], [r for r in rd if r.get("device_name") == pick]


def _ratio_guards(claim: Claim, rn: list[dict], rd: list[dict], differ: list[str], shares) -> list:
    """What keeps a ratio verdict inconclusive, in order (each: decided -> a reason or None)."""
    num, den, metric = claim.numerator, claim.denominator, claim.metric
    claimed_stack = _all_claimed(num.stack, rn) and _all_claimed(den.stack, rd)
    near = all(x is not None and x >= REFUTES_AT for x in shares)

    def not_like_for_like(decided):
        if differ:
            return (
                f"would be {decided}, but the two sides also differ in {'; '.join(differ)}: not like for "
                f"like, so inconclusive (a ratio claim may differ only in {' or '.join(COMPARED)})"
            )

    def loaded(decided):
        k = cases.loaded_trials(rn), cases.loaded_trials(rd)
        if any(k):
            return (
                f"would be {decided}, but {k[0]} of {len(rn)} numerator and {k[1]} of {len(rd)} "
                "denominator trial(s) ran on a loaded host: load on one side moves the ratio either way, "
                "so inconclusive; rerun on quiet hosts"
            )

    def host(decided):
        k = (cases.host_bound_trials(rn), cases.host_bound_trials(rd)) if metric not in PREFILL_METRICS else (0, 0)
        if any(k):
            return (
                f"would be {decided}, but {k[0]} of {len(rn)} numerator and {k[1]} of {len(rd)} "
                "denominator trial(s) were host-bound (the device waited for the host each decode step): "
                "their speed is the host's, so the ratio compares hosts and software, not the chips, even "
                "with the claimed stack; inconclusive, rerun with a stack that keeps the devices busy"
            )

    def about_other_stack(decided):
        if decided == "confirmed" and claim.compare == "about" and (num.stack or den.stack) and not claimed_stack:
            return (
                f"would be confirmed, but by another stack than the claim's ({num.stack or den.stack}): the "
                "ratio is plausible, not confirmed for the claimed stack; runs with it decide"
            )

    def below_the_chips(decided):
        if claimed_stack or near:
            return None
        at = " and ".join(f"{x:.0%}" if x is not None else "an unmeasured share" for x in shares)
        return (
            f"would be {decided}, but the runs reached {at} of their measured roofline with "
            f"{', '.join(stacks(rn + rd))}: below the chips' limits a ratio measures the software and the host "
            "as much as the chips (eager decode bound by kernel launches makes two GPUs look alike), so "
            "inconclusive; deciding it takes "
            + (
                f"both sides with the claimed stack ({num.stack if num.stack == den.stack else f'{num.stack} / {den.stack}'}), "
                f"or both at {REFUTES_AT:.0%} or more of their measured roofline"
                if num.stack or den.stack
                else f"both sides at {REFUTES_AT:.0%} or more of their measured roofline (the claim names no stack)"
            )
        )

    return [not_like_for_like, loaded, host, about_other_stack, below_the_chips]
