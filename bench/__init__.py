"""chipbench's core: workloads, the clock, statistics, result records, the pytest plugin, the CLI."""

__version__ = "0.1.0"
