"""Readable tables of result records (the summary `pytest --benchmark` and `chipbench run` print)."""

from __future__ import annotations

import csv
import html
import io
import json
import math
import textwrap

from chipbench.measuring.metrics import HEADLINE, METRICS


def _pm(median, stdev, scale: float = 1.0, digits: int = 1) -> str:
    if median is None:
        return "-"
    text = f"{median * scale:.{digits}f}"
    return text + (f" ± {stdev * scale:.{digits}f}" if stdev is not None else "")


def summary_rows(records: list[dict]) -> list[dict]:
    """One row per case and device over all its trials (chipbench.judging.cases.STATISTIC ± the spread
    between trials, or between the rounds of a single trial)."""
    from chipbench.judging import cases
    from chipbench.publishing.tables import pooled_check_text, pooled_roofline_text

    rows = []
    for key, recs in cases.group(records).items():
        good = cases.ok(recs)
        first = (good or recs)[-1]
        failed = len(recs) - len(good)
        head = HEADLINE.get(first.get("kind"), "output_tok_per_s")
        stats = {m: cases.case_stat(good, m) for m in (head, "ttft_s", "tpot_s")}
        mem = max((r["peak_mem_bytes"] for r in good if r.get("peak_mem_bytes")), default=None)
        est = first.get("expected_mem_bytes")
        s = stats[head]
        note = f"{failed} of {len(recs)} trial(s) failed: {(recs[-1].get('error') or '')[:60]}" if failed else ""
        if cases.loaded_trials(good):
            note = (note + "; " if note else "") + f"{cases.loaded_trials(good)} trial(s) on a loaded host"
        if first.get("exec_note"):  # a fallback, or a compiled step that is less than one whole graph
            note = (note + "; " if note else "") + first["exec_note"][:100]
        throttled = sum(r.get("throttled_rounds") or 0 for r in good)
        if throttled:
            note = (note + "; " if note else "") + f"{throttled} round(s) throttled"
        bound = [r for r in good if r.get("host_bound")]
        if bound:  # the device waited for the host: this speed is the host's
            busy = min(r["host_busy_frac"] for r in bound)
            note = (note + "; " if note else "") + (
                f"host-bound: the host's own work filled {busy:.0%} of each step"
                + (f" in {len(bound)} of {len(good)} trials" if len(bound) < len(good) else "")
            )
        if first.get("dtype_reason"):  # the suite chose another dtype than its own default on this device
            note = (note + "; " if note else "") + first["dtype_reason"]
        energy = [r["energy_per_token_j"] for r in good if r.get("energy_per_token_j")]
        rows.append(
            {
                "backend": first.get("backend"),
                "device": first.get("device_name") or "-",
                "model": first.get("model"),
                "dtype": first.get("dtype"),
                "test": first.get("workload"),
                "B": first.get("batch"),
                "path": cases.path_key(first),
                "t/s": _pm(s.value, s.spread) if good else "FAILED",
                "TTFT ms": _pm(stats["ttft_s"].value, stats["ttft_s"].spread, 1e3) if good else "-",
                "TPOT ms": _pm(stats["tpot_s"].value, stats["tpot_s"].spread, 1e3, 2) if good else "-",
                "peak GiB": (f"{mem / 2**30:.2f}" if mem else "-") + (f" (est {est / 2**30:.2f})" if est else ""),
                "J/token": f"{sum(energy) / len(energy):.3g}" if energy else "-",
                "roofline": pooled_roofline_text(good) if good else "-",
                "correct": pooled_check_text(good) if good else "-",
                "trials×rounds": f"{s.trials}×{s.rounds // s.trials}" if s.trials else "0",
                "note": note,
            }
        )
    return rows


def summary_table(records: list[dict], wide: bool = True, width: int = 120) -> str:
    """One line per case: the workload's headline throughput, TTFT, TPOT, memory and energy over
    all trials, beside its roofline share and the correctness gate's verdict. `wide`: every column;
    else the table that fits `width` columns (compact_summary).

    t/s is prefill tokens/s for pp tests, decode tokens/s for tg tests, output tokens/s for pp+tg.
    """
    from chipbench.judging.cases import SPREAD, STATISTIC
    from chipbench.publishing.tables import plain_table

    if not wide:
        return compact_summary(records, width)
    return plain_table(summary_rows(records)) + f"\n(each cell: the {STATISTIC}, {SPREAD})"


# The compact summary's columns, and the order they give way in when the table is still too wide.
DROPPED_FIRST = ("J/token", "peak GiB", "TTFT ms", "path", "n")


