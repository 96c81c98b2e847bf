"""Result tables: one row per case (model, dtype, workload, batch), one column group per device.

Every cell is a median with its spread. The same table renders as GitHub markdown (with the
metric definitions and each device's environment in a footer), CSV, JSON and HTML.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass

from bench.judging.compare import resolve_metric
from bench.errors import UsageError
from bench.measuring.metrics import DEFINITIONS, METRICS

CASE = ("model", "dtype", "workload", "batch")
STATS = ("median", "stdev", "n", "ci95_low", "ci95_high")
DEFAULT_METRICS = ("headline", "ttft_s", "tpot_s", "roofline", "check")


@dataclass(frozen=True)
class Filters:
    models: tuple[str, ...] = ()
    backends: tuple[str, ...] = ()
    workloads: tuple[str, ...] = ()
    dtypes: tuple[str, ...] = ()

    def keep(self, rec: dict) -> bool:
        return all(not allowed or rec.get(field) in allowed for field, allowed in (
            ("model", self.models), ("backend", self.backends), ("workload", self.workloads),
            ("dtype", self.dtypes)))


def device_label(rec: dict) -> str:
    label = f"{rec.get('backend')}: {rec.get('device_name') or '?'}"
    if rec.get("backend_kind") == "cpu" and rec.get("env_cpu_cores"):
        label += f" ({rec['env_cpu_cores']} cores)"  # CPU names alone do not tell machines apart
    return label


def check_metrics(metrics) -> tuple[str, ...]:
    for m in metrics:
        if m not in ("headline", "roofline", "check") and m not in METRICS:
            raise UsageError(f"unknown metric {m!r}; valid metrics: headline, roofline, check, {', '.join(METRICS)}")
    return tuple(metrics)


def check_text(rec: dict) -> str:
    """The correctness gate's verdict: a fast but wrong backend is marked in every table."""
    if rec.get("correct") is True:
        return f"ok ({rec['correctness_rel_err']:.2%} ≤ {rec['correctness_tolerance']:.2%})"
    if rec.get("correct") is False:
        return f"WRONG: {rec.get('correctness_note') or 'failed the correctness gate'}"
    return "-"


def roofline_text(rec: dict) -> str:
    """MBU for decode tests, MFU for prefill tests: against measured ceilings, then the spec row."""
    if rec.get("roofline_flag"):
        return "MEASUREMENT ERROR (>100%)"
    which = "prefill_mfu" if rec.get("kind") == "prefill" else "mbu"
    name = "MFU" if which == "prefill_mfu" else "MBU"
    parts = [f"{rec[f'{tag}_{which}']:.0%} {label}" for tag, label in (("measured", "measured"), ("spec", "spec"))
             if rec.get(f"{tag}_{which}") is not None]
    return f"{name} " + " / ".join(parts) if parts else "-"




@dataclass(frozen=True)
class Table:
    """cells[(case, device)][metric] = {median, stdev, n, ...}; None for a failed case."""

    cases: list[tuple]
    devices: list[str]
    metrics: tuple[str, ...]
    cells: dict
    records: list[dict]  # the records shown (newest per case and device)


def build(records: list[dict], metrics=DEFAULT_METRICS, filters: Filters = Filters()) -> Table:
    metrics = check_metrics(metrics)
    shown = [r for r in records if filters.keep(r)]
    if not shown:
        raise UsageError("no record matches the filters")
    newest: dict[tuple, dict] = {}
    for rec in sorted(shown, key=lambda r: r.get("timestamp_utc") or ""):
        if "roofline" in metrics and rec.get("status") == "ok" and "decode_bytes_per_step" not in rec:
            from bench.measuring.runner import add_roofline

            try:
                add_roofline(rec)  # records made before the roofline existed: the spec row only
            except UsageError:
                pass  # a model this chipbench does not know: no analytic counts, no roofline
        newest[(tuple(rec.get(k) for k in CASE), device_label(rec))] = rec  # failed ones too
    cases = sorted({c for c, _ in newest}, key=lambda c: tuple(str(x) for x in c))
    devices = sorted({d for _, d in newest})
    cells = {}
    for (case, dev), rec in newest.items():
        if rec.get("status") != "ok":
            cells[(case, dev)] = None
            continue
        text = {"roofline": roofline_text, "check": check_text}
        cells[(case, dev)] = {m: {"metric": m, "text": text[m](rec)} if m in text else
                              {s: rec.get(f"{resolve_metric(m, rec)}_{s}") for s in STATS}
                              | {"metric": resolve_metric(m, rec)} for m in metrics}
    return Table(cases, devices, metrics, cells, list(newest.values()))


