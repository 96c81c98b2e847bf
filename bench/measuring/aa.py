"""An A/A check of this machine, and a baseline that measures its drift between invocations.

Runs the same suite as N separate invocations (`chipbench run --repeats K`, so N x K independent
trials, each a fresh process), compares the last with the others through the regression gate (the
others measure the drift between invocations when there are two or more), and prints what
`chipbench baseline` says of all of them: per case, the smallest regression a gate against this
baseline catches. Identical code must never FAIL.

    python -m chipbench.measuring.aa [--invocations 3] [--repeats 3] [--fail-below 0.95] [--out DIR] [-- chipbench run options]

Without run options it runs the default CPU suite (`chipbench run --backend cpu`); the records and
the comparison are kept in --out.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m chipbench.measuring.aa", description=__doc__.splitlines()[0])
    p.add_argument(
        "--invocations",
        type=int,
        default=3,
        help="separate invocations (default 3: two measure the drift for the A/A gate of the third)",
    )
    p.add_argument("--repeats", type=int, default=3, help="trials per invocation (default 3)")
    p.add_argument("--fail-below", type=float, default=0.95, help="the gate's threshold (default 0.95)")
    p.add_argument("--out", default="results/runs/aa", help="folder for the invocations' records and the comparison")
    p.add_argument("run_options", nargs="*", help="options for `chipbench run` after --, e.g. -- --model tiny-qwen3")
    args = p.parse_args(argv)
    if args.invocations < 2 or args.repeats < 1:
        print(
            f"--invocations must be >= 2 and --repeats >= 1, got {args.invocations} and {args.repeats}", file=sys.stderr
        )
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    run_options = args.run_options or ["--backend", "cpu"]
    files = []
    for name in (chr(ord("a") + i) if i < 26 else str(i) for i in range(args.invocations)):
        path = out / f"{name}.jsonl"
        if path.exists():
            print(f"{path} exists; give a new --out folder", file=sys.stderr)
            return 2
        print(f"invocation {name}: chipbench run {' '.join(run_options)} --repeats {args.repeats}", flush=True)
        rc = subprocess.run(
            [
                sys.executable,
                "-m",
                "chipbench.cli",
                "run",
                *run_options,
                "--repeats",
                str(args.repeats),
                "--out",
                str(path),
            ]
        ).returncode
        if rc not in (0, 1):
            return rc
        files.append(path)
    compare = [
        sys.executable,
        "-m",
        "chipbench.cli",
        "compare",
        str(files[-1]),
        "--baseline",
        *map(str, files[:-1]),
        "--fail-below",
        str(args.fail_below),
        "--metrics",
        "headline,ttft_s,tpot_s",
        "--out",
        str(out / "compare.md"),
    ]
    rc = subprocess.run(compare).returncode
    print((out / "compare.md").read_text())
    subprocess.run(
        [sys.executable, "-m", "chipbench.cli", "baseline", *map(str, files), "--fail-below", str(args.fail_below)]
    )
    print(
        "A/A: identical code "
        + ("FAILED the gate: this is a false alarm the gate must not raise" if rc == 1 else "did not fail the gate")
    )
    return rc


if __name__ == "__main__":
    sys.exit(main())