def compact_summary(records: list[dict], width: int = 120) -> str:
    """The summary a terminal holds: what every row shares (device, model, dtype, batch) said once
    above the table, the path cut to its first part, the gate's verdict in a word, notes numbered
    below it, and columns dropped (DROPPED_FIRST) while it is wider than `width`; every line wrapped
    to `width`. The whole table is `--wide`'s, the report's and the records'."""
    from chipbench.judging.cases import SPREAD, STATISTIC
    from chipbench.publishing.tables import plain_table

    rows = summary_rows(records)
    shared = {k: rows[0][k] for k in ("device", "model", "dtype", "B") if len({str(r[k]) for r in rows}) == 1}
    notes: list[str] = []
    short = []
    for r in rows:
        row = {k: v for k, v in r.items() if k not in shared and k not in ("note", "trials×rounds")}
        row["path"] = str(r["path"] or "-").split(",")[0]
        row["peak GiB"] = str(r["peak GiB"]).split(" ")[0]
        row["roofline"] = str(r["roofline"]).replace(" measured", " meas.")
        row["correct"] = str(r["correct"]).split(" ")[0]
        row["n"] = r["trials×rounds"]
        if r["note"]:
            if r["note"] not in notes:  # a note that several rows share is said once
                notes.append(r["note"])
            row["n"] += f" [{notes.index(r['note']) + 1}]"
        short.append(row)
    if all(r.get("J/token") == "-" for r in short):
        for r in short:
            r.pop("J/token", None)
    table = plain_table(short)
    for column in DROPPED_FIRST:
        if max(len(line) for line in table.splitlines()) <= width:
            break
        for r in short:
            r.pop(column, None)
        table = plain_table(short)
    head = " · ".join(f"{k} {v}" if k == "B" else str(v) for k, v in shared.items())
    legend = f"each cell: the {STATISTIC}, {SPREAD}; n: trials×rounds; --wide: every column"
    lines = [head] if head else []
    lines += [*table.splitlines(), legend] + [f"[{i}] {n}" for i, n in enumerate(notes, 1)]
    return "\n".join(
        wrapped for line in lines for wrapped in (textwrap.wrap(line, width) if len(line) > width else [line])
    )


# --- comparisons ---------------------------------------------------------------------------


def _ratio_text(row: dict) -> str:
    if row.get("ratio") is None:
        return "-"
    ci = (
        f" [{row['ci_low']:.3f}, {row['ci_high']:.3f}]"
        if row.get("ci_low") is not None
        else f" [{row.get('needs') or 'no interval'}]"
    )
    return f"{row['ratio']:.3f}{ci}"


def _value_text(value, metric: str, trials: int, rounds: int | None = None) -> str:
    if value is None:
        return "-"
    text = f"{value * 1e3:.2f} ms" if METRICS[metric][0] == "s" else f"{value:.1f}"
    return text + f" ({trials} trial{'s' if trials != 1 else ''}" + (f", {rounds} rounds)" if rounds else ")")


def _verdict_text(row: dict) -> str:
    text = row["verdict"]
    if row.get("drift_source") and row["drift_source"].startswith("prior"):
        text += " (invocation drift assumed)"
    return text


def _power_text(row: dict) -> str:
    """A gated row's smallest detectable regression (stats.POWER probability), or '-'."""
    mdr = row.get("mdr")
    return "-" if mdr is None else f"{mdr:.0%}" if mdr >= 0.095 else f"{mdr:.1%}"


def _common_software(comparison) -> str | None:
    """The software note when every row of the comparison has the same one: said once, under the table."""
    notes = {r.get("software_note") for r in comparison.rows}
    return notes.pop() if len(notes) == 1 and None not in notes else None


def comparison_table(comparison, with_gate: bool) -> tuple[list[str], list[list[str]]]:
    across = comparison.across_devices
    header = (
        ["model", "dtype", "test", "B", "path", "device"]
        + (["baseline device"] if across else [])
        + ["metric", "run", "baseline", "speed ratio [95% CI]", "verdict", "detects"]
        + (["gate"] if with_gate else [])
    )
    body = []
    for r in comparison.rows:
        metric = r["metric"]
        known = metric in METRICS
        loaded = r.get("run_loaded", 0) + r.get("base_loaded", 0)
        row = [r["model"], r["dtype"], r["workload"], str(r["batch"]), str(r.get("exec_path")), r["device"]]
        row += [r["base_device"]] if across else []
        row += [
            metric,
            _value_text(r.get("run_value"), metric, r.get("run_trials", 0), r.get("run_rounds")) if known else "-",
            _value_text(r.get("base_value"), metric, r.get("base_trials", 0), r.get("base_rounds")) if known else "-",
            _ratio_text(r),
            _verdict_text(r)
            + (f"; {loaded} trial(s) on a loaded host" if loaded else "")
            + (f"; {r['machine_note']}" if r.get("machine_note") else "")
            + (f"; {r['decide']}" if r.get("decide") else "")
            + (f"; {r['weights_note']}" if r.get("weights_note") else "")
            + (f"; {r['cpu_note']}" if r.get("cpu_note") else "")
            + (f"; {r['software_note']}" if r.get("software_note") and not _common_software(comparison) else ""),
            _power_text(r),
        ]
        if with_gate:
            note = r.get("gate_note") or ""
            gate = r.get("gate")
            row.append(
                "-"
                if gate is None
                else note
                if gate == "too noisy" and note.startswith("too noisy")
                else gate + (f": {note}" if note and gate != "pass" else "")
            )
        body.append(row)
    return header, body


