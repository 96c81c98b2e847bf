"""What several commands share: their record filters, the chip and ceiling options, writing a
result to a file or the terminal and to GitHub's job summary."""

from __future__ import annotations

import os
import sys

from chipbench.errors import UsageError
from chipbench.publishing.outputs import check_output, replace_file
from chipbench.options import split_list


def gib(n) -> str:
    return f"{n / 1e9:.2f} GB" if n else "-"


def outputs(out: str | None, inputs=(), option: str = "--out") -> None:
    """Before any work: --out (when given) is a file this command may write, and none of its inputs."""
    if out is not None:
        check_output(out, inputs, option)


def emit(text: str, out: str | None, github_summary: bool, markdown: str | None = None) -> None:
    """Write `text` to --out (or stdout); with --github-summary also append the markdown to
    the file GitHub Actions names in $GITHUB_STEP_SUMMARY."""

    if out:
        replace_file(out, text)  # whole or not at all; checked against the inputs before any work
        print(f"wrote {out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    if github_summary:
        target = os.environ.get("GITHUB_STEP_SUMMARY")
        if not target:
            raise UsageError("--github-summary needs $GITHUB_STEP_SUMMARY (set by GitHub Actions) to name a file")
        with open(target, "a", encoding="utf-8") as f:
            f.write((markdown if markdown is not None else text) + "\n")


def record_filters(args):
    from chipbench.publishing.tables import Filters

    return Filters(
        models=split_list(args.model),
        backends=split_list(args.backend),
        workloads=split_list(args.workload),
        dtypes=split_list(args.dtype),
    )


def add_filters(s) -> None:
    """The record filters and error policy of the commands that read records."""
    s.add_argument("--model", help="comma-separated models to keep")
    s.add_argument("--backend", help="comma-separated backends to keep")
    s.add_argument("--workload", help="comma-separated workloads to keep")
    s.add_argument("--dtype", help="comma-separated dtypes to keep")
    s.add_argument(
        "--on-error",
        choices=("fail", "skip"),
        default="fail",
        help="a malformed record: stop with its file and line (fail) or warn and skip it",
    )
    s.add_argument("--github-summary", action="store_true", help="also append the markdown to $GITHUB_STEP_SUMMARY")


def chip_options(s) -> None:
    s.add_argument("--chip", help="the chip's spec row (results/chips.toml) instead of matching the device's name")
    s.add_argument("--peak-gbps", type=float, help="peak memory bandwidth, for a chip with no spec row")
    s.add_argument("--peak-tflops", type=float, help="peak dense bf16/fp16 TFLOP/s, for a chip with no spec row")


def ceiling_window_option(s) -> None:
    s.add_argument(
        "--ceiling-window",
        type=float,
        metavar="SECONDS",
        help="how long the measured ceilings' rounds run: their best round is the ceiling (default 3 "
        "on a CPU, 1 on an accelerator, or $CHIPBENCH_CEILING_WINDOW_S; 0: five rounds at the "
        "start, none beside each case)",
    )


def use_ceiling_window(args) -> None:
    from chipbench.backends.ceilings import use_window

    use_window(getattr(args, "ceiling_window", None))
