"""The same-machine A/B's report (`chipbench ab`): its rows (bench/judging/paired.py) as Markdown."""

from __future__ import annotations

from chipbench.judging.cases import Account
from chipbench.judging.paired import PairedRow
from chipbench.measuring.metrics import METRICS
from chipbench.publishing.tables import md_cell


def _value(v: float | None, metric: str) -> str:
    if v is None:
        return "-"
    return f"{v * 1e3:.2f} ms" if METRICS.get(metric, ("",))[0] == "s" else f"{v:.2f}"


def to_markdown(rows: list[PairedRow], margin: float | None = None, account: Account | None = None) -> str:
    header = ["case", "metric", "A", "B", "pairs", "B vs A speed ratio [95% CI]", "verdict"]
    header += [f"within ±{margin:.0%}"] if margin is not None else []
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] * 2 + ["---:"] * 4 + ["---"] * (len(header) - 6)) + "|",
    ]
    for r in rows:
        ci = f" [{r.ci_low:.3f}, {r.ci_high:.3f}]" if r.ci_low is not None else " [no interval]"
        cells = [
            r.case,
            r.metric,
            f"{r.a_label}: {_value(r.a_value, r.metric)}",
            f"{r.b_label}: {_value(r.b_value, r.metric)}",
            f"{r.pairs}" + (f" (+{r.incomplete} left out)" if r.incomplete else ""),
            "-" if r.ratio is None else f"{r.ratio:.3f}{ci}",
            r.verdict,
        ]
        cells += [r.equivalence or "-"] if margin is not None else []
        lines.append("| " + " | ".join(md_cell(c) for c in cells) + " |")
    notes = [
        "",
        "Speed ratio: B over A for throughputs, A over B for latencies, so > 1 means B is better. Each pair "
        "is one fresh-process trial of each arm, run back to back (alternating order unless --order fixed); the "
        "95% interval is Student's t on the pairs' log ratios, as the crossover of the two orders where "
        "pairs ran in both (a position effect removed), each row's basis below.",
    ]
    if margin is not None:
        notes.append(
            f"Within ±{margin:.0%}: the whole interval lies in [{1 / (1 + margin):.3f}, {1 + margin:.3f}] "
            "(equivalence shown); outside: the whole interval lies beyond it; otherwise not shown."
        )
    described = set()
    for r in rows:
        for arm, label, software, costs in (
            ("A", r.a_label, r.a_software, r.a_costs),
            ("B", r.b_label, r.b_software, r.b_costs),
        ):
            if (r.ab_id, r.case, arm) not in described:
                described.add((r.ab_id, r.case, arm))
                notes.append(md_cell(f"- {r.case}: {arm} ({label}) ran {software}" + (f"; {costs}" if costs else "")))
        if r.basis != "none":
            notes.append(md_cell(f"- {r.case} {r.metric}: interval: {r.basis}"))
        for note in r.notes:
            notes.append(md_cell(f"- {r.case} {r.metric}: {note}"))
    if account is not None:
        notes.append(md_cell(account.line("records")))
    return "\n".join(lines + notes) + "\n"
