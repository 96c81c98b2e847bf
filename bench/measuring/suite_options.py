"""The suite's options, declared once: `pytest --benchmark` adds each with the prefix `--bench-`,
`chipbench run` with `--` (as pytest-benchmark's plugin and CLI share their `add_*_options`), and
docs/options.md's table is made from the same declaration. Free of torch: both entry points build
their parsers from it at start-up."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chipbench.measuring.workload import WORKLOAD_HELP


@dataclass(frozen=True)
class Option:
    name: str  # without its prefix: "backend" is --bench-backend and chipbench run's --backend
    help: str
    shown_default: str  # the default as the docs say it (some are per backend)
    default: Any = None
    type: Callable | None = None
    metavar: str | None = None
    flag: bool = False  # a switch (store_true)


SUITE_OPTIONS: tuple[Option, ...] = (
    Option("backend", "comma-separated backends", "every available one", metavar="NAMES"),
    Option("model", "comma-separated zoo models (`chipbench list models`)", "per backend", metavar="NAMES"),
    Option(
        "dtype",
        "comma-separated: fp32, bf16, fp16; llama.cpp also q8_0, q6_K, q5_K_M, q4_K_M, q4_0; "
        "OpenVINO also int8_sym, int8_asym, int4_sym, int4_asym",
        "per backend: bf16",
        metavar="NAMES",
    ),
    Option("workload", f"comma-separated workloads: {WORKLOAD_HELP}", "pp512,tg128", metavar="NAMES"),
    Option("batch", "comma-separated batch sizes", "1", default="1", metavar="SIZES"),
    Option(
        "rounds",
        "timed rounds per case",
        "as many as fit a per-case budget (12 s on a CPU, 10 s elsewhere) at the warmup round's pace, 5 to 10",
        type=int,
        metavar="N",
    ),
    Option("warmup", "untimed warmup rounds", "1", default=1, type=int, metavar="N"),
    Option(
        "mode",
        "comma-separated execution modes: eager, compiled (a static KV cache, a torch.compile'd decode step "
        "and prefill; CUDA graphs on CUDA)",
        "per backend: eager; CUDA: eager,compiled",
        metavar="MODES",
    ),
    Option(
        "soak",
        "sustained mode: time rounds for at least SECONDS and report the first minute's throughput against "
        "the last minute's",
        "off",
        type=float,
        metavar="SECONDS",
    ),
    Option(
        "repeats",
        "independent trials per case, each a fresh model load, warmup and rounds in a fresh process; "
        "verdicts use the spread between trials",
        "1",
        default=1,
        type=int,
        metavar="K",
    ),
    Option("seed", "seed of the weights and the prompt ids", "0", default=0, type=int, metavar="N"),
    Option("weights", "local safetensors directory of real weights (one model only)", "random weights", metavar="DIR"),
    Option(
        "chip",
        "the chip's spec row (results/chips.toml) instead of matching the device's name",
        "matched by name",
        metavar="NAME",
    ),
    Option(
        "peak-gbps",
        "the chip's peak memory bandwidth, for a chip with no spec row",
        "the spec row's",
        type=float,
        metavar="GB/S",
    ),
    Option(
        "peak-tflops",
        "the chip's peak dense bf16/fp16 TFLOP/s, for a chip with no spec row",
        "the spec row's",
        type=float,
        metavar="TFLOP/S",
    ),
    Option(
        "ceiling-window",
        "how long the measured ceilings' rounds run: their best round is the ceiling "
        "($CHIPBENCH_CEILING_WINDOW_S; 0: five rounds at the start, none beside each case)",
        "3 s on a CPU, 1 s on an accelerator",
        type=float,
        metavar="SECONDS",
    ),
    Option(
        "no-check",
        "skip the correctness gate (a CPU fp32 reference of each model)",
        "gate on",
        default=False,
        flag=True,
    ),
    Option(
        "fresh",
        "prove the timing self-test and measure the ceilings and the correctness reference again, instead of "
        "reusing this machine's from an earlier run (a self-test is kept 7 days, ceilings 1 day and revalidated, "
        "a reference 30 days, each for the same machine or software)",
        "reuse",
        default=False,
        flag=True,
    ),
    Option(
        "wide",
        "print the full summary table (every column) instead of the one that fits 120 columns",
        "off",
        default=False,
        flag=True,
    ),
    Option("out", "JSON-lines file the records are appended to", "results/runs/<time>-<host>.jsonl", metavar="FILE"),
)


def add_suite_options(add: Callable, prefix: str) -> None:
    """Adds every suite option through `add` (argparse's add_argument, pytest's addoption) as
    prefix + name."""
    for o in SUITE_OPTIONS:
        kwargs: dict[str, Any] = {"help": o.help + (f" (default: {o.shown_default})" if not o.flag else "")}
        if o.flag:
            kwargs.update(action="store_true", default=False)
        else:
            kwargs.update(default=o.default, metavar=o.metavar)
            if o.type is not None:
                kwargs["type"] = o.type
        add(prefix + o.name, **kwargs)


def options_markdown(prefix: str = "--bench-", extra: tuple[tuple[str, str, str], ...] = ()) -> str:
    """The options as docs/options.md's table: option, meaning, default; `extra` rows for the
    options only one entry point has."""
    rows = [(f"`{prefix}{o.name}`", o.help, o.shown_default) for o in SUITE_OPTIONS]
    rows += [(f"`{name}`", meaning, default) for name, meaning, default in extra]
    lines = ["| option | meaning | default |", "|---|---|---|"]

    def cell(text: str) -> str:  # pp<P> is no HTML tag
        return text.replace("|", "/").replace("<", "&lt;").replace(">", "&gt;")

    lines += [f"| {a} | {cell(b)} | {cell(c)} |" for a, b, c in rows]
    return "\n".join(lines)


# the options `pytest --benchmark` has beside the suite's (chipbench run has its own for these)
PYTEST_ONLY = (
    ("--benchmark", "run the chipbench benchmark suite instead of the collected tests", "off"),
    (
        "--bench-baseline",
        "records the run is compared with at the end",
        "results/baselines (this checkout's when the run's rootdir has none)",
    ),
    (
        "--bench-pytest-table",
        "also print pytest-benchmark's own table (seconds per round of each case; the records hold the same "
        "rounds as per-token times)",
        "off (on with --benchmark-verbose, --benchmark-histogram or --benchmark-compare)",
    ),
)
