"""Claim verdicts (bench/judging/claims.py) as Markdown or JSON."""

from __future__ import annotations

import json
import math
import textwrap

from chipbench.judging import cases
from chipbench.judging.claims import Verdict
from chipbench.publishing.tables import md_cell as esc
from chipbench.publishing.tables import terminal_safe


def render(verdicts: list[Verdict], fmt: str = "md", account: cases.Account | None = None) -> str:
    if fmt == "json":
        return json.dumps(
            {
                "claims": [
                    {
                        "id": v.claim.id,
                        "statement": v.claim.statement,
                        "source": v.claim.source,
                        "date": v.claim.date or None,
                        "verdict": v.verdict,
                        "category": v.category,
                        "reasons": v.reasons,
                        "numbers": {
                            k: (None if isinstance(x, float) and not math.isfinite(x) else x)
                            for k, x in v.numbers.items()
                        },
                    }
                    for v in verdicts
                ],
                "records": account.__dict__ if account is not None else None,
            },
            indent=1,
        )
    if fmt == "text":
        return _text(verdicts, account)
    lines = ["| claim | statement | verdict | why |", "|---|---|---|---|"]
    for v in verdicts:
        origin = ", ".join(x for x in (v.claim.source, v.claim.date) if x)
        lines.append(
            f"| {esc(v.claim.id)} | {esc(v.claim.statement)} ({esc(origin)}) "
            f"| **{esc(v.verdict)}** | {esc('; '.join(v.reasons))} |"
        )
    if account is not None and account.inputs:
        lines += ["", account.line("records")]
    return "\n".join(lines) + "\n"


def _text(verdicts: list[Verdict], account: cases.Account | None, width: int = 120) -> str:
    """Each claim as a short block for a terminal: its id, verdict and statement on one line, its
    reasons below, wrapped to `width`; no markup, and no control character from the file acts."""
    out: list[str] = []
    for v in verdicts:
        origin = ", ".join(x for x in (v.claim.source, v.claim.date) if x)
        head = f"{v.claim.id}: {v.verdict.upper()} · {v.claim.statement}" + (f" ({origin})" if origin else "")
        out += textwrap.wrap(terminal_safe(head), width, subsequent_indent="    ") or [""]
        for reason in v.reasons:
            out += textwrap.wrap(terminal_safe(reason), width, initial_indent="  - ", subsequent_indent="    ")
    if account is not None and account.inputs:
        out.append(account.line("records"))
    return "\n".join(out) + "\n"
