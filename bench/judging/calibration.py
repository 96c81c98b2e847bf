"""The gate's calibration: simulated pairs of runs with known answers, in the real record schema,
through `compare_records` (the function `chipbench compare` calls), over a grid of noise levels.

Each simulated machine runs CASES decode cases. A baseline is K invocations of n trials (K = 1:
its drift between invocations is unknown; K >= 2: measured); a run is one new invocation of n
trials whose true speed is (1 - regression) of the baseline's in every case. Every invocation's
level moves by `drift` (relative stdev), every trial around it by `spread`, and each trial's
rounds by ROUND_SPREAD around that. The gate at THRESHOLD then tests all CASES headline rows at
once (Holm), exactly as `chipbench compare --fail-below` does.

Reported per cell, each with its count and a 95% Wilson interval: the family-wise false-alarm rate
of an A/A cell (regression 0: the share of simulated pairs in which any row failed); the size at
the threshold (regression 1 - THRESHOLD: every case exactly at the gate's edge, which it must not
call below it more than GATE_ALPHA of the time); and the power (larger regressions: the share of
rows that failed).

    python -m chipbench.judging.calibration [--reps 200] [--out results/calibration/gate-calibration.csv]
"""

from __future__ import annotations

import argparse
import itertools
import math
import multiprocessing
import sys
from dataclasses import dataclass

import numpy as np

from chipbench.judging.compare import compare_records

THRESHOLD = 0.95
CASES = 4
ROUNDS = 5
ROUND_SPREAD = 0.005
SPREADS = (0.01, 0.02, 0.05, 0.10, 0.15)
DRIFTS = (0.0, 0.01, 0.03, 0.05)
TRIALS = (1, 3, 5, 10)
REGRESSIONS = (0.0, 0.05, 0.10, 0.20, 0.40)  # 0.05 = 1 - THRESHOLD: a true ratio right at the gate's edge
INVOCATIONS = (1, 3)  # the baseline's: 1 leaves the drift unknown (the prior stands in), 3 measures it
BASE_RATE = 50.0  # tokens/s of the simulated baseline's decode


@dataclass(frozen=True)
class Cell:
    spread: float
    drift: float
    trials: int
    regression: float
    invocations: int

    @property
    def drift_known(self) -> bool:
        return self.invocations >= 2


def _record(i: int, case: int, series: str, trial: int, trials: int, rate: float, rng) -> dict:
    """One trial in the published record schema (the fields a comparison reads, with their real
    names and types), its rounds scattered around `rate`."""
    samples = [float(x) for x in rate * np.exp(rng.normal(0.0, math.log1p(ROUND_SPREAD), ROUNDS))]
    gen = 16 * 2**case
    return {
        "schema_version": 2,
        "record_id": f"sim-{i}",
        "status": "ok",
        "error": None,
        "backend": "cpu",
        "backend_kind": "cpu",
        "device_name": "Simulated CPU",
        "model": "qwen3-0.6b",
        "family": "qwen3",
        "dtype": "bf16",
        "workload": f"tg{gen}",
        "kind": "decode",
        "batch": 1,
        "prompt_tokens": 1,
        "gen_tokens": gen,
        "rounds": ROUNDS,
        "warmup_rounds": 1,
        "exec_path": "eager",
        "series_id": series,
        "trial_index": trial,
        "trials_planned": trials,
        "trial_process": "worker",
        "timestamp_utc": f"2026-12-06T00:00:{i % 60:02d}+00:00",
        "env_cpu_cores": 2,
        "decode_tok_per_s_samples": samples,
        "decode_tok_per_s_median": float(np.median(samples)),
    }


def simulate_pair(cell: Cell, rng) -> tuple[list[dict], list[dict]]:
    """A baseline and a run of one machine for this cell: CASES cases each."""
    counter = itertools.count()
    drift, spread = math.log1p(cell.drift), math.log1p(cell.spread)

    def invocation(shift: float, name: str) -> list[dict]:
        out = []
        for case in range(CASES):
            level = shift + rng.normal(0.0, drift)
            for t in range(cell.trials):
                rate = BASE_RATE * math.exp(level + rng.normal(0.0, spread))
                out.append(_record(next(counter), case, name, t, cell.trials, rate, rng))
        return out

    base = [r for k in range(cell.invocations) for r in invocation(0.0, f"base-{k}")]
    run = invocation(math.log1p(-cell.regression), "run")
    return run, base


@dataclass(frozen=True)
class Rate:
    hits: int
    of: int

    @property
    def rate(self) -> float:
        return self.hits / self.of

    def wilson(self, z: float = 1.96) -> tuple[float, float]:
        n, p = self.of, self.rate
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return max(0.0, centre - half), min(1.0, centre + half)


def measure_of(cell: Cell) -> str:
    if cell.regression == 0:
        return "false alarm"
    return "size at T" if math.isclose(cell.regression, 1 - THRESHOLD) else "power"


