"""Serving levels as a table and as the curve users compare chips by: output tokens/s (per device)
against tokens/s per user (1 / TPOT), one point per load level, one line per device and model.

Several trials of one level are pooled: each figure is the median over them, and the table's
n column says how many trials and requests stand behind it.
"""

from __future__ import annotations

import statistics
from collections import defaultdict

from chipbench.judging import prices as pricing
from chipbench.publishing.charts import pyplot

COLUMNS = (
    "backend",
    "device",
    "model",
    "dtype",
    "test",
    "trials",
    "ok/sent",
    "req/s",
    "out tok/s",
    "tok/s/user",
    "TTFT p50 ms",
    "TTFT p99 ms",
    "TPOT p50 ms",
    "TPOT p99 ms",
    "ITL p99 ms",
    "E2E p50 s",
    "goodput req/s",
    "goodput %",
    "$/M out",
)


def serving_records(records: list[dict]) -> list[dict]:
    return [r for r in records if r.get("kind") == "serve"]


def _levels(records: list[dict]) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in serving_records(records):
        key = (r.get("backend"), r.get("device_name"), r.get("model"), r.get("dtype"), r.get("workload"))
        groups[key].append(r)
    return dict(
        sorted(
            groups.items(),
            key=lambda kv: (
                tuple(str(x) for x in kv[0][:4]),
                kv[1][0].get("serve_concurrency") or 0,
                kv[1][0].get("serve_rate_per_s") or 0,
            ),
        )
    )


def _med(recs: list[dict], field: str, scale: float = 1.0) -> float | None:
    vals = [r[field] for r in recs if r.get("status") == "ok" and r.get(field) is not None]
    return statistics.median(vals) * scale if vals else None


