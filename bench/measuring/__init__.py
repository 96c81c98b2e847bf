"""Measuring: workloads, the clock and runner, statistics, the timing self-test, ceilings, the environment."""
