"""chipbench's core, grouped by concern: measuring/ (workloads, the clock, runner, statistics,
self-test, ceilings, environment), judging/ (roofline, chip specs, claims, correctness,
comparison), publishing/ (records, tables, HTML, reports); cli.py and plugin.py are the two
entry points on top."""

# chipbench is this folder (bench/) with models/ and backends/ mapped in as chipbench.models and
# chipbench.backends (pyproject.toml's package-dir).
import os
from pathlib import Path


def use_huge_pages() -> None:
    """Large CPU tensors on transparent huge pages, unless the user said otherwise. torch reads
    THP_MEM_ALLOC_ENABLE once, at its first allocation, so the entry points that run a suite call
    this before torch is imported (the CLI, the pytest plugin under --benchmark, a trial's worker,
    which also inherits it): building qwen3-8b's 16 GB of weights faults 512x fewer pages (8-11 s
    instead of 15-33 s on this project's 2-core machine), and decode reads weights through fewer
    TLB entries. Recorded as the cpu device's `env_device_thp_alloc`; THP_MEM_ALLOC_ENABLE=0 opts
    out. Importing chipbench changes nothing in the environment."""
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")


__version__ = "0.1.0"

# The project's checkout (results/ lives here); the package is installed editable (`pip install -e .`).
PROJECT_ROOT = Path(__file__).resolve().parent.parent


if __name__ != "chipbench":  # this checkout's folder imported by its old top-level name: one copy, one notice
    import importlib
    import sys

    sys.stderr.write(
        f"chipbench: '{__name__}' is the old import name of chipbench; import chipbench instead (the old name will go)\n"
    )
    sys.modules[__name__] = importlib.import_module("chipbench")
