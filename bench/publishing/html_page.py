"""A self-contained HTML report: the table, its footer, and charts as embedded PNGs.

Every string that came from a record (device names, model names, notes) is escaped: records
are user data. Nothing is loaded from outside the file.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
import textwrap
from datetime import datetime, timezone

from chipbench.judging import cases
from chipbench.measuring.metrics import HEADLINE
from chipbench.publishing import serving_view, tables
from chipbench.publishing.charts import pyplot

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}
.scroll{overflow-x:auto;max-width:100%;border:1px solid #ddd;margin:1em 0}
table{border-collapse:separate;border-spacing:0;font-size:13px}
th,td{border-right:1px solid #ccc;border-bottom:1px solid #ccc;padding:4px 6px;text-align:right;white-space:nowrap}
th{background:#f3f3f3}td.k,th.k{text-align:left}
tr.first td{border-top:2px solid #999}
td.k{white-space:normal;overflow-wrap:anywhere;min-width:7em;max-width:15em}
td.k:first-child,th.k:first-child{position:sticky;left:0;background:#fafafa;z-index:1}
td.verdict{white-space:normal;min-width:7em;max-width:12em;text-align:left}
td.v{white-space:normal;min-width:6em}
td.failed,td.bad{color:#b00;font-weight:bold}td.good{color:#060}
img{max-width:100%;height:auto;border:1px solid #eee;margin:0.5em 0}
.foot{font-size:13px;color:#444}
"""


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _number(v: float, _pos=None) -> str:
    """A tick label as a plain number (20, 0.5, 1500), never 2×10¹."""
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:g}"


