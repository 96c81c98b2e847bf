"""A self-contained HTML report: the table, its footer, and charts as embedded PNGs.

Every string that came from a record (device names, model names, notes) is escaped: records
are user data. Nothing is loaded from outside the file.
"""

from __future__ import annotations

import base64
import html
import io
import re
from datetime import datetime, timezone

from bench.judging import cases
from bench.publishing import tables
from bench.measuring.metrics import HEADLINE

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}
table{border-collapse:collapse;font-size:13px;margin:1em 0}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td.k{text-align:left}
td.failed{color:#b00;font-weight:bold}
img{max-width:100%;border:1px solid #eee;margin:0.5em 0}
.foot{font-size:13px;color:#444}
"""


def _pyplot():
    """matplotlib's pyplot on the headless Agg backend (reports are made on servers and CI)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _case_label(rec: dict) -> str:
    return f"{rec['model']} {rec['dtype']} {rec['workload']} B{rec['batch']}"


def throughput_chart(table: tables.Table):
    """Headline throughput per case and device: the case statistic over all trials, with the stdev
    between trials as error bars, one panel per workload kind, on a linear axis from zero."""
    plt = _pyplot()
    bars = {}  # kind -> [(label, value, spread)]
    for (case, device), cell in sorted(table.cells.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        if not cell:
            continue
        recs = [r for r in table.records if tables._case_key(r) == case and tables.device_label(r) == device]
        kind = recs[0]["kind"] if recs else None
        metric = HEADLINE.get(kind)
        stat = cases.case_stat(cases.ok(recs), metric) if metric else None
        if stat is None or stat.value is None:
            continue
        label = f"{case[0]} {case[1]} {case[2]} B{case[3]} {case[4]} | {device}"
        bars.setdefault(kind, []).append((label, stat.value, stat.spread or 0.0))
    kinds = [k for k in ("prefill", "decode", "generate") if k in bars]
    if not kinds:
        return None
    n = sum(len(bars[k]) for k in kinds)
    fig, axes = plt.subplots(len(kinds), 1, figsize=(9, 1.5 + 0.5 * n), squeeze=False, layout="constrained")
    for ax, kind in zip(axes[:, 0], kinds):
        labels, values, spreads = zip(*bars[kind])
        ax.barh(range(len(values)), values, xerr=spreads, color="#4c72b0", capsize=3)
        ax.set_yticks(range(len(values)), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(left=0)
        ax.set_xlabel(f"{HEADLINE[kind]} (tokens/s, higher is better; {cases.STATISTIC}, ± stdev between trials)")
    fig.suptitle("Throughput by device")
    return fig


def distribution_chart(records: list[dict]):
    """TTFT and TPOT per round, as box plots per case and device."""
    plt = _pyplot()

    panels = []
    for metric, title in (("ttft_s", "TTFT"), ("tpot_s", "TPOT")):
        data = [(f"{_case_label(r)} | {tables.device_label(r)}", [v * 1e3 for v in r.get(f"{metric}_samples") or [] if v])
                for r in records if r.get("status") == "ok"]
        data = [(label, v) for label, v in data if v]
        if data:
            panels.append((title, data))
    if not panels:
        return None
    n = sum(len(d) for _, d in panels)
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 1.5 + 0.35 * n), squeeze=False,
                             layout="constrained", height_ratios=[len(d) for _, d in panels])
    for ax, (title, data) in zip(axes[:, 0], panels):
        ax.boxplot([v for _, v in data], orientation="horizontal", tick_labels=[label for label, _ in data])
        ax.tick_params(axis="y", labelsize=7)
        ax.set_xscale("log")
        ax.set_xlabel(f"{title} per round (ms, lower is better)")
    fig.suptitle("Latency distributions over the rounds")
    return fig


def per_token_chart(records: list[dict]):
    """Inter-token latency at each step of the generation (median over rounds)."""
    import numpy as np

    plt = _pyplot()

    lines = []
    for r in records:
        rounds = r.get("token_times_s") or []
        if r.get("status") != "ok" or not rounds or len(rounds[0]) < 3:
            continue
        gaps = np.median(np.diff(np.asarray([t for t in rounds if len(t) == len(rounds[0])]), axis=1), axis=0)
        lines.append((f"{_case_label(r)} | {tables.device_label(r)}", gaps * 1e3))
    if not lines:
        return None
    fig, ax = plt.subplots(figsize=(9, 4.5), layout="constrained")
    for label, gaps in lines:
        ax.plot(range(2, len(gaps) + 2), gaps, label=label, linewidth=1)
    ax.set_yscale("log")
    ax.set_xlabel("generated token")
    ax.set_ylabel("gap since the previous token (ms, median over rounds)")
    ax.legend(fontsize=7)
    ax.set_title("Per-token latency over the generation")
    return fig


def _code(escaped: str) -> str:
    """`name` (markdown) -> <code>name</code>, on already escaped text."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", escaped)


def to_html(table: tables.Table, transpose: bool = False, title: str = "chipbench report") -> str:
    header, body = tables.rows(table, transpose)
    keys = 1 if transpose else len(tables.CASE)
    e = html.escape
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title>",
           f"<style>{_STYLE}</style></head><body><h1>{e(title)}</h1>",
           f"<p>Generated {datetime.now(timezone.utc).isoformat(timespec='seconds')} from "
           f"{len(table.records)} record(s).</p>", "<table><tr>"]
    out += [f"<th>{e(h)}</th>" for h in header]
    out.append("</tr>")
    for row in body:
        cells = [f"<td class='{'k' if i < keys else ('failed' if v == 'FAILED' else '')}'>{e(v)}</td>"
                 for i, v in enumerate(row)]
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table><div class='foot'>")
    foot = tables.footer_lines(table)
    out += [f"<p>{_code(e(line.lstrip('- ')))}</p>" for line in foot if line]
    out.append("</div>")
    from bench.publishing import serving_view

    serve_rows = serving_view.table_rows(table.records)
    if serve_rows:
        out.append("<h2>Serving</h2><table><tr>" + "".join(f"<th>{e(h)}</th>" for h in serving_view.COLUMNS) + "</tr>")
        for row in serve_rows:
            out.append("<tr>" + "".join(f"<td class='{'k' if i < 5 else ''}'>{e(v)}</td>" for i, v in enumerate(row))
                       + "</tr>")
        out.append("</table>")
    for chart, data in ((throughput_chart, table), (distribution_chart, table.records),
                        (per_token_chart, table.records), (serving_view.curve_chart, table.records)):
        fig = chart(data)
        if fig is not None:
            out.append(f"<img alt='{e(chart.__doc__.splitlines()[0])}' src='data:image/png;base64,{_png(fig)}'>")
    out.append("</body></html>")
    return "\n".join(out)