def run_cell(cell: Cell, reps: int, seed: int = 0) -> Rate:
    """The cell's false-alarm rate or size (pairs with any FAIL), or its power (rows that FAIL)."""
    rng = np.random.default_rng(
        [seed, int(cell.spread * 1e4), int(cell.drift * 1e4), cell.trials, int(cell.regression * 1e4), cell.invocations]
    )
    hits = of = 0
    for _ in range(reps):
        run, base = simulate_pair(cell, rng)
        rows = compare_records(run, base, threshold=THRESHOLD).rows
        failed = [r["gate"] == "FAIL" for r in rows if r.get("gate") is not None]
        assert len(failed) == CASES, f"expected {CASES} gated rows, got {len(failed)}"
        if measure_of(cell) != "power":
            hits, of = hits + any(failed), of + 1
        else:
            hits, of = hits + sum(failed), of + len(failed)
    return Rate(hits, of)


def grid(spreads=SPREADS, drifts=DRIFTS, trials=TRIALS, regressions=REGRESSIONS, invocations=INVOCATIONS):
    return [Cell(*c) for c in itertools.product(spreads, drifts, trials, regressions, invocations)]


def _row(job: tuple[Cell, int, int]) -> dict:
    cell, reps, seed = job
    r = run_cell(cell, reps, seed)
    lo, hi = r.wilson()
    return {
        "spread": cell.spread,
        "drift": cell.drift,
        "trials": cell.trials,
        "regression": cell.regression,
        "baseline_invocations": cell.invocations,
        "drift_known": cell.drift_known,
        "measure": measure_of(cell),
        "rate": r.rate,
        "hits": r.hits,
        "of": r.of,
        "wilson_low": lo,
        "wilson_high": hi,
    }


def table(cells: list[Cell], reps: int, seed: int = 0, jobs: int = 1, progress=None) -> list[dict]:
    """One row per cell, in the cells' order; `jobs` worker processes share the cells (each cell's
    seed is its own, so the table does not depend on how they are shared)."""
    work = [(cell, reps, seed) for cell in cells]
    if jobs <= 1:
        rows = []
        for i, job in enumerate(work):
            rows.append(_row(job))
            if progress:
                progress(i + 1, len(work))
        return rows

    with multiprocessing.get_context("spawn").Pool(jobs) as pool:
        rows = []
        for i, row in enumerate(pool.imap(_row, work)):
            rows.append(row)
            if progress:
                progress(i + 1, len(work))
        return rows


def summary(df) -> str:
    """Markdown tables of a calibration table (a pandas DataFrame of `table`'s rows): per measure
    and baseline, the rate in each (spread, drift) row and trial-count column."""
    out = []
    views = [
        ("false alarm", 3, "A/A false-alarm rate, family-wise over 4 cases (drift measured: 3 baseline invocations)"),
        ("false alarm", 1, "A/A false-alarm rate, family-wise over 4 cases (drift unknown: the 5% prior)"),
        ("size at T", 3, "Size at the threshold: every case exactly 5% slower, any FAIL (drift measured)"),
        ("size at T", 1, "Size at the threshold: every case exactly 5% slower, any FAIL (drift unknown: the prior)"),
        ("power", 3, "Power against a 20% regression: share of cases failed (drift measured)"),
        ("power", 1, "Power against a 20% regression: share of cases failed (drift unknown: the prior)"),
        ("power", 3, "Power against a 10% regression: share of cases failed (drift measured)"),
    ]
    for measure, k, title in views:
        sel = df[(df.measure == measure) & (df.baseline_invocations == k)]
        if measure == "power":
            sel = sel[sel.regression == (0.10 if "10%" in title else 0.20)]
        if sel.empty:
            continue
        trials = sorted(sel.trials.unique())
        out += [
            f"**{title}**",
            "",
            "| trial spread | drift | " + " | ".join(f"{t} trial{'s' if t > 1 else ''}" for t in trials) + " |",
            "|---|---|" + "---|" * len(trials),
        ]
        for (spread, drift), g in sel.groupby(["spread", "drift"]):
            cells = {int(r.trials): f"{r.rate:.1%}" for r in g.itertuples()}
            out.append(f"| {spread:.0%} | {drift:.0%} | " + " | ".join(cells.get(t, "-") for t in trials) + " |")
        n = int(sel["of"].iloc[0])
        out += ["", f"({n} {'cases' if measure == 'power' else 'pairs'} per cell.)", ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    import pandas as pd

    p = argparse.ArgumentParser(prog="python -m chipbench.judging.calibration", description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=200, help="simulated pairs per cell (default 200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--out", default="results/calibration/gate-calibration.csv")
    p.add_argument("--summary", metavar="CSV", help="print the markdown summary of an existing table and stop")
    args = p.parse_args(argv)
    if args.summary:
        print(summary(pd.read_csv(args.summary)))
        return 0
    if args.reps < 1:
        print(f"--reps must be a whole number >= 1, got {args.reps}", file=sys.stderr)
        return 2

    def say(i, n):
        print(f"\r{i}/{n} cells", end="", file=sys.stderr, flush=True)

    rows = table(grid(), args.reps, args.seed, args.jobs, say)
    print(file=sys.stderr)
    df = pd.DataFrame(rows)
    df.to_csv(args.out, index=False)
    print(f"wrote {len(df)} cells to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
