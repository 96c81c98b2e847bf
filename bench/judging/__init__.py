"""Judging: the roofline, chip specs, claims, the correctness gate, comparisons with baselines."""