def readable_axis(ax, which: str, values, log: bool = True) -> None:
    """Plain-number ticks on `which` ("x" or "y"). Data spanning less than 10x get a linear axis from
    zero (bar lengths and box positions then mean something); wider data a log axis ticked at 1, 2
    and 5 times powers of ten, so every decade has labelled ticks and no minor label crowds them."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis = ax.xaxis if which == "x" else ax.yaxis
    positive = [v for v in values if v and v > 0]
    if log and positive and max(positive) / min(positive) >= 10:
        (ax.set_xscale if which == "x" else ax.set_yscale)("log")
        decades = math.log10(max(positive) / min(positive))
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if decades <= 1.5 else (1.0,)))
        axis.set_minor_formatter(NullFormatter())
    else:
        (ax.set_xlim if which == "x" else ax.set_ylim)(0, max(positive, default=1) * 1.08)
    axis.set_major_formatter(FuncFormatter(_number))


def tick_label(text: str, width: int = 56) -> str:
    """A case's label beside a chart, "case | device": the case on one line and the device on the
    next, each shortened to `width` characters, so labels never squeeze the plot and the device is
    never the part cut off."""

    case, _, device = text.rpartition(" | ")
    return "\n".join(textwrap.shorten(t, width, placeholder=" …") for t in (case, device) if t)


def _case_label(rec: dict) -> str:
    return f"{rec['model']} {rec['dtype']} {rec['workload']} B{rec['batch']}"


def throughput_chart(table: tables.Table):
    """Headline throughput per case and device: the case statistic over all trials, with the stdev
    between trials as error bars, one panel per workload kind, on a linear axis from zero."""
    plt = pyplot()
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
        label = tick_label(f"{case[0]} {case[1]} {case[2]} B{case[3]} {case[4]} | {device}")
        bars.setdefault(kind, []).append((label, stat.value, stat.spread or 0.0))
    kinds = [k for k in ("prefill", "decode", "generate") if k in bars]
    if not kinds:
        return None
    n = sum(len(bars[k]) for k in kinds)
    fig, axes = plt.subplots(len(kinds), 1, figsize=(11, 1.5 + 0.5 * n), squeeze=False, layout="constrained")
    for ax, kind in zip(axes[:, 0], kinds):
        labels, values, spreads = zip(*bars[kind])
        ax.barh(range(len(values)), values, xerr=spreads, color="#4c72b0", capsize=3)
        ax.set_yticks(range(len(values)), labels, fontsize=8)
        ax.invert_yaxis()
        readable_axis(ax, "x", [v + e for v, e in zip(values, spreads)], log=False)  # bars: linear from zero
        ax.set_xlabel(f"{HEADLINE[kind]} (tokens/s, higher is better)\n{cases.STATISTIC}, {cases.SPREAD}", fontsize=9)
    fig.suptitle("Throughput by device")
    return fig


def _by_case(records: list[dict]) -> dict[str, list[dict]]:
    """OK records by case and device, in first-seen order: one box or line each, trials pooled."""
    out: dict[str, list[dict]] = {}
    for r in records:
        if r.get("status") == "ok":
            out.setdefault(f"{_case_label(r)} {cases.path_key(r)} | {tables.device_label(r)}", []).append(r)
    return out


def distribution_chart(records: list[dict]):
    """TTFT and TPOT per round, as box plots per case and device (the rounds of all its trials)."""
    plt = pyplot()

    panels = []
    for metric, title in (("ttft_s", "TTFT"), ("tpot_s", "TPOT")):
        data = [
            (label, [v * 1e3 for r in recs for v in r.get(f"{metric}_samples") or [] if v])
            for label, recs in _by_case(records).items()
        ]
        data = [(label, v) for label, v in data if v]
        if data:
            panels.append((title, data))
    if not panels:
        return None
    n = sum(len(d) for _, d in panels)
    fig, axes = plt.subplots(
        len(panels),
        1,
        figsize=(11, 1.5 + 0.45 * n),
        squeeze=False,
        layout="constrained",
        height_ratios=[len(d) for _, d in panels],
    )
    for ax, (title, data) in zip(axes[:, 0], panels):
        ax.boxplot([v for _, v in data], orientation="horizontal", tick_labels=[tick_label(label) for label, _ in data])
        ax.tick_params(axis="y", labelsize=7)
        ax.invert_yaxis()
        readable_axis(ax, "x", [v for _, vals in data for v in vals])
        ax.set_xlabel(f"{title} per round, all trials (ms, lower is better)")
    fig.suptitle("Latency distributions over the rounds")
    return fig


def per_token_chart(records: list[dict]):
    """Inter-token latency at each step of the generation (median over the rounds of all trials)."""
    import numpy as np

    plt = pyplot()

    lines = []
    for label, recs in _by_case(records).items():
        rounds = [t for r in recs for t in r.get("token_times_s") or []]
        if not rounds or len(rounds[0]) < 3:
            continue
        gaps = np.median(np.diff(np.asarray([t for t in rounds if len(t) == len(rounds[0])]), axis=1), axis=0)
        lines.append((label, gaps * 1e3))
    if not lines:
        return None
    fig, ax = plt.subplots(figsize=(11, 4.5 + 0.16 * len(lines)), layout="constrained")
    styles = ("-", "--", ":", "-.")
    for i, (label, gaps) in enumerate(lines):  # ten colours, then the next line style: no two lines alike
        ax.plot(range(2, len(gaps) + 2), gaps, label=label, linewidth=1.2, linestyle=styles[(i // 10) % 4])
    readable_axis(ax, "y", [v for _, gaps in lines for v in gaps])
    ax.set_xlabel("generated token")
    ax.set_ylabel("gap since the previous token (ms, median over rounds)")
    ax.set_title("Per-token latency over the generation")
    fig.legend(fontsize=7, loc="outside lower center", frameon=False)  # below the plot, never over the lines
    return fig


def _code(escaped: str) -> str:
    """`name` (markdown) -> <code>name</code>, on already escaped text."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", escaped)


VERDICT_COLUMNS = ("roofline", "check")  # the columns whose text is a verdict: coloured, never cut off


def _cell_class(metric: str | None, text: str, key: bool) -> str:
    if key:
        return "k"
    verdict = "verdict " if metric in VERDICT_COLUMNS else ""
    if text == "FAILED" or (verdict and text.startswith(("WRONG", "MEASUREMENT ERROR"))):
        return verdict + "bad"
    if metric == "check" and text.startswith("ok"):
        return verdict + "good"
    return verdict.strip()


