"""chipbench's core, grouped by concern: measuring/ (workloads, the clock, runner, statistics,
self-test, ceilings, environment), judging/ (roofline, chip specs, claims, correctness,
comparison), publishing/ (records, tables, HTML, reports); cli.py and plugin.py are the two
entry points on top."""

import os
from pathlib import Path

# Large CPU tensors on transparent huge pages (torch reads this once, at its first allocation, so
# it is set before torch is imported): building qwen3-8b's 16 GB of weights faults 512x fewer
# pages (8-11 s instead of 15-33 s on this project's 2-core machine), and decode reads weights
# through fewer TLB entries. Recorded as the cpu device's `env_device_thp_alloc`; set
# THP_MEM_ALLOC_ENABLE=0 to opt out.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

__version__ = "0.1.0"

# The project's checkout (results/ lives here); the package is installed editable (`pip install -e .`).
PROJECT_ROOT = Path(__file__).resolve().parent.parent
