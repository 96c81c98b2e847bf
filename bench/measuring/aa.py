"""An A/A check of this machine: is it quiet enough to gate a regression at a threshold?

Runs the same suite as two separate invocations (`chipbench run --repeats K`, so 2 x K independent
trials, each a fresh process), compares the second with the first through the regression gate, and
prints each case's noise floor. Identical code must never FAIL; the floor says the smallest
regression this machine can gate on.

    python -m bench.measuring.aa [--repeats 3] [--fail-below 0.95] [--out DIR] [-- chipbench run options]

Without run options it runs the default CPU suite (`chipbench run --backend cpu`); the records and
the comparison are kept in --out.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.measuring.aa", description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3, help="trials per invocation (default 3)")
    p.add_argument("--fail-below", type=float, default=0.95, help="the gate's threshold (default 0.95)")
    p.add_argument("--out", default="results/runs/aa", help="folder for the two runs' records and the comparison")
    p.add_argument("run_options", nargs="*", help="options for `chipbench run` after --, e.g. -- --model tiny-qwen3")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    run_options = args.run_options or ["--backend", "cpu"]
    files = []
    for name in ("a", "b"):
        path = out / f"{name}.jsonl"
        if path.exists():
            print(f"{path} exists; give a new --out folder", file=sys.stderr)
            return 2
        print(f"invocation {name}: chipbench run {' '.join(run_options)} --repeats {args.repeats}", flush=True)
        rc = subprocess.run([sys.executable, "-m", "bench.cli", "run", *run_options, "--repeats", str(args.repeats),
                             "--out", str(path)]).returncode
        if rc not in (0, 1):
            return rc
        files.append(path)
    compare = [sys.executable, "-m", "bench.cli", "compare", str(files[1]), "--baseline", str(files[0]),
               "--fail-below", str(args.fail_below), "--metrics", "headline,ttft_s,tpot_s", "--out",
               str(out / "compare.md")]
    rc = subprocess.run(compare).returncode
    print((out / "compare.md").read_text())
    subprocess.run([sys.executable, "-m", "bench.cli", "baseline", str(files[0]), str(files[1])])
    print("A/A: identical code " + ("FAILED the gate: this is a false alarm the gate must not raise" if rc == 1 else
                                    "did not fail the gate"))
    return rc


if __name__ == "__main__":
    sys.exit(main())