def comparison_notes(comparison, threshold) -> list[str]:
    from chipbench import stats
    from chipbench.judging.cases import STATISTIC

    notes = [
        f"Statistic: {STATISTIC}. Speed ratio: run over baseline for throughputs, baseline over run "
        "for latencies, so above 1 is better either way. Its 95% interval counts the trials of both sides "
        "and the drift of one invocation (a run) against the baseline's mean: measured where a side holds "
        "several invocations (chipbench baseline over several runs), else a prior of "
        f"{stats.DRIFT_PRIOR:.0%} is assumed and the verdict says so."
    ]
    if comparison.across_devices:
        notes.append(
            "Across devices: each run device beside each baseline device; a different device is "
            "not a regression, so nothing here gates."
        )
    if threshold is not None:
        gated = [r for r in comparison.rows if r.get("mdr") is not None]
        notes.append(
            f"Gate: FAIL when a gated row is significantly below {threshold} (one-sided, Holm over the "
            f"{len(gated)} gated row(s), family-wise false-alarm rate {stats.GATE_ALPHA:.0%}), or when every "
            "trial failed or one failed the correctness gate. detects: the smallest regression the gate "
            f"catches with {stats.POWER:.0%} probability on the noise measured."
        )
        for r in gated:
            notes.append(
                f"More evidence for {r['model']} {r['workload']} {r['metric']} ({r['device']}): {r['mdr_more']}."
            )
    if common := _common_software(comparison):
        notes.append(f"Every row: {common}.")
    return notes + comparison.account_lines()


def _finite(value):
    """JSON has no infinity: a row's degrees of freedom are infinite where a prior stood in for a
    variance (its t is then the normal), written as null."""

    return None if isinstance(value, float) and not math.isfinite(value) else value


DRIFT_ASSUMED = (
    "invocation drift assumed: each side is one invocation, so a prior stands in for how much one run's level "
    "moves from the next (a baseline of several runs measures it)"
)


def comparison_text(comparison, threshold: float | None = None, width: int = 120) -> str:
    """The comparison a terminal holds: one short line per case (its own throughput's ratio, 95%
    interval, verdict and gate), what every line shares said once above, and the explanations once
    below, numbered; the other metrics are in --format md / csv / json."""
    from chipbench.publishing.tables import plain_table, terminal_safe

    by_case: dict[tuple, dict] = {}
    for r in comparison.rows:
        key = tuple(r.get(k) for k in ("model", "dtype", "workload", "batch", "backend", "exec_path", "device"))
        key += (r.get("base_device"),)
        best = by_case.get(key)
        if best is None or (
            str(r.get("metric", "")).endswith("tok_per_s") and not best["metric"].endswith("tok_per_s")
        ):
            by_case[key] = r
    notes: list[str] = []

    def marks(parts: list) -> str:
        """Each explanation once below, numbered: a row cites its own ("[1,3]")."""
        cited = []
        for text in dict.fromkeys(p for p in parts if p):
            if text not in notes:
                notes.append(text)
            cited.append(str(notes.index(text) + 1))
        return f" [{','.join(cited)}]" if cited else ""

    rows = []
    for r in by_case.values():
        assumed = r.get("drift_source") and r["drift_source"].startswith("prior")
        cite = marks(
            [
                DRIFT_ASSUMED if assumed else None,
                r.get("needs"),
                r.get("machine_note"),
                r.get("cpu_note"),
                r.get("decide"),
                r.get("weights_note"),
                r.get("software_note") if not _common_software(comparison) else None,
                r.get("gate_note") if r.get("gate") not in (None, "pass") else None,
            ]
        )
        interval = f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]" if r.get("ci_low") is not None else "none"
        row = {
            "case": " ".join(str(x) for x in (r.get("backend"), r["workload"], f"B{r['batch']}") if x),
            "path": str(r.get("exec_path") or "-").split(",")[0],
            "metric": str(r["metric"]).replace("_tok_per_s", " t/s").replace("_s", ""),
            "ratio": f"{r['ratio']:.3f}" if r.get("ratio") is not None else "-",
            "95% CI": interval,
            "verdict": r["verdict"] + cite,
        }
        if threshold is not None:
            row["gate"] = r.get("gate") or "-"
        rows.append(row)
    shared = {
        k: {str(r.get(k)) for r in comparison.rows}
        for k in ("model", "dtype", "device", "base_device")
        if len({str(r.get(k)) for r in comparison.rows}) == 1
    }
    head = "vs baseline: " + ", ".join(
        f"{'baseline device ' if k == 'base_device' else ''}{v.pop()}" for k, v in shared.items()
    )
    lines = [head, *plain_table(rows).splitlines()]
    lines += [
        "ratio: above 1 is better (run over baseline for a throughput, baseline over run for a latency); "
        "every metric: --format md"
    ]
    lines += [f"[{i}] {n}" for i, n in enumerate(notes, 1)]
    if common := _common_software(comparison):
        lines.append(f"every row: {common}")
    lines += comparison.account_lines()
    out = []
    table = 1 + len(rows)  # lines 1..table: the header and the rows, never wrapped (the columns would not line up)
    for i, line in enumerate(lines):
        line = terminal_safe(line)
        keep = 1 <= i <= table or len(line) <= width
        out += [line] if keep else textwrap.wrap(line, width, subsequent_indent="    ")
    return "\n".join(out) + "\n"