def table_html(table: tables.Table, transpose: bool = False) -> list[str]:
    """The table one row per case and device (devices down, not across), so its width does not grow
    with the number of devices and the verdict columns stay on the page; rows of one case sit together
    (transposed: rows of one device). Wider tables (many --metrics) scroll inside their own box with the
    first column in view, never the page."""
    e = html.escape
    titles = [tables._metric_title(m) for m in table.metrics]
    keys = ["case", "path", "device"]
    order = (
        [(c, d) for c in table.cases for d in table.devices]
        if not transpose
        else [(c, d) for d in table.devices for c in table.cases]
    )
    out = [
        "<div class='scroll'><table><tr>"
        + "".join(f"<th class='k'>{e(k)}</th>" for k in keys)
        + "".join(
            f"<th class='{'k' if m in VERDICT_COLUMNS else ''}'>{e(t)}</th>" for m, t in zip(table.metrics, titles)
        )
        + "</tr>"
    ]
    group = None
    for case, device in order:
        if (case, device) not in table.cells:
            continue  # this case did not run on this device
        first = (case if not transpose else device) != group
        group = case if not transpose else device
        model, dtype, test, batch, path = (str(v) for v in case)
        cells = [
            f"<td class='k'>{e(model)} {e(dtype)}<br>{e(test)} B{e(batch)}</td>",
            f"<td class='k'>{e(path)}</td>",
            f"<td class='k'>{e(device)}</td>",
        ]
        cells += [
            f"<td class='{_cell_class(m, v, False)}'>{e(v)}</td>"
            for m, v in zip(table.metrics, tables._texts(table, case, device))
        ]
        out.append(f"<tr class='{'first' if first else ''}'>" + "".join(cells) + "</tr>")
    out.append("</table></div>")
    return out


def cost_chart(table: tables.Table):
    """Rent per million output tokens per case and device (total tokens for prefill tests), at the
    prices under the table; cases whose device has no price are left out."""
    if table.prices is None:
        return None
    plt = pyplot()
    bars = []
    for (case, device), cell in sorted(table.cells.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        if not cell:
            continue
        recs = cases.ok([r for r in table.records if tables._case_key(r) == case and tables.device_label(r) == device])
        cost = tables.case_cost(recs, table.prices)
        value = cost and (cost["out"] if cost["out"] is not None else cost["total"])
        if value:
            unit = "out" if cost["out"] is not None else "prompt"
            bars.append((tick_label(f"{case[0]} {case[1]} {case[2]} B{case[3]} {case[4]} | {device} ({unit})"), value))
    if not bars:
        return None
    fig, ax = plt.subplots(figsize=(11, 1.5 + 0.45 * len(bars)), layout="constrained")
    labels, values = zip(*bars)
    ax.barh(range(len(values)), values, color="#dd8452")
    ax.set_yticks(range(len(values)), labels, fontsize=8)
    ax.invert_yaxis()
    readable_axis(ax, "x", values, log=max(values) / min(values) > 100)
    ax.set_xlabel("$ per million tokens (rent at the listed prices; lower is better)", fontsize=9)
    fig.suptitle("Cost per million tokens")
    return fig


def to_html(table: tables.Table, transpose: bool = False, title: str = "chipbench report", cost_at=None) -> str:
    e = html.escape
    out = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<style>{_STYLE}</style></head><body><h1>{e(title)}</h1>",
        f"<p>Generated {datetime.now(timezone.utc).isoformat(timespec='seconds')} from "
        f"{len(table.records)} record(s).</p>",
    ]
    out += table_html(table, transpose)
    out.append("<div class='foot'>")
    foot = tables.footer_lines(table)
    out += [f"<p>{_code(e(line.lstrip('- ')))}</p>" for line in foot if line]
    out.append("</div>")
    serve_rows = serving_view.table_rows(table.records, table.prices)
    if serve_rows:
        out.append(
            "<h2>Serving</h2><div class='scroll'><table><tr>"
            + "".join(f"<th>{e(h)}</th>" for h in serving_view.COLUMNS)
            + "</tr>"
        )
        for row in serve_rows:
            out.append(
                "<tr>" + "".join(f"<td class='{'k' if i < 5 else ''}'>{e(v)}</td>" for i, v in enumerate(row)) + "</tr>"
            )
        out.append("</table></div>")
        if table.prices is not None and any(row[-1] != "-" for row in serve_rows):
            out.append("<p>$/M out: " + e("; ".join(table.prices.lines())) + "</p>")
            if cost_at is not None:
                out += [f"<p>{e(line)}</p>" for line in serving_view.costs_at(table.records, table.prices, cost_at)]
    for chart, data in (
        (throughput_chart, table),
        (cost_chart, table),
        (distribution_chart, table.records),
        (per_token_chart, table.records),
        (serving_view.curve_chart, table.records),
    ):
        fig = chart(data)
        if fig is not None:
            out.append(f"<img alt='{e(chart.__doc__.splitlines()[0])}' src='data:image/png;base64,{_png(fig)}'>")
    out.append("</body></html>")
    return "\n".join(out)
