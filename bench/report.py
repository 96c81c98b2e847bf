"""Readable tables of result records (the summary `pytest --benchmark` and `chipbench run` print)."""

from __future__ import annotations

from bench.metrics import HEADLINE


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
