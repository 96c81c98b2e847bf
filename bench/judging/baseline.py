"""A baseline's noise, case by case: trials and invocations, the spread at each level, and the
smallest regression a gate against it would catch (`chipbench baseline`)."""

from __future__ import annotations

import math

from chipbench.judging.compare import MACHINE_MOVED


def noise_rows(records: list[dict], threshold: float = 0.95) -> list[dict]:
    """Per case: trials and invocations, the headline statistic, the noise at each level, and the
    smallest regression a gate at `threshold` against this baseline would catch."""
    from chipbench import stats
    from chipbench.judging import cases
    from chipbench.judging.compare import CEILING_FIELDS, MACHINE_MOVED, SOFTWARE, baseline_power, bound_by, device_rate

    power = {p["case"]: p for p in baseline_power(records, threshold)}
    rows = []
    for key, recs in cases.group(records).items():
        good = cases.ok(recs)
        if not good:
            rows.append(
                {
                    "case": " ".join(map(str, key[:-1])),
                    "device": key[-1],
                    "trials": 0,
                    "note": f"every trial failed: {recs[-1].get('error')}",
                }
            )
            continue
        p = power[key]
        noise = p["noise"]
        rows.append(
            {
                "case": " ".join(map(str, key[:-1])),
                "device": key[-1],
                "metric": p["metric"],
                "trials": f"{p['trials']} in {p['invocations']}",
                "value": p["value"],
                "trial spread": f"{stats.relative(math.sqrt(noise.trial_var)):.1%}" if noise.trial_var else "-",
                "drift": f"{stats.relative(math.sqrt(noise.drift_var)):.1%}"
                + ("" if noise.drift_known else " (prior)"),
                f"detects at {threshold:g}": f"{p['mdr']:.1%}" if p["mdr"] is not None else "no gate (1 trial)",
                "more": p["mdr_more"],
                "loaded": cases.loaded_trials(good),
                "failed": len(recs) - len(good),
                "wrong": sum(r.get("correct") is False for r in good),
            }
        )
        metric = p["metric"]
        bound = bound_by(metric, good[-1].get("kind"))
        unit = CEILING_FIELDS[bound][2] if bound else None
        seen = [v for v in (device_rate(r, bound)[0] for r in good if bound) if v]  # as compare reads them
        rows[-1]["device ceiling"] = f"{min(seen):.3g}-{max(seen):.3g} {unit}" if seen else "-"
        rows[-1]["machine moved"] = bool(seen) and max(seen) > MACHINE_MOVED * min(seen)
        isas = {
            r.get("env_device_isa")
            for r in good
            if r.get("backend_kind") == "cpu" and r.get("env_device_isa") is not None
        }
        rows[-1]["cpus"] = len(isas) or "-"  # CPUs of this name by their matmul extensions: over 1, other machines
        mixed = [
            f"{label} x{n}"
            for label, key in SOFTWARE
            if (n := len({str(r[key]) for r in good if r.get(key) is not None})) > 1
        ]
        rows[-1]["software"] = ", ".join(mixed) or "one"  # versions pooled: their spread is not noise alone
    return rows


def baseline_warnings(rows: list[dict]) -> list[str]:
    """What makes a baseline's gate looser or blind, one line each: a device whose ceiling moved,
    trials from other CPUs or other software pooled, a trial that failed the correctness gate, a
    baseline of one invocation."""
    out: list[str] = []
    moved = [r for r in rows if r.get("machine moved")]
    if moved:
        out.append(
            f"{len(moved)} case(s) whose device measured its own ceiling more than {MACHINE_MOVED - 1:.0%} apart "
            "across these runs (device ceiling): their drift includes the machine's moves, so a gate against "
            "them is looser than the software alone would make it"
        )
    mixed = [r for r in rows if isinstance(r.get("cpus"), int) and r["cpus"] > 1]
    if mixed:
        out.append(
            f"{len(mixed)} case(s) pool trials from CPUs of one name that reported other matmul extensions "
            "(env_device_isa; cpus): other machines, whose spread is not this machine's noise; make the baseline "
            "from runs on one of them"
        )
    versions = [r for r in rows if r.get("software") not in (None, "one")]
    if versions:
        out.append(
            f"{len(versions)} case(s) pool trials made with other software (software: "
            f"{'; '.join(sorted({r['software'] for r in versions}))}): their noise includes what the versions "
            "change, so a gate against them is looser than one release's noise; make the baseline from one"
        )
    wrong = [r for r in rows if r.get("wrong")]
    if wrong:
        out.append(
            f"{len(wrong)} case(s) with a trial that failed the correctness gate: compare finds no baseline for "
            "them (fast but wrong is not a reference); make the baseline from runs that pass it"
        )
    drift_unknown = [r for r in rows if str(r.get("drift", "")).endswith("(prior)")]
    if drift_unknown:
        out.append(
            f"{len(drift_unknown)} case(s) made in one invocation: the drift between invocations is not measured, "
            "so a gate assumes the prior; make the baseline from several runs (`chipbench run --repeats 3` more "
            "than once, or `python -m chipbench.measuring.aa`)"
        )
    return out
