"""Cost and energy claims (issue 45, item 2): "$/M tokens of qwen3-8b on chip X <= Y" and "tokens
per joule >= Z", decided like any other claim.

A cost claim is a throughput claim at a stated price: at `usd_per_hour` for each of `chips`
devices, C dollars per million tokens is exactly T = usd_per_hour x chips x 10^6 / (3600 C) tokens/s,
and costing at most C is running at least T. So it is checked as that throughput claim, with the
roofline, the correctness gate, the stack rules and every guard of a metric claim; its reasons and
numbers are given back in dollars (the interval's ends swap: a faster run is a cheaper one). The
price is part of the claim: it names its own or takes the prices file's row for its chip, and the
verdict says which.

An energy claim is decided by the metered trials of its case: tokens per joule of each trial is
1 / its joules per output token, and the verdict rests on the 95% interval between trials (energy
is one figure per trial, so one trial has no interval and decides nothing). Only trusted meters
count (a meter that failed its check left no figure); the meter and domain are named, since a
device's joules are not a host's.
"""

from __future__ import annotations

from dataclasses import replace

from chipbench.judging import cases
from chipbench.judging.claim_checks import check_metric
from chipbench.judging.claim_runs import correct_only, decide, matching_runs, one_stack, stacks
from chipbench.judging.prices import per_million, tokens_per_s_for

FLIP = {"at_most": "at_least", "at_least": "at_most"}


def check_cost(claim, records: list[dict], v):
    case = claim.case
    rate = tokens_per_s_for(claim.usd_per_hour, case.chips, claim.value)
    proxy = replace(claim, kind="metric", value=rate, compare=FLIP[claim.compare])
    inner = check_metric(proxy, records, type(v)(proxy, "inconclusive"))
    v.verdict = inner.verdict
    v.reasons.append(
        f"at ${claim.usd_per_hour:g}/device-hour x {case.chips} ({claim.price_note}), "
        f"{claim.compare.replace('_', ' ')} ${claim.value:.4g}/M tokens is {claim.metric} "
        f"{FLIP[claim.compare].replace('_', ' ')} {rate:.4g} tokens/s"
    )
    v.reasons += inner.reasons
    v.numbers.update(inner.numbers, usd_per_hour=claim.usd_per_hour, tokens_per_s_needed=rate)
    cost = lambda t: per_million(claim.usd_per_hour, case.chips, t)  # noqa: E731
    if inner.numbers.get("measured"):
        v.numbers["measured_usd_per_m"] = cost(inner.numbers["measured"])
        shown = f"measured ${v.numbers['measured_usd_per_m']:.4g}/M tokens"
        if inner.numbers.get("ci95_low"):
            v.numbers["usd_per_m_ci95_low"] = cost(inner.numbers["ci95_high"])
            v.numbers["usd_per_m_ci95_high"] = cost(inner.numbers["ci95_low"])
            shown += f", 95% interval [${v.numbers['usd_per_m_ci95_low']:.4g}, ${v.numbers['usd_per_m_ci95_high']:.4g}]"
        v.reasons.append(shown)
    return v


def check_energy(claim, records: list[dict], v):
    case = claim.case
    runs = [r for r in matching_runs(case, records) if r.get("status") == "ok"]
    if not runs:
        v.reasons.append("no completed run of this case: give records of this case on this chip to decide")
        return v
    runs, refutes = correct_only(runs, case.stack, v)
    if refutes or not runs:
        v.verdict = "refuted" if refutes else "inconclusive"
        return v
    runs = one_stack(runs, case, "output_tok_per_s", v)
    metered = [r for r in runs if r.get("energy_per_output_token_j")]
    if len(metered) < len(runs):
        why = {
            (r.get("telemetry_not_metered") or r.get("energy_check") or "no meter") for r in runs if r not in metered
        }
        v.reasons.append(f"{len(runs) - len(metered)} trial(s) not metered: {'; '.join(sorted(why))[:300]}")
    if not metered:
        return v
    methods = sorted({f"{r.get('energy_meter')} ({r.get('energy_domain')})" for r in metered})
    trials = [
        {"status": "ok", "tokens_per_j_samples": [1 / r["energy_per_output_token_j"]], "series_id": r.get("series_id")}
        for r in metered
    ]
    stat = cases.case_stat(trials, "tokens_per_j")
    v.numbers.update(measured=stat.value, trials=stat.trials, statistic=cases.STATISTIC)
    v.reasons.append(
        f"measured {stat.value:.4g} output tokens per joule over {stat.trials} metered trial(s), meter "
        f"{', '.join(methods)}; claimed {claim.compare.replace('_', ' ')} {claim.value:.4g}; stack: {', '.join(stacks(metered))}"
    )
    if stat.trials < 2 or stat.ci_low is None:
        v.reasons.append("energy is one figure per trial: two or more trials (--repeats) give it an interval")
        return v
    lo, hi = stat.ci_low, stat.ci_high
    v.numbers.update(ci95_low=lo, ci95_high=hi)
    v.reasons.append(f"95% interval between trials [{lo:.4g}, {hi:.4g}] tokens/J")
    decided = decide(lo, hi, claim.value, claim.compare, claim.tolerance)
    loaded = cases.loaded_trials(metered)
    if decided == "refuted" and loaded and claim.compare != "at_most":
        v.reasons.append(f"{loaded} trial(s) ran on a loaded host: other work's joules may be in the meter's")
        decided = "inconclusive"
    v.verdict = decided
    return v