def _f(v: float | None, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def level_cost(recs: list[dict], prices) -> float | None:
    """A serving level's rent per million output tokens: its server's devices at their hourly price
    over the level's output tokens/s (median over its trials); None without a price."""
    if prices is None:
        return None
    good = [r for r in recs if r.get("status") == "ok"]
    hourly = prices.hourly(good[0].get("device_name")) if good else None
    if hourly is None:
        return None
    return pricing.per_million(hourly[0], good[0].get("env_chips") or 1, _med(recs, "serve_output_tok_per_s"))


def costs_at(records: list[dict], prices, target: float) -> list[str]:
    """Each serving curve's cost interpolated at `target` tokens/s per user (InferenceX's way of
    quoting cost at an interactivity level), or why not."""
    curves: dict[tuple, list[tuple[float, float, str]]] = defaultdict(list)
    for (backend, device, model, dtype, workload), recs in _levels(records).items():
        cost, user = level_cost(recs, prices), _med(recs, "tok_per_s_per_user")
        level = workload.split(" ")[-1]
        base = " ".join(workload.split(" ")[:-1]) or workload
        curves[(backend, device, model, dtype, base)].append((user, cost, level))
    out = []
    for (backend, device, model, dtype, base), levels in curves.items():
        got = pricing.cost_at(levels, target)
        figure = f"${got.usd_per_m:.3g}/M out ({got.note})" if got.usd_per_m is not None else f"none: {got.note}"
        out.append(f"{device or backend} · {model} {dtype} {base} at {target:g} tok/s/user: {figure}")
    return out


def table_rows(records: list[dict], prices=None) -> list[list[str]]:
    rows = []
    for (backend, device, model, dtype, workload), recs in _levels(records).items():
        ok = sum(r.get("serve_ok") or 0 for r in recs)
        unsent = sum(r.get("serve_not_sent") or 0 for r in recs)
        sent = sum(r.get("serve_requests") or 0 for r in recs) - unsent
        good = [r for r in recs if r.get("status") == "ok"]
        goodput = _med(recs, "goodput_fraction", 100)
        rows.append(
            [
                str(backend),
                str(device or "-"),
                str(model),
                str(dtype),
                str(workload),
                f"{len(good)}/{len(recs)}",
                f"{ok}/{sent}"
                + (f" ({unsent} unsent)" if unsent else "")
                + (" PARTIAL" if any(r.get("serve_partial") for r in recs) else ""),
                _f(_med(recs, "request_per_s"), 2),
                _f(_med(recs, "serve_output_tok_per_s")),
                _f(_med(recs, "tok_per_s_per_user")),
                _f(_med(recs, "ttft_s_median", 1e3)),
                _f(_med(recs, "ttft_s_p99", 1e3)),
                _f(_med(recs, "tpot_s_median", 1e3), 2),
                _f(_med(recs, "tpot_s_p99", 1e3), 2),
                _f(_med(recs, "itl_s_p99", 1e3), 2),
                _f(_med(recs, "e2e_s_median"), 2),
                _f(_med(recs, "goodput_req_per_s"), 2),
                _f(goodput, 0),
                _f(level_cost(recs, prices), 3),
            ]
        )
    return rows


def to_markdown(records: list[dict], prices=None, cost_at: float | None = None) -> str:
    rows = table_rows(records, prices)
    if not rows:
        return ""
    from chipbench.publishing.tables import md_cell

    slos = sorted(
        {
            (r.get("slo_ttft_s"), r.get("slo_tpot_s"))
            for r in serving_records(records)
            if r.get("slo_ttft_s") is not None or r.get("slo_tpot_s") is not None
        },
        key=str,
    )
    slo_text = (
        " or ".join(
            f"TTFT ≤ {t if t is not None else '-'} s and TPOT ≤ {p if p is not None else '-'} s" for t, p in slos
        )
        or "TTFT and TPOT within the run's SLO (none recorded)"
    )
    if len(slos) > 1:
        slo_text += " (each level at its own SLO: the records were run with different ones)"
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(md_cell(c) for c in row) + " |" for row in rows]
    lines.append("")
    lines.append(
        "Serving levels: each figure is the median over the level's trials; out tok/s is generated tokens "
        f"over the level's wall time, tok/s/user is 1 / median TPOT, goodput counts requests with {slo_text} (goodput % of every request "
        "the level planned: one left unsent at its time bound met no limit)."
    )
    if prices is not None and any(row[-1] != "-" for row in rows):
        lines.append("")
        lines.append(
            "$/M out: the server's devices at their hourly price over the level's output tokens/s. Assumptions: "
            + "; ".join(prices.lines())
        )
        if cost_at is not None:
            lines += ["", f"Cost at {cost_at:g} tokens/s per user, interpolated between the levels that bracket it:"]
            lines += [f"- {md_cell(line)}" for line in costs_at(records, prices, cost_at)]
    return "\n".join(lines)


def curve_chart(records: list[dict]):
    """Output tokens/s against tokens/s per user, one point per serving level (the serving curve)."""
    series: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    for (backend, device, model, dtype, workload), recs in _levels(records).items():
        x, y = _med(recs, "tok_per_s_per_user"), _med(recs, "serve_output_tok_per_s")
        if x is None or y is None:
            continue
        level = workload.split(" ")[-1].removeprefix("serve@")
        series[f"{device or backend} · {model} {dtype}"].append((x, y, level))
    if not series:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for label, pts in sorted(series.items()):  # points in load order (concurrency, then rate): the curve
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
        for x, y, level in pts:
            ax.annotate(level, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    xs = [p[0] for pts in series.values() for p in pts]
    ys = [p[1] for pts in series.values() for p in pts]
    ax.set_xlabel("tokens/s per user (1 / TPOT)")
    ax.set_ylabel("output tokens/s (all requests)")
    ax.set_xlim(0, max(xs) * 1.15)  # linear from zero, room for the last point's label
    ax.set_ylim(0, max(ys) * 1.15)
    ax.grid(True, alpha=0.3)
    ax.set_title("Serving: throughput against interactivity")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)  # beside, never over the data
    return fig
