"""Result tables: one row per case (model, dtype, workload, batch, execution path), one column
group per device.

Several runs of one case on one device are one cell over all their trials (never the newest
alone): the statistic is chipbench.judging.cases.STATISTIC, the spread the stdev between trials (or
between the rounds of a single trial), and the `n` column says how many trials and rounds, how
many failed and how many ran on a loaded host. Every record is accounted for in the footer (used,
failed, duplicates). The same table renders as GitHub markdown (with the metric definitions and
each device's environment in a footer), CSV, JSON and HTML.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import re
from dataclasses import dataclass

from chipbench.errors import UsageError
from chipbench.judging import cases
from chipbench.judging import prices as pricing
from chipbench.judging.cases import check_text
from chipbench.judging.compare import resolve_metric
from chipbench.measuring.metrics import DEFINITIONS, METRICS

CASE = ("model", "dtype", "workload", "batch", "exec_path")
STATS = ("value", "spread", "trials", "rounds", "ci95_low", "ci95_high")
TEXT_METRICS = (
    "headline",
    "roofline",
    "check",
    "n",
    "energy",
    "cost",
)  # not measured metrics: columns made from records
DEFAULT_METRICS = ("headline", "ttft_s", "tpot_s", "roofline", "check", "n")


@dataclass(frozen=True)
class Filters:
    models: tuple[str, ...] = ()
    backends: tuple[str, ...] = ()
    workloads: tuple[str, ...] = ()
    dtypes: tuple[str, ...] = ()

    def keep(self, rec: dict) -> bool:
        return all(
            not allowed or rec.get(field) in allowed
            for field, allowed in (
                ("model", self.models),
                ("backend", self.backends),
                ("workload", self.workloads),
                ("dtype", self.dtypes),
            )
        )


def device_label(rec: dict) -> str:
    """A table column: the adapter and the device (CPU names alone do not tell machines apart:
    the core count is added, as in the case identity)."""
    return f"{rec.get('backend')}: {cases.device_key(rec)}"


def check_metrics(metrics) -> tuple[str, ...]:
    for m in metrics:
        if m not in TEXT_METRICS and m not in METRICS:
            raise UsageError(f"unknown metric {m!r}; valid metrics: {', '.join(TEXT_METRICS)}, {', '.join(METRICS)}")
    return tuple(metrics)


def pooled_energy_text(records: list[dict]) -> str:
    """Joules per output token and per total token (the prompt's included): the median over the
    trials whose energy was metered and trusted; '-' where none was (the footer says how)."""
    out = [r["energy_per_output_token_j"] for r in records if r.get("energy_per_output_token_j") is not None]
    every = [r["energy_per_total_token_j"] for r in records if r.get("energy_per_total_token_j") is not None]
    if not out:
        return "-"
    text = f"{_median(out):.3g} J/out"
    if every:
        text += f", {_median(every):.3g} J/tok"
    return text + (f" ({len(out)} of {len(records)} metered)" if len(out) < len(records) else "")


def case_cost(records: list[dict], prices) -> dict | None:
    """A case's cost at `prices`: $ per million output tokens and per million total tokens (the
    prompt's included; a prefill test's are its prompt tokens) from the case statistic of its
    throughput, the devices it ran on at their hourly price, and its electricity at the metered
    energy; None when its device has no price."""
    if prices is None or not records:
        return None
    first = records[-1]
    hourly = prices.hourly(first.get("device_name"))
    if hourly is None:
        return None
    chips = first.get("env_chips") or 1
    p, n = first.get("prompt_tokens") or 0, first.get("gen_tokens") or 0
    kwh = prices.power.usd_per_kwh if prices.power is not None else None
    energy_out = [r["energy_per_output_token_j"] for r in records if r.get("energy_per_output_token_j") is not None]
    energy_all = [r["energy_per_total_token_j"] for r in records if r.get("energy_per_total_token_j") is not None]
    if first.get("kind") == "prefill":
        rate = cases.case_stat(records, "prefill_tok_per_s").value
        return {
            "out": None,
            "total": pricing.per_million(hourly[0], chips, rate),
            "power_out": None,
            "power_total": pricing.power_per_million(_median(energy_all), kwh) if energy_all else None,
        }
    rate = cases.case_stat(records, "output_tok_per_s").value
    return {
        "out": pricing.per_million(hourly[0], chips, rate),
        "total": pricing.per_million(hourly[0], chips, rate * (p + n) / n) if rate and n else None,
        "power_out": pricing.power_per_million(_median(energy_out), kwh) if energy_out else None,
        "power_total": pricing.power_per_million(_median(energy_all), kwh) if energy_all else None,
    }


def _usd(x: float) -> str:
    return f"${x:.3g}" if x < 1000 else f"${x:,.0f}"


def pooled_cost_text(records: list[dict], prices) -> str:
    """'$X/M out, $Y/M tok (+$Z power)': rent per million output and total tokens, and the metered
    electricity per million output tokens; '-' where the device has no price."""
    c = case_cost(records, prices)
    if c is None or (c["out"] is None and c["total"] is None):
        return "-"
    parts = [f"{_usd(c['out'])}/M out"] if c["out"] is not None else []
    parts += [f"{_usd(c['total'])}/M tok"] if c["total"] is not None else []
    power = c["power_out"] if c["power_out"] is not None else c["power_total"]
    return ", ".join(parts) + (f" (+{_usd(power)} power)" if power is not None else "")


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def energy_method_lines(records: list[dict]) -> list[str]:
    """How the energy of the table's records was measured: one line per meter, domain and check
    outcome, with how many trials each covers; and the reasons where it was not metered."""
    methods: dict[str, int] = {}
    for r in records:
        meter = r.get("energy_meter")
        if meter is None or r.get("status") != "ok":
            continue
        if meter == "none":
            key = "not metered"
        else:
            check = (r.get("energy_check") or "not checked").split(":")[0]
            rate = (
                f", read at {r['energy_sample_hz']:g} Hz and at each round's edges" if r.get("energy_sample_hz") else ""
            )
            key = f"{meter} ({r.get('energy_domain') or 'domain unknown'}{rate}); check: {check}"
            if r.get("energy_j") is None:
                why = re.search(r"(?:^|[(;] ?)energy: ([^;)]*)", r.get("telemetry_not_metered") or "")
                key += "; no figure" + (f" ({re.sub(r'[0-9.]+', 'N', why.group(1))})" if why else "")
        host = r.get("host_energy_meter")
        if host and host != "none":
            key += f"; host beside it: {host} ({r.get('host_energy_domain')})"
        methods[key] = methods.get(key, 0) + 1
    return [f"{k}: {n} trial(s)" for k, n in methods.items()]


def pooled_check_text(records: list[dict]) -> str:
    """WRONG if any trial failed the gate; ok (the worst error) when every checked trial passed."""
    wrong = [r for r in records if r.get("correct") is False]
    if wrong:
        return check_text(wrong[0])
    checked = [r for r in records if r.get("correct") is True and r.get("correctness_rel_err") is not None]
    return check_text(max(checked, key=lambda r: r["correctness_rel_err"])) if checked else "-"


def _share(x: float) -> str:
    """A share of the roofline: whole percent, with a decimal below 1% (a tiny model's 0.4% is not 0%)."""
    return f"{x:.0%}" if x >= 0.01 else f"{x:.1%}" if x >= 0.001 else "<0.1%"


def roofline_text(rec: dict) -> str:
    """MBU for decode tests, MFU for prefill tests: against measured ceilings, then the spec row."""
    if rec.get("roofline_flag"):
        return "MEASUREMENT ERROR (>100%)"
    which = "prefill_mfu" if rec.get("kind") == "prefill" else "mbu"
    name = "MFU" if which == "prefill_mfu" else "MBU"
    parts = [
        f"{_share(rec[f'{tag}_{which}'])} {label}"
        for tag, label in (("measured", "measured"), ("spec", "spec"))
        if rec.get(f"{tag}_{which}") is not None
    ]
    return f"{name} " + " / ".join(parts) if parts else "-"


def pooled_roofline_text(records: list[dict]) -> str:
    """The roofline shares over the trials (geometric mean, like the statistic)."""

    pooled = {
        "kind": records[0].get("kind"),
        "roofline_flag": next((r["roofline_flag"] for r in records if r.get("roofline_flag")), None),
    }
    for key in ("measured_mbu", "spec_mbu", "measured_prefill_mfu", "spec_prefill_mfu"):
        values = [r[key] for r in records if isinstance(r.get(key), (int, float)) and r[key] > 0]
        if values:
            pooled[key] = math.exp(sum(map(math.log, values)) / len(values))
    return roofline_text(pooled)


def n_text(records: list[dict], failed: int, metric: str) -> str:
    """Trials x rounds of the headline metric, with failed and loaded trials said."""
    stat = cases.case_stat(records, metric)
    text = (
        f"{stat.trials}×{stat.rounds // stat.trials}"
        if stat.trials and stat.rounds % stat.trials == 0
        else f"{stat.trials} trials, {stat.rounds} rounds"
    )
    loaded = cases.loaded_trials(records)
    if loaded:
        text += f" ⚠ {loaded} loaded"
    throttled = sum(r.get("throttled_rounds") or 0 for r in records)
    if throttled:
        text += f" ⚠ {throttled} rounds throttled"
    if failed:
        text += f", {failed} failed"
    return text


@dataclass(frozen=True)
class Table:
    """cells[(case, device)][metric] = {value, spread, trials, rounds, ...}; None when every trial failed."""

    cases: list[tuple]
    devices: list[str]
    metrics: tuple[str, ...]
    cells: dict
    records: list[dict]  # every record shown (all trials)
    account: cases.Account | None = None
    prices: object | None = None  # chipbench.judging.prices.Basis: the cost column's prices


def _case_key(rec: dict) -> tuple:
    return tuple(rec.get(k) if k != "exec_path" else cases.path_key(rec) for k in CASE)


def build(records: list[dict], metrics=DEFAULT_METRICS, filters: Filters = Filters(), prices=None) -> Table:
    metrics = check_metrics(metrics)
    account = cases.Account()
    kept = [r for r in records if filters.keep(r)]
    account.inputs = account.filtered = len(records) - len(kept)  # not selected by the filters: counted, not shown
    shown = cases.dedupe(kept, account)
    if not shown:
        raise UsageError("no record matches the filters")
    if tuple(metrics) == DEFAULT_METRICS and any(r.get("energy_j") is not None for r in shown):
        metrics = (*metrics, "energy")  # a column where any record was metered
    if tuple(metrics[: len(DEFAULT_METRICS)]) == DEFAULT_METRICS and prices is not None:
        if any(r.get("status") == "ok" and prices.hourly(r.get("device_name")) for r in shown):
            metrics = (*metrics, "cost")  # a column where any device has a price
    groups: dict[tuple, list[dict]] = {}
    for rec in sorted(shown, key=lambda r: r.get("timestamp_utc") or ""):
        if "roofline" in metrics and rec.get("status") == "ok" and "decode_bytes_per_step" not in rec:
            from chipbench.judging.trial import add_roofline

            try:
                add_roofline(rec)  # records made before the roofline existed: the spec row only
            except UsageError:
                pass  # a model this chipbench does not know: no analytic counts, no roofline
        groups.setdefault((_case_key(rec), device_label(rec)), []).append(rec)  # failed ones too
    table_cases = sorted({c for c, _ in groups}, key=lambda c: tuple(str(x) for x in c))
    devices = sorted({d for _, d in groups})
    cells = {}
    for key, recs in groups.items():
        good = cases.ok(recs)
        account.failed += len(recs) - len(good)
        account.used += len(good)
        if not good:
            cells[key] = None
            continue
        head = resolve_metric("headline", good[-1])
        text = {
            "cost": lambda: pooled_cost_text(good, prices),
            "energy": lambda: pooled_energy_text(good),
            "roofline": lambda: pooled_roofline_text(good),
            "check": lambda: pooled_check_text(good),
            "n": lambda: n_text(good, len(recs) - len(good), head),
        }
        cell = {}
        for m in metrics:
            if m in text:
                cell[m] = {"metric": m, "text": text[m]()}
                continue
            stat = cases.case_stat(good, resolve_metric(m, good[-1]))
            cell[m] = {
                "metric": stat.metric,
                "value": stat.value,
                "spread": stat.spread,
                "trials": stat.trials,
                "rounds": stat.rounds,
                "ci95_low": stat.ci_low,
                "ci95_high": stat.ci_high,
            }
        cells[key] = cell
    return Table(table_cases, devices, metrics, cells, shown, account, prices)


def fmt(stat: dict | None) -> str:
    if stat is not None and "text" in stat:
        return stat["text"]
    if stat is None or stat.get("value") is None:
        return "-"
    med, sd = stat["value"], stat.get("spread")
    if METRICS[stat["metric"]][0] == "s":  # times read best in milliseconds
        med, sd = med * 1e3, (sd * 1e3 if sd is not None else None)
    digits = 1 if abs(med) >= 10 else 2 if abs(med) >= 0.1 else 4
    return f"{med:.{digits}f}" + (f" ± {sd:.{digits}f}" if sd is not None else "")


TITLES = {
    "headline": "t/s",
    "roofline": "roofline",
    "check": "correct",
    "n": "n",
    "energy": "energy",
    "cost": "cost",
    "ttft_s": "TTFT ms",
    "tpot_s": "TPOT ms",
    "e2e_s": "E2E ms",
    "itl_s": "ITL ms",
    "prefill_tok_per_s": "prefill t/s",
    "decode_tok_per_s": "decode t/s",
    "output_tok_per_s": "output t/s",
}


def _metric_title(m: str) -> str:
    return TITLES[m]


def _texts(table: Table, case: tuple, device: str) -> list[str]:
    """One case on one device, a text per metric: blank when it did not run, FAILED when it failed."""
    cell = table.cells.get((case, device), "absent")
    return ["" if cell == "absent" else "FAILED" if cell is None else fmt(cell[m]) for m in table.metrics]


def rows(table: Table, transpose: bool = False) -> tuple[list[str], list[list[str]]]:
    """Header and string rows: cases down / devices across, or the transpose."""
    titles = [_metric_title(m) for m in table.metrics]
    if not transpose:
        header = ["model", "dtype", "test", "B", "path"] + [f"{d} {t}" for d in table.devices for t in titles]
        body = [
            [str(x) for x in case] + [t for d in table.devices for t in _texts(table, case, d)] for case in table.cases
        ]
    else:
        header = ["device"] + [f"{c[0]} {c[1]} {c[2]} B{c[3]} {c[4]} {t}" for c in table.cases for t in titles]
        body = [[d] + [t for case in table.cases for t in _texts(table, case, d)] for d in table.devices]
    return header, body


def plain_table(rows: list[dict]) -> str:
    """Rows as a terminal table: text columns left-aligned (device names, paths and reasons read as
    text), columns of figures right-aligned (numbers, and texts that start with one, such as
    "369.6 ± 81.9", with "-" for none), two spaces between columns, no trailing blanks."""
    if not rows:
        return ""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    cells = [{k: "" if r.get(k) is None else terminal_safe(r.get(k)) for k in keys} for r in rows]

    def figure(v) -> bool:
        if isinstance(v, bool):
            return False
        return isinstance(v, (int, float)) or isinstance(v, str) and (v == "-" or re.match(r"[-+]?\d", v) is not None)

    numeric = {k: all(figure(r.get(k)) for r in rows if r.get(k) is not None) for k in keys}
    widths = {k: max(len(k), *(len(c[k]) for c in cells)) for k in keys}
    lines = [dict(zip(keys, keys)), *cells]
    return "\n".join(
        "  ".join(line[k].rjust(w) if numeric[k] else line[k].ljust(w) for k, w in widths.items()).rstrip()
        for line in lines
    )


# What makes Markdown a link or an image (which a job summary would load from elsewhere): square
# brackets, and the backslash that could undo their escape; with HTML escaped and newlines gone, a
# record's text stays text
_MARKDOWN = re.compile(r"([\\\[\]|])")


def md_cell(text) -> str:
    """Text from a record made safe for one Markdown table cell or line: HTML is escaped (a record's
    error, device or note text never becomes markup on a rendered page), square brackets (no link or
    image), pipes (no new cell), and control characters and newlines become spaces."""
    escaped = html.escape(terminal_safe(text, " "), quote=False)
    return _MARKDOWN.sub(r"\\\1", escaped)


def terminal_safe(text, control: str | None = None) -> str:
    """Text with no control character left to act on a terminal (an escape sequence, a carriage
    return, a bell): each is shown as its escape (\\x1b), or replaced by `control`."""
    return "".join(c if c.isprintable() else (control if control is not None else repr(c)[1:-1]) for c in str(text))


def to_markdown(table: Table, transpose: bool = False, footer: bool = True) -> str:
    header, body = rows(table, transpose)
    lines = [
        "| " + " | ".join(map(md_cell, header)) + " |",
        "|" + "|".join("---" if i < (1 if transpose else len(CASE)) else "---:" for i in range(len(header))) + "|",
    ]
    lines += ["| " + " | ".join(map(md_cell, r)) + " |" for r in body]
    if footer:
        lines += ["", *footer_lines(table)]
    return "\n".join(lines) + "\n"


def footer_lines(table: Table) -> list[str]:
    used = sorted({c[m]["metric"] for c in table.cells.values() if c for m in table.metrics} - set(TEXT_METRICS))
    out = [
        f"Cells: the {cases.STATISTIC}, {cases.SPREAD}; n: trials × rounds each (⚠ trials run on a loaded host, rounds the device throttled, failed trials). Several runs of a "
        "case are pooled, never the newest alone. t/s is the test's own throughput: prefill tokens/s for "
        "ppN, decode tokens/s for tgN, output tokens/s for ppP+tgN."
    ]
    out += [
        f"- `{m}` ({METRICS[m][0]}, {'higher' if METRICS[m][1] else 'lower'} is better): {DEFINITIONS[m]}" for m in used
    ]
    if "roofline" in table.metrics:
        out.append(
            "- roofline: MBU (decode: bytes a step must read / TPOT, over peak bandwidth) or MFU "
            "(prefill: FLOPs / TTFT, over peak FLOP/s), against the device's measured ceilings "
            "and its spec row (results/chips.toml); above 100% is a measurement error, not a result"
        )
    if "check" in table.metrics:
        out.append(
            "- correct: the correctness gate: relative logits error against a CPU fp32 reference "
            "under teacher forcing, within its bound (WRONG: fast but wrong, not a result)"
        )
    if "energy" in table.metrics:
        out.append(
            "- energy: joules per output token (J/out) and per total token, the prompt's included (J/tok), "
            "the median over the metered trials. A meter is checked before its counter is trusted (it "
            "advances; the power it implies is one its domain can draw); records made before 2026-12-07 "
            "were not. Meters:"
        )
        out += [f"  - {md_cell(line)}" for line in energy_method_lines(table.records)]
    if "cost" in table.metrics and table.prices is not None:
        out.append(
            "- cost: dollars per million output tokens (M out) and per million total tokens, the prompt's "
            "included (M tok), at the case's throughput (output tokens/s; prompt tokens/s for ppN) on its "
            "devices at their hourly price; + power: the metered energy per token at the electricity price. "
            "Assumptions:"
        )
        out += [f"  - {md_cell(line)}" for line in table.prices.lines()]
    if table.account is not None:
        out.append("- " + table.account.line("records"))
    out.append("")
    out.append("Environment:")
    by_device: dict[str, list[dict]] = {}
    for rec in table.records:
        by_device.setdefault(device_label(rec), []).append(rec)
    for dev, recs in by_device.items():
        # A column can pool runs made with different software: every distinct value is shown,
        # never the first record's alone.
        facts = [
            _distinct("torch", recs, lambda r: r.get("env_torch")),
            _distinct("transformers", recs, lambda r: r.get("env_transformers")),
            _distinct("runtime", recs, lambda r: r.get("env_runtime")),
            _distinct("driver", recs, lambda r: r.get("env_driver") or "-"),
            _distinct(
                "host CPU",
                recs,
                lambda r: (
                    f"{r.get('env_cpu_model')} ({r.get('env_cpu_cores')} cores)"
                    + (
                        f" [{r['env_device_isa']}]"
                        if r.get("backend_kind") == "cpu" and r.get("env_device_isa")
                        else ""
                    )
                ),
            ),
            _distinct("stack", recs, lambda r: r.get("stack") or r.get("exec_path")),
            _distinct(
                "chipbench",
                recs,
                lambda r: f"{r.get('harness_version')}" + (f" ({r['git_commit'][:12]})" if r.get("git_commit") else ""),
            ),
            _run_span(recs),
        ]
        out.append(f"- {md_cell(dev)}: " + ", ".join(md_cell(f) for f in facts))
    return out


def _distinct(label: str, recs: list[dict], fact) -> str:
    """One fact of a device's records: its value, or each distinct value in order, with ' / '."""
    return f"{label} " + " / ".join(dict.fromkeys(str(fact(r)) for r in recs))


def _run_span(recs: list[dict]) -> str:
    """When the device's records were made: one time, or the first and the last."""
    times = sorted({t for r in recs if (t := r.get("timestamp_utc"))})
    if len(times) < 2:
        return f"run {times[0] if times else None}"
    return f"run {times[0]} to {times[-1]}"


def to_csv(table: Table) -> str:
    """Wide CSV of numbers: per device and metric, its median, stdev, n and 95% interval."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(list(CASE) + [f"{d} | {m} | {s}" for d in table.devices for m in table.metrics for s in STATS])
    for case in table.cases:
        row = list(case)
        for d in table.devices:
            cell = table.cells.get((case, d))
            for m in table.metrics:
                row += [(cell[m].get(s) if cell else None) for s in STATS]
        w.writerow(["" if v is None else v for v in row])
    return buf.getvalue()


def to_json(table: Table) -> str:
    out = []
    for case in table.cases:
        entry = dict(zip(CASE, case))
        entry["results"] = {}
        for d in table.devices:
            if (case, d) not in table.cells:
                continue
            cell = table.cells[(case, d)]
            entry["results"][d] = (
                {"status": "failed"}
                if cell is None
                else {
                    "status": "ok",
                    **{
                        v["metric"]: ({"text": v["text"]} if "text" in v else {s: v[s] for s in STATS})
                        for v in cell.values()
                    },
                }
            )
        out.append(entry)
    return json.dumps(out, indent=1)