def render_comparison(comparison, fmt: str, threshold: float | None, show_unmatched: bool) -> str:
    if fmt == "text":
        return comparison_text(comparison, threshold)
    header, body = comparison_table(comparison, threshold is not None)
    unmatched = [("run", k) for k in comparison.unmatched_run] + [("baseline", k) for k in comparison.unmatched_base]
    notes = comparison_notes(comparison, threshold)
    if unmatched and not show_unmatched:
        notes.append(f"{len(unmatched)} case(s) on one side only: --unmatched lists them")
    listed = unmatched if show_unmatched else []
    if fmt == "json":
        return json.dumps(
            {
                "threshold": threshold,
                "across_devices": comparison.across_devices,
                "rows": [{k: _finite(v) for k, v in r.items()} for r in comparison.rows],
                "accounts": {s: a.__dict__ for s, a in comparison.accounts.items()},
                "unmatched": [{"side": s, "case": list(k)} for s, k in unmatched],
            },
            indent=1,
        )
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        keys = list(dict.fromkeys(k for r in comparison.rows for k in r))
        w.writerow(keys)
        for r in comparison.rows:
            w.writerow(["" if r.get(k) is None else r[k] for k in keys])
        return buf.getvalue()
    notes += [f"Unmatched ({side}): " + " ".join(map(str, k)) for side, k in listed]
    if fmt == "html":  # the report's page style: one case cell, the table in its own box, verdicts wrap
        from chipbench.publishing.html_page import _STYLE

        e = html.escape
        keys = 5  # model, dtype, test, B, path: one "case" cell, as in the report's table
        head = ["case", *header[keys:]]
        verdicts = {i for i, h in enumerate(head) if h in ("verdict", "gate", "detects", "speed ratio [95% CI]")}
        cells = "".join(f"<th class='{'k' if i in verdicts or i < 2 else ''}'>{e(h)}</th>" for i, h in enumerate(head))

        def td(i: int, v) -> str:
            if i in verdicts:
                return f"<td class='verdict{' bad' if str(v).startswith('FAIL') else ''}'>{e(v)}</td>"
            return f"<td class='{'k' if i < 2 else 'v'}'>{e(v)}</td>"  # values wrap: "47.4 (3 trials, 15 rounds)"

        rows = "".join(
            "<tr><td class='k'>"
            + f"{e(r[0])} {e(r[1])}<br>{e(r[2])} B{e(r[3])} {e(r[4])}</td>"
            + "".join(td(i, v) for i, v in enumerate(r[keys:], start=1))
            + "</tr>"
            for r in body
        )
        return (
            f"<!doctype html><html><head><meta charset='utf-8'><title>chipbench comparison</title>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><style>{_STYLE}</style>"
            f"</head><body><h1>chipbench comparison</h1><div class='scroll'><table><tr>{cells}</tr>{rows}"
            f"</table></div>" + "".join(f"<p class='foot'>{e(n)}</p>" for n in notes) + "</body></html>"
        )
    from chipbench.publishing.tables import md_cell as esc

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(v) for v in row) + " |" for row in body]
    return "\n".join(lines + [""] + [esc(n) for n in notes]) + "\n"
