"""Readable tables of result records (the summary `pytest --benchmark` and `chipbench run` print)."""

from __future__ import annotations

from bench.measuring.metrics import HEADLINE


def _pm(median, stdev, scale: float = 1.0, digits: int = 1) -> str:
    if median is None:
        return "-"
    text = f"{median * scale:.{digits}f}"
    return text + (f" ± {stdev * scale:.{digits}f}" if stdev is not None else "")


def summary_rows(records: list[dict]) -> list[dict]:
    rows = []
    for r in records:
        ok = r.get("status") == "ok"
        head = HEADLINE.get(r.get("kind"), "output_tok_per_s")
        mem = r.get("peak_mem_bytes")
        rows.append({
            "backend": r.get("backend"),
            "device": r.get("device_name") or "-",
            "model": r.get("model"),
            "dtype": r.get("dtype"),
            "test": r.get("workload"),
            "B": r.get("batch"),
            "t/s": _pm(r.get(f"{head}_median"), r.get(f"{head}_stdev")) if ok else "FAILED",
            "TTFT ms": _pm(r.get("ttft_s_median"), r.get("ttft_s_stdev"), 1e3) if ok else "-",
            "TPOT ms": _pm(r.get("tpot_s_median"), r.get("tpot_s_stdev"), 1e3, 2) if ok else "-",
            "peak GiB": f"{mem / 2**30:.2f}" if mem else "-",
            "n": r.get(f"{head}_n") if ok else 0,
            "note": "" if ok else (r.get("error") or "")[:80],
        })
    return rows


def summary_table(records: list[dict]) -> str:
    """One line per case: the workload's headline throughput (median ± stdev), TTFT, TPOT, memory.

    t/s is prefill tokens/s for pp tests, decode tokens/s for tg tests, output tokens/s for pp+tg.
    """
    import pandas as pd

    df = pd.DataFrame(summary_rows(records))
    return df.to_string(index=False)


# --- comparisons ---------------------------------------------------------------------------

def _ratio_text(row: dict) -> str:
    if row["ratio"] is None:
        return "-"
    ci = f" [{row['ci_low']:.3f}, {row['ci_high']:.3f}]" if row["ci_low"] is not None else " [n < 2]"
    return f"{row['ratio']:.3f}{ci}"


def _median_text(value, metric: str) -> str:
    from bench.measuring.metrics import METRICS

    if value is None:
        return "-"
    return f"{value * 1e3:.2f} ms" if METRICS[metric][0] == "s" else f"{value:.1f}"


def comparison_table(comparison, with_gate: bool) -> tuple[list[str], list[list[str]]]:
    header = ["model", "dtype", "test", "B", "kind", "metric", "run", "baseline", "speed ratio [95% CI]",
              "verdict"] + (["gate"] if with_gate else [])
    body = []
    for r in comparison.rows:
        row = [r["model"], r["dtype"], r["workload"], str(r["batch"]), r["backend_kind"], r["metric"],
               f"{_median_text(r['run_median'], r['metric'])} (n={r['n_run']})",
               f"{_median_text(r['base_median'], r['metric'])} (n={r['n_base']})",
               _ratio_text(r), r["verdict"]]
        body.append(row + ([r["gate"]] if with_gate else []))
    return header, body


def render_comparison(comparison, fmt: str, threshold: float | None, show_unmatched: bool) -> str:
    import csv
    import html
    import io
    import json

    header, body = comparison_table(comparison, threshold is not None)
    unmatched = ([("run", k) for k in comparison.unmatched_run] +
                 [("baseline", k) for k in comparison.unmatched_base]) if show_unmatched else []
    if fmt == "json":
        return json.dumps({"threshold": threshold, "rows": comparison.rows,
                           "unmatched": [{"side": s, "case": list(k)} for s, k in unmatched]}, indent=1)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        keys = list(comparison.rows[0]) if comparison.rows else []
        w.writerow(keys)
        for r in comparison.rows:
            w.writerow(["" if r[k] is None else r[k] for k in keys])
        return buf.getvalue()
    notes = ["Speed ratio: run over baseline for throughputs, baseline over run for latencies, so "
             "> 1 is better either way; 95% interval from Welch's t on log per-round samples. "
             "faster / slower only when the whole interval is above / below 1."]
    if threshold is not None:
        notes.append(f"Gate: FAIL when the interval lies entirely below {threshold}; too noisy when "
                     f"it straddles {threshold} and its half-width exceeds {1 - threshold:.3g}.")
    notes += [f"Unmatched ({side}): " + " ".join(map(str, k)) for side, k in unmatched]
    if fmt == "html":
        e = html.escape
        cells = "".join(f"<th>{e(h)}</th>" for h in header)
        rows = "".join("<tr>" + "".join(f"<td>{e(v)}</td>" for v in row) + "</tr>" for row in body)
        return (f"<!doctype html><html><head><meta charset='utf-8'><title>chipbench comparison</title>"
                f"</head><body><h1>chipbench comparison</h1><table border='1'><tr>{cells}</tr>{rows}"
                f"</table>" + "".join(f"<p>{e(n)}</p>" for n in notes) + "</body></html>")
    esc = lambda v: str(v).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(v) for v in row) + " |" for row in body]
    return "\n".join(lines + [""] + notes) + "\n"
