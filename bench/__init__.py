"""chipbench's core, grouped by concern: measuring/ (workloads, the clock, runner, statistics,
self-test, ceilings, environment), judging/ (roofline, chip specs, claims, correctness,
comparison), publishing/ (records, tables, HTML, reports); cli.py and plugin.py are the two
entry points on top."""

from pathlib import Path

__version__ = "0.1.0"

# The project's checkout (results/ lives here); the package is installed editable (`pip install -e .`).
PROJECT_ROOT = Path(__file__).resolve().parent.parent