def fmt(stat: dict | None) -> str:
    if stat is not None and "text" in stat:
        return stat["text"]
    if stat is None or stat.get("median") is None:
        return "-"
    med, sd = stat["median"], stat.get("stdev")
    if METRICS[stat["metric"]][0] == "s":  # times read best in milliseconds
        med, sd = med * 1e3, (sd * 1e3 if sd is not None else None)
    digits = 1 if abs(med) >= 10 else 2 if abs(med) >= 0.1 else 4
    return f"{med:.{digits}f}" + (f" ± {sd:.{digits}f}" if sd is not None else "")


TITLES = {"headline": "t/s", "roofline": "roofline", "check": "correct", "ttft_s": "TTFT ms", "tpot_s": "TPOT ms", "e2e_s": "E2E ms",
          "itl_s": "ITL ms", "prefill_tok_per_s": "prefill t/s", "decode_tok_per_s": "decode t/s",
          "output_tok_per_s": "output t/s"}


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
        header = ["model", "dtype", "test", "B"] + [f"{d} {t}" for d in table.devices for t in titles]
        body = [[str(x) for x in case] + [t for d in table.devices for t in _texts(table, case, d)]
                for case in table.cases]
    else:
        header = ["device"] + [f"{c[0]} {c[1]} {c[2]} B{c[3]} {t}" for c in table.cases for t in titles]
        body = [[d] + [t for case in table.cases for t in _texts(table, case, d)] for d in table.devices]
    return header, body


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(table: Table, transpose: bool = False, footer: bool = True) -> str:
    header, body = rows(table, transpose)
    lines = ["| " + " | ".join(map(_md_escape, header)) + " |",
             "|" + "|".join("---" if i < (1 if transpose else 4) else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(map(_md_escape, r)) + " |" for r in body]
    if footer:
        lines += ["", *footer_lines(table)]
    return "\n".join(lines) + "\n"


def footer_lines(table: Table) -> list[str]:
    used = sorted({c[m]["metric"] for c in table.cells.values() if c for m in table.metrics} - {"roofline", "check"})
    out = ["Cells: median ± sample stdev over the timed rounds. t/s is the test's own throughput: "
           "prefill tokens/s for ppN, decode tokens/s for tgN, output tokens/s for ppP+tgN."]
    out += [f"- `{m}` ({METRICS[m][0]}, {'higher' if METRICS[m][1] else 'lower'} is better): "
            f"{DEFINITIONS[m]}" for m in used]
    if "roofline" in table.metrics:
        out.append("- roofline: MBU (decode: bytes a step must read / TPOT, over peak bandwidth) or MFU "
                   "(prefill: FLOPs / TTFT, over peak FLOP/s), against the device's measured ceilings "
                   "and its spec row (results/chips.toml); above 100% is a measurement error, not a result")
    if "check" in table.metrics:
        out.append("- correct: the correctness gate: relative logits error against a CPU fp32 reference "
                   "under teacher forcing, within its bound (WRONG: fast but wrong, not a result)")
    out.append("")
    out.append("Environment:")
    seen = set()
    for rec in table.records:
        dev = device_label(rec)
        if dev in seen:
            continue
        seen.add(dev)
        facts = [f"torch {rec.get('env_torch')}", f"transformers {rec.get('env_transformers')}",
                 f"runtime {rec.get('env_runtime')}", f"driver {rec.get('env_driver') or '-'}",
                 f"host CPU {rec.get('env_cpu_model')} ({rec.get('env_cpu_cores')} cores)",
                 f"path {rec.get('exec_path')}", f"chipbench {rec.get('harness_version')}"
                 + (f" ({rec['git_commit'][:12]})" if rec.get("git_commit") else ""),
                 f"run {rec.get('timestamp_utc')}"]
        out.append(f"- {_md_escape(dev)}: " + ", ".join(_md_escape(f) for f in facts))
    return out


def to_csv(table: Table) -> str:
    """Wide CSV of numbers: per device and metric, its median, stdev, n and 95% interval."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["model", "dtype", "workload", "batch"] + [f"{d} | {m} | {s}" for d in table.devices
                                                          for m in table.metrics for s in STATS])
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
            entry["results"][d] = {"status": "failed"} if cell is None else {
                "status": "ok", **{v["metric"]: ({"text": v["text"]} if "text" in v else {s: v[s] for s in STATS})
                                   for v in cell.values()}}
        out.append(entry)
    return json.dumps(out, indent=1)
