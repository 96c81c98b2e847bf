"""Claim verdicts (bench/judging/claims.py) as Markdown or JSON."""

from __future__ import annotations

import json
import math

from chipbench.judging import cases
from chipbench.judging.claims import Verdict
from chipbench.publishing.tables import md_cell as esc


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
